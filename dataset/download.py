"""Download and unpack the official CIFAR-10 *binary* archive, safely and resumably.

Why the binary version: the "python version" of CIFAR-10 is a set of pickle files, and unpickling
data runs arbitrary code chosen by whoever produced the file. The binary version is plain bytes
(one label byte followed by 3072 pixel bytes per record), so nothing in this module, or in the
pipeline that reads its output, ever needs pickle.

Why the care: the archive is 170 MB from a single academic server, so downloads get interrupted
(they resume with an HTTP Range request), can be corrupted (size and MD5 are checked before the
file gets its final name), and a tar archive can try to write outside its folder (Python's
``data`` extraction filter refuses every member that could, before it is written, and unpacking
happens in a temporary folder that is moved into place only when complete).

Usage::

    cifar10-tfx download --dest ~/.cache/cifar10

Machines without internet access can skip this and hand the pipeline an unpacked copy with
``--data-dir`` (for example the folder written by
``python ../shared/datasets/cifar10/build_cifar10.py --out DIR``).
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import IO

from modules import contract, urls

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
OFFICIAL_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
OFFICIAL_SIZE = 170_052_171

ARCHIVE_NAME = "cifar-10-binary.tar.gz"
EXPECTED_FILES = contract.TRAIN_BATCH_FILES + (contract.TEST_BATCH_FILE,)
MARKER_NAME = ".cifar10_tfx_download_ok"  # written inside BATCHES_DIR after a verified unpack

_CHUNK = 256 * 1024
_PROGRESS_SECONDS = 5.0
_PROGRESS_PERCENT = 5.0
_USER_AGENT = "cifar10-tfx-download/0.1 (+python urllib)"
URL_SCHEMES = ("https", "http", "ftp", "file")  # what urllib can fetch

log = logging.getLogger("cifar10_tfx.download")


class DownloadError(RuntimeError):
    """A download or unpack failed in a way the user can act on; the message says how."""


def download_cifar10(
    dest_dir: str,
    url: str = OFFICIAL_URL,
    expected_md5: str = OFFICIAL_MD5,
    expected_size: int | None = OFFICIAL_SIZE,
    timeout: float = 60,
    progress: bool = True,
) -> str:
    """Make sure ``<dest_dir>/cifar-10-batches-bin`` holds the verified data set; return its path.

    Idempotent: a folder unpacked and marked by an earlier call with the same MD5 is returned at
    once, without touching the network. A verified archive already in ``dest_dir`` is unpacked
    without downloading again.

    Choice for a file already at the final archive name whose size or MD5 is wrong (for example
    an older, truncated copy): it is deleted with a warning and downloaded again from scratch,
    since a file with a wrong checksum cannot be trusted as a prefix to resume from.
    """
    check_url(url)
    new_dest = not os.path.exists(os.path.abspath(os.path.expanduser(dest_dir)))
    dest = prepare_dest(dest_dir)
    try:
        return _download_into(dest, url, expected_md5, expected_size, timeout, progress)
    except DownloadError:
        if new_dest and not os.listdir(dest):  # nothing to resume: no empty folder left
            os.rmdir(dest)
        raise


def _download_into(dest: str, url: str, expected_md5: str, expected_size: int | None,
                   timeout: float, progress: bool) -> str:
    folder = os.path.join(dest, contract.BATCHES_DIR)
    expected_md5 = expected_md5.strip().lower()

    if _is_complete(folder, expected_md5):
        log.info("CIFAR-10 already downloaded and verified in %s", folder)
        return folder

    archive = os.path.join(dest, ARCHIVE_NAME)
    part = archive + ".part"
    for path in (archive, part):  # a planted link would make the download write through it
        if os.path.islink(path):
            raise DownloadError(f"refusing to download into {path}: it is a symbolic link "
                                f"(to {os.readlink(path)}). Remove the link and run the "
                                "command again.")
    if os.path.exists(archive):
        problem = _verify_problem(archive, expected_md5, expected_size)
        if problem is None:
            log.info("using the already verified archive %s", archive)
        else:
            log.warning("discarding %s (%s); downloading it again", archive, problem)
            os.remove(archive)

    if not os.path.exists(archive):
        _fetch(url, part, expected_size, timeout, progress)
        problem = _verify_problem(part, expected_md5, expected_size)
        if problem is not None:
            os.remove(part)
            raise DownloadError(
                f"the file downloaded from {urls.redact(url)} ({archive}) is corrupt: {problem}. "
                "The bad file was deleted; run the command again to retry the download."
            )
        if os.path.islink(part):  # swapped for a link while it was being verified
            raise DownloadError(f"refusing to use {part}: it became a symbolic link during the "
                                "download. Remove it and run the command again.")
        os.replace(part, archive)
        log.info("downloaded and verified %s (MD5 %s)", archive, expected_md5)

    _extract(archive, dest, folder, expected_md5)
    return folder


def _is_complete(folder: str, expected_md5: str) -> bool:
    """True when an earlier call unpacked and marked this folder for the same archive MD5."""
    if not all(os.path.isfile(os.path.join(folder, name)) for name in EXPECTED_FILES):
        return False
    try:
        with open(os.path.join(folder, MARKER_NAME), encoding="utf-8") as f:
            return f.read().strip() == expected_md5
    except OSError:
        return False


def _md5_of(path: str) -> str:
    """MD5 of a file, read in chunks; MD5 only because that is what the data set publishes."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_problem(path: str, expected_md5: str, expected_size: int | None) -> str | None:
    """Describe why the file is not the expected one, or return None if size and MD5 match."""
    size = os.path.getsize(path)
    if expected_size is not None and size != expected_size:
        return f"its size is {size:,} bytes, expected {expected_size:,}"
    actual = _md5_of(path)
    if actual != expected_md5:
        return f"expected MD5 {expected_md5}, actual MD5 {actual}"
    return None


def check_url(url: str) -> None:
    """A URL urllib can fetch; `example.com/x.tar.gz` (no scheme) is refused before any I/O."""
    if urls.scheme(url) not in URL_SCHEMES:
        suggestion = urls.redact("https://" + url.split("://")[-1].lstrip("/"))
        shown = urls.redact(url) if "://" in url else suggestion.removeprefix("https://")
        raise DownloadError(f"invalid URL {shown!r}: it needs a scheme, one of "
                            f"{', '.join(s + '://' for s in URL_SCHEMES)} (for example "
                            f"{suggestion})")


def prepare_dest(dest_dir: str) -> str:
    """The absolute download folder, created; a file or read-only place there is one message."""
    dest = os.path.abspath(os.path.expanduser(dest_dir))
    try:
        os.makedirs(dest, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DownloadError(f"cannot download into {dest}: it (or a folder above it) is an "
                            "existing file, not a folder; choose another --dest") from None
    except OSError as exc:
        raise DownloadError(f"cannot create the download folder {dest}: {exc.strerror}; "
                            "choose another --dest") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise DownloadError(f"cannot download into {dest}: the folder is not writable; "
                            "choose another --dest")
    return dest


def _unreachable_message(url: str, exc: BaseException) -> str:
    """Plain-language advice for a machine that cannot reach the download site it was given."""
    reason = urls.redact_text(str(getattr(exc, "reason", None) or exc))
    where = "the official CIFAR-10 site" if url == OFFICIAL_URL else "that server"
    return (
        f"could not reach {urls.redact(url)} ({reason}): {where} could not be reached from "
        "this machine (no network, a proxy or a firewall?). Download from a mirror you can "
        "reach (cifar10-tfx download --url URL), or fetch cifar-10-binary.tar.gz where you "
        "can, unpack it (tar xzf) and pass the folder holding cifar-10-batches-bin/ to the "
        "pipeline with --data-dir."
    )


def _request(url: str, headers: dict[str, str]) -> urllib.request.Request:
    """A request for url; `user:password@` in it becomes a Basic Authorization header."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:
        credentials = f"{urllib.parse.unquote(parts.username)}:" \
                      f"{urllib.parse.unquote(parts.password or '')}"
        headers = {**headers,
                   "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return urllib.request.Request(url, headers=headers)


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """Parse ``bytes START-END/TOTAL`` into (START, TOTAL or None); None when unparsable."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _fetch(url: str, part: str, expected_size: int | None, timeout: float, progress: bool) -> None:
    """Stream ``url`` into ``part``, resuming from the bytes already there when the server allows.

    Returns when the server says the body is complete; the caller verifies size and MD5.
    """
    shown = urls.redact(url)
    for _ in range(3):  # a restart from zero costs one extra round trip at most; 3 is slack
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if expected_size is not None and have > expected_size:
            log.warning("%s is larger than the expected %d bytes; starting over", part,
                        expected_size)
            os.remove(part)
            have = 0
        if expected_size is not None and have == expected_size and have > 0:
            log.info("%s is already complete; verifying it", part)
            return

        headers = {"User-Agent": _USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
            log.info("resuming %s from byte %d", shown, have)
        else:
            log.info("downloading %s", shown)
        request = _request(url, headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and have:
                log.warning("server refused to resume at byte %d; starting over", have)
                os.remove(part)
                continue
            raise DownloadError(f"{shown} answered HTTP {exc.code} {exc.reason}") from exc
        except ValueError as exc:  # e.g. "unknown url type"
            raise DownloadError(f"invalid URL {shown!r}: {urls.redact_text(str(exc))}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise DownloadError(_unreachable_message(url, exc)) from exc

        with response:
            if response.status == 206 and have:
                parsed = _parse_content_range(response.headers.get("Content-Range"))
                if parsed is None or parsed[0] != have:
                    log.warning("server answered a different range (%s); starting over",
                                response.headers.get("Content-Range"))
                    os.remove(part)
                    continue
                total = parsed[1]
                mode = "ab"
            else:
                if have:
                    log.warning("server ignored the resume request (HTTP %d); starting over "
                                "from zero", response.status)
                have = 0
                mode = "wb"
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None

            if total is None:
                total = expected_size
            elif expected_size is not None and total != expected_size:
                if os.path.exists(part):
                    os.remove(part)
                raise DownloadError(
                    f"{shown} is {total:,} bytes but {expected_size:,} were expected: the server "
                    "holds a different file. Check --url, or pass the matching --md5/--size."
                )
            _stream(response, part, mode, have, total, url, progress)
        return
    raise DownloadError(f"{shown} kept answering resume requests inconsistently; "
                        f"delete {part} and run the command again")


def _stream(response: IO[bytes], part: str, mode: str, have: int, total: int | None,
            url: str, progress: bool) -> None:
    """Copy the response body into ``part``; raise a resumable DownloadError if it stops early."""
    received = have
    started = last_time = time.monotonic()
    last_percent = 100.0 * have / total if total else 0.0
    failure: BaseException | None = None
    # O_NOFOLLOW: a link planted at the .part name is refused by the kernel, never written through.
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    try:
        fd = os.open(part, flags, 0o644)
    except OSError as exc:
        raise DownloadError(f"cannot write {part}: {exc.strerror} (a symbolic link there is "
                            "refused; remove it and run the command again)") from None
    with os.fdopen(fd, "wb") as f:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, bad chunks
                failure = exc
                break
            if not chunk:
                break
            f.write(chunk)
            received += len(chunk)
            if progress:
                now = time.monotonic()
                percent = 100.0 * received / total if total else 0.0
                done = total is not None and received >= total
                if (done or now - last_time >= _PROGRESS_SECONDS
                        or (total and percent - last_percent >= _PROGRESS_PERCENT)):
                    _log_progress(received, total, received - have, now - started)
                    last_time, last_percent = now, percent

    if failure is not None or (total is not None and received < total):
        of_total = f" of {total:,}" if total is not None else ""
        why = (f" ({urls.redact_text(str(failure))})" if failure is not None
               else " (the connection closed early)")
        raise DownloadError(
            f"the download of {urls.redact(url)} stopped after {received:,}{of_total} bytes"
            f"{why}. "
            f"The partial file {part} was kept: run the command again to resume where it stopped."
        ) from failure


def _log_progress(received: int, total: int | None, session_bytes: int, elapsed: float) -> None:
    """One progress line: percent (when the size is known), MB so far and speed."""
    mb = received / 1e6
    speed = session_bytes / 1e6 / elapsed if elapsed > 0 else 0.0
    if total:
        log.info("downloaded %3.0f%% (%.1f / %.1f MB) at %.1f MB/s",
                 100.0 * received / total, mb, total / 1e6, speed)
    else:
        log.info("downloaded %.1f MB at %.1f MB/s", mb, speed)


def _strict_data_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    """Python's ``data`` filter, plus: absolute member names are refused, not made relative.

    The ``data`` filter refuses links out of the folder, device files and FIFOs, and names with
    ``..`` that leave it; it quietly strips a leading ``/``. An archive that names absolute paths
    was not made by the data set's authors, so it is refused as a whole instead.
    """
    if member.name.startswith(("/", "\\")) or os.path.isabs(member.name):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest_path)


def _extract(archive: str, dest: str, folder: str, expected_md5: str) -> None:
    """Unpack into a temporary folder inside ``dest``, check it, move it into place, mark it."""
    log.info("unpacking %s", archive)
    tmp = tempfile.mkdtemp(prefix=".cifar10-unpack-", dir=dest)
    try:
        try:
            # Stream mode reads the 170 MB archive once; the filter checks each member before
            # it is written.
            with tarfile.open(archive, "r|gz") as tar:
                tar.extractall(tmp, filter=_strict_data_filter)
        except tarfile.FilterError as exc:  # before TarError: FilterError is one
            raise DownloadError(f"refusing to unpack {archive}: member "
                                f"{exc.tarinfo.name!r}: {exc}") from exc
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise DownloadError(f"cannot unpack {archive}: the archive is truncated or corrupt "
                                f"({exc}). Delete it and run the command again.") from exc

        unpacked = os.path.join(tmp, contract.BATCHES_DIR)
        bad = []
        for name in EXPECTED_FILES:
            path = os.path.join(unpacked, name)
            if not os.path.isfile(path):
                bad.append(f"{name} missing")
            elif os.path.getsize(path) == 0 or os.path.getsize(path) % contract.RECORD_BYTES:
                bad.append(f"{name} is not a whole number of {contract.RECORD_BYTES}-byte records")
        if bad:
            raise DownloadError(f"{archive} is not a CIFAR-10 binary archive: "
                                f"{contract.BATCHES_DIR}/: {', '.join(bad)}")

        if os.path.lexists(folder):
            _clear_old_folder(folder)
        os.replace(unpacked, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    marker_tmp = os.path.join(folder, MARKER_NAME + ".tmp")
    with open(marker_tmp, "w", encoding="utf-8") as f:
        f.write(expected_md5 + "\n")
    os.replace(marker_tmp, os.path.join(folder, MARKER_NAME))
    log.info("CIFAR-10 ready in %s", folder)


def _clear_old_folder(folder: str) -> None:
    """Remove our own stale unpack; move aside anything we did not write, never delete it."""
    if os.path.isdir(folder) and not os.path.islink(folder) and os.path.exists(
            os.path.join(folder, MARKER_NAME)):
        shutil.rmtree(folder)
        return
    aside = f"{folder}.old-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    log.warning("%s exists but was not written by this tool; moving it to %s", folder, aside)
    os.replace(folder, aside)
