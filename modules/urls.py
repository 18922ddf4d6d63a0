"""URLs and paths as the project prints and handles them (issue #20).

Two rules every layer shares, so they live at the bottom (serving/ and dataset/ both import it):

* `redact`: a URL may carry credentials (`http://user:password@host`, `?token=...`); whatever is
  printed or logged goes through it, so a password never reaches a terminal, a log file or CI.
* `is_url`: `gs://bucket/models` is a location on another filesystem; turning it into a local
  path (`./gs:/bucket/models`) silently writes where nobody looks.
* `unusable_folder`: a local folder the project is asked to create or write in is checked up
  front, so the message names the flag and the file in the way, not an errno from deep inside.
"""
from __future__ import annotations

import os
import re
import urllib.parse

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Query parameters whose values are secrets by name (signed URLs, API keys, tokens).
_SECRET_PARAMS = re.compile(r"(?i)(token|key|secret|password|passwd|signature|sig|auth)")
HIDDEN = "***"


def scheme(path: str) -> str | None:
    """The scheme of a URL (`gs`, `s3`, `http`), or None for a local path."""
    if not isinstance(path, str):  # e.g. a pipeline runtime parameter: not a URL we can read
        return None
    match = _SCHEME.match(path)
    return match.group(1).lower() if match else None


def is_url(path: str | None) -> bool:
    """True for `scheme://...`; such a path must never go through os.path.abspath."""
    return bool(path) and scheme(path) is not None


def redact(url: str) -> str:
    """The URL with its user info and secret query values replaced by ***; safe to print."""
    if not url or "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # unparsable (e.g. a bad IPv6 literal): hide everything after the scheme
        return url.split("://", 1)[0] + "://" + HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = HIDDEN + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{name}={HIDDEN if _SECRET_PARAMS.search(name) else value}"
                         for name, value in pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside a message (an exception's text quotes the URL it failed on) redacted."""
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>)]+", lambda m: redact(m.group(0)), text)


def unusable_folder(path: str, writable: bool = True) -> str | None:
    """Why a local folder cannot be created (or, with `writable`, written to); None if it can."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    if not os.path.isdir(probe):
        where = "is" if probe == os.path.abspath(path) else f"is inside {probe}, which is"
        return f"{where} an existing file, not a folder"
    if writable and not os.access(probe, os.W_OK | os.X_OK):
        where = "is" if probe == os.path.abspath(path) else f"would be created in {probe}, which is"
        return f"{where} not writable"
    return None
