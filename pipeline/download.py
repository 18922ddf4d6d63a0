"""Download and unpack the official CIFAR-10 *binary* archive, safely and resumably.

Why the binary version: the "python version" of CIFAR-10 is a set of pickle files, and unpickling
data runs arbitrary code chosen by whoever produced the file. The binary version is plain bytes
(one label byte followed by 3072 pixel bytes per record), so nothing in this module, or in the
pipeline that reads its output, ever needs pickle.

Why the care: the archive is 170 MB from a single academic server, so downloads get interrupted
(they resume with an HTTP Range request), can be corrupted (size and MD5 are checked before the
file gets its final name), and a tar archive can try to write outside its folder (every member is
checked before anything is unpacked, and unpacking happens in a temporary folder that is moved
into place only when complete).

Usage::

    python -m pipeline.download --dest ~/.cache/cifar10

Machines without internet access can skip this and hand the pipeline an unpacked copy with
``--data-dir`` (for example the folder written by
``python ../shared/datasets/cifar10/build_cifar10.py --out DIR``).
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from typing import IO, Iterator

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
OFFICIAL_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
OFFICIAL_SIZE = 170_052_171

ARCHIVE_NAME = "cifar-10-binary.tar.gz"
BATCHES_DIR = "cifar-10-batches-bin"
EXPECTED_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
RECORD_BYTES = 1 + 32 * 32 * 3  # label byte + 3 colour planes of 32x32
MARKER_NAME = ".cifar10_tfx_download_ok"  # written inside BATCHES_DIR after a verified unpack
DEFAULT_DEST = "~/.cache/cifar10"

_CHUNK = 256 * 1024
_PROGRESS_SECONDS = 5.0
_PROGRESS_PERCENT = 5.0
_USER_AGENT = "cifar10-tfx-download/0.1 (+python urllib)"

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
    dest = os.path.abspath(os.path.expanduser(dest_dir))
    os.makedirs(dest, exist_ok=True)
    folder = os.path.join(dest, BATCHES_DIR)
    expected_md5 = expected_md5.strip().lower()

    if _is_complete(folder, expected_md5):
        log.info("CIFAR-10 already downloaded and verified in %s", folder)
        return folder

    archive = os.path.join(dest, ARCHIVE_NAME)
    if os.path.exists(archive):
        problem = _verify_problem(archive, expected_md5, expected_size)
        if problem is None:
            log.info("using the already verified archive %s", archive)
        else:
            log.warning("discarding %s (%s); downloading it again", archive, problem)
            os.remove(archive)

    if not os.path.exists(archive):
        part = archive + ".part"
        _fetch(url, part, expected_size, timeout, progress)
        problem = _verify_problem(part, expected_md5, expected_size)
        if problem is not None:
            os.remove(part)
            raise DownloadError(
                f"the file downloaded from {url} ({archive}) is corrupt: {problem}. "
                "The bad file was deleted; run the command again to retry the download."
            )
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


def _unreachable_message(url: str, exc: BaseException) -> str:
    """Plain-language advice for a machine that cannot reach the download site."""
    reason = getattr(exc, "reason", None) or exc
    return (
        f"could not reach {url} ({reason}). The official CIFAR-10 site could not be reached "
        "from this machine (no network, a proxy or a firewall?). You can instead pass an "
        "already-unpacked copy of the data set to the pipeline with --data-dir, for example "
        "the folder that `python ../shared/datasets/cifar10/build_cifar10.py --out DIR` writes."
    )


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
    for _ in range(3):  # a restart from zero costs one extra round trip at most; 3 is slack
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if expected_size is not None and have > expected_size:
            log.warning("%s is larger than the expected %d bytes; starting over", part, expected_size)
            os.remove(part)
            have = 0
        if expected_size is not None and have == expected_size and have > 0:
            log.info("%s is already complete; verifying it", part)
            return

        headers = {"User-Agent": _USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
            log.info("resuming %s from byte %d", url, have)
        else:
            log.info("downloading %s", url)
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and have:
                log.warning("server refused to resume at byte %d; starting over", have)
                os.remove(part)
                continue
            raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}") from exc
        except ValueError as exc:  # e.g. "unknown url type"
            raise DownloadError(f"invalid URL {url!r}: {exc}") from exc
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
                    f"{url} is {total:,} bytes but {expected_size:,} were expected: the server "
                    "holds a different file. Check --url, or pass the matching --md5/--size."
                )
            _stream(response, part, mode, have, total, url, progress)
        return
    raise DownloadError(f"{url} kept answering resume requests inconsistently; "
                        f"delete {part} and run the command again")


def _stream(response: IO[bytes], part: str, mode: str, have: int, total: int | None,
            url: str, progress: bool) -> None:
    """Copy the response body into ``part``; raise a resumable DownloadError if it stops early."""
    received = have
    started = last_time = time.monotonic()
    last_percent = 100.0 * have / total if total else 0.0
    failure: BaseException | None = None
    with open(part, mode) as f:
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
        why = f" ({failure})" if failure is not None else " (the connection closed early)"
        raise DownloadError(
            f"the download of {url} stopped after {received:,}{of_total} bytes{why}. "
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


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a tar member is unsafe to unpack, or None.

    Stricter than needed on purpose: any ``..`` component is refused (also in link targets),
    because ``..`` after a symlink resolves differently on disk than on paper; the CIFAR-10
    archive has none, so nothing legitimate is lost.
    """
    def is_absolute(path: str) -> bool:
        return path.startswith(("/", "\\")) or os.path.isabs(path) or bool(
            re.match(r"^[A-Za-z]:", path))

    def has_dotdot(path: str) -> bool:
        return ".." in re.split(r"[/\\]", path)

    name = member.name
    if not name or is_absolute(name):
        return "has an absolute path"
    if has_dotdot(name):
        return "contains '..' and could write outside the target folder"
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hard link"
        if is_absolute(member.linkname) or has_dotdot(member.linkname):
            return f"is a {kind} pointing outside the target folder ({member.linkname})"
        return None
    if member.isreg() or member.isdir():
        return None
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    return "is not a regular file, folder or link"


def _checked_members(tar: tarfile.TarFile, archive: str) -> Iterator[tarfile.TarInfo]:
    """Yield members one by one, refusing the first unsafe one before it is written."""
    for member in tar:
        problem = _member_problem(member)
        if problem is not None:
            raise DownloadError(f"refusing to unpack {archive}: member {member.name!r} {problem}")
        yield member


def _extract(archive: str, dest: str, folder: str, expected_md5: str) -> None:
    """Unpack into a temporary folder inside ``dest``, check it, move it into place, mark it."""
    log.info("unpacking %s", archive)
    tmp = tempfile.mkdtemp(prefix=".cifar10-unpack-", dir=dest)
    try:
        filter_kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            # Stream mode reads the 170 MB archive once; members are checked before each write.
            with tarfile.open(archive, "r|gz") as tar:
                tar.extractall(tmp, members=_checked_members(tar, archive), **filter_kwargs)
        except getattr(tarfile, "FilterError", ()) as exc:  # second line of defence (3.12+)
            raise DownloadError(f"refusing to unpack {archive}: member "
                                f"{exc.tarinfo.name!r}: {exc}") from exc
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise DownloadError(f"cannot unpack {archive}: the archive is truncated or corrupt "
                                f"({exc}). Delete it and run the command again.") from exc

        unpacked = os.path.join(tmp, BATCHES_DIR)
        bad = []
        for name in EXPECTED_FILES:
            path = os.path.join(unpacked, name)
            if not os.path.isfile(path):
                bad.append(f"{name} missing")
            elif os.path.getsize(path) == 0 or os.path.getsize(path) % RECORD_BYTES:
                bad.append(f"{name} is not a whole number of {RECORD_BYTES}-byte records")
        if bad:
            raise DownloadError(f"{archive} is not a CIFAR-10 binary archive: "
                                f"{BATCHES_DIR}/: {', '.join(bad)}")

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


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the process exit status (0 ok, 1 error)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.download",
        description="Download, verify and unpack the official CIFAR-10 binary archive. "
                    "Prints the path of the unpacked cifar-10-batches-bin folder.",
    )
    parser.add_argument("--dest", default=DEFAULT_DEST,
                        help="folder to download and unpack into (default: %(default)s)")
    parser.add_argument("--url", default=OFFICIAL_URL, help="archive URL (default: official)")
    parser.add_argument("--md5", default=OFFICIAL_MD5,
                        help="expected MD5 of the archive (default: official)")
    parser.add_argument("--size", type=int, default=None,
                        help="expected size in bytes (default: the official size for the "
                             "official URL, unchecked for any other URL)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="network timeout in seconds (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    size = args.size if args.size is not None else (
        OFFICIAL_SIZE if args.url == OFFICIAL_URL else None)
    try:
        folder = download_cifar10(args.dest, url=args.url, expected_md5=args.md5,
                                  expected_size=size, timeout=args.timeout,
                                  progress=not args.quiet)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the command again to resume the download", file=sys.stderr)
        return 130
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
