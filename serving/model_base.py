"""The TF Serving model base path, `<base>/<version>/`: the one copy both the Pusher and
download-model make.

TF Serving loads integer-named folders only, so a version is copied into a hidden staging folder
(`contract.STAGING_PREFIX...`) in the same base path and then renamed to its number: a server
polling the base path never sees half a version. On a local or POSIX filesystem the rename is
atomic; on object stores (gs://, s3://) a rename would copy object by object in listing order, so
there the staged version is copied into place with the file named `last` (`saved_model.pb`, the
file TF Serving looks for) written after everything else.

Paths go through one of three filesystems: the local one (plain `os`, so that symbolic links are
seen as links), TensorFlow's (gs://, hdfs://, ram://, file://, s3:// with tensorflow-io) and
fsspec's for schemes TensorFlow has no filesystem for (s3:// through s3fs in a plain install,
memory://).

Symbolic links are never followed. Copying refuses a tree that holds one (UnsafeEntryError naming
it, before anything is written): a pushed model holds none, and following one would copy whatever it
points to (or loop). Deleting unlinks a link rather than removing what it points to. Entry names
are checked as well: an absolute name or one with a `..` part (an object key can have either) is
refused, and every destination must resolve inside the folder it is copied into.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import posixpath
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from modules import contract

log = logging.getLogger("cifar10_tfx.model_base")

DIR, FILE, LINK = "dir", "file", "link"
_CHUNK_BYTES = 8 << 20
# A staging folder of another machine younger than this is a copy in progress (another run may be
# pushing into the same base path); older, it is an interrupted copy's leftovers. A copy takes
# seconds to minutes. On this machine, whether its process still runs decides.
STAGING_STALE_SECONDS = 3600


class ModelBaseError(Exception):
    """A base path, version or entry that cannot be copied or published safely."""


class UnsafeEntryError(ModelBaseError):
    """A symbolic link, or an entry whose name would land outside its destination."""


class VersionTakenError(ModelBaseError):
    """The version number was published by someone else (another push in the same second)."""

    def __init__(self, message: str, version: int):
        super().__init__(message)
        self.version = version


@dataclass(frozen=True)
class Entry:
    path: str  # full path on its filesystem
    relative: str  # "/"-separated, relative to the folder walked
    kind: str  # DIR, FILE or LINK


class Filesystem:
    """The few operations a base path needs; one subclass per kind of storage."""

    # Whether rename() moves a folder at once. On object stores it copies object by object in
    # listing order (saved_model.pb before variables/), so a version is published by a copy there.
    atomic_rename = False

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def isdir(self, path: str) -> bool:
        raise NotImplementedError

    def is_link(self, path: str) -> bool:
        return False  # object stores have no links

    def listdir(self, path: str) -> list[str]:
        raise NotImplementedError

    def entries(self, root: str) -> Iterator[Entry]:
        """Everything under root, top-down: a folder's files before its subfolders."""
        raise NotImplementedError

    def open(self, path: str, mode: str) -> IO:
        raise NotImplementedError

    def size(self, path: str) -> int:
        raise NotImplementedError

    def makedirs(self, path: str) -> None:
        raise NotImplementedError

    def rename(self, source: str, destination: str) -> None:
        raise NotImplementedError

    def remove(self, path: str) -> None:
        """Removes a file, a link or a whole folder; never what a link points to."""
        raise NotImplementedError

    def join(self, base: str, *parts: str) -> str:
        """Joins with "/" (gfile listings may end folder names with "/")."""
        return "/".join([base.rstrip("/") or "/"] + [p.strip("/") for p in parts])

    def inside(self, root: str, path: str) -> bool:
        root = posixpath.normpath(root)
        return posixpath.normpath(path).startswith(root.rstrip("/") + "/")


class LocalFilesystem(Filesystem):
    """Local paths through `os`, which sees symbolic links as links (TensorFlow's walk follows
    them)."""

    atomic_rename = True

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)  # a base path may itself be a link to a folder

    def is_link(self, path: str) -> bool:
        return os.path.islink(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def entries(self, root: str) -> Iterator[Entry]:
        yield from self._entries(root, "")

    def _entries(self, folder: str, relative: str) -> Iterator[Entry]:
        with os.scandir(folder) as scan:
            items = sorted(scan, key=lambda item: item.name)
        subfolders = []
        for item in items:
            name = f"{relative}/{item.name}" if relative else item.name
            if item.is_symlink():
                yield Entry(item.path, name, LINK)
            elif item.is_dir(follow_symlinks=False):
                subfolders.append(Entry(item.path, name, DIR))
            else:
                yield Entry(item.path, name, FILE)
        for subfolder in subfolders:
            yield subfolder
            yield from self._entries(subfolder.path, subfolder.relative)

    def open(self, path: str, mode: str) -> IO:
        return open(path, mode)  # noqa: SIM115 - the caller closes it

    def size(self, path: str) -> int:
        return os.lstat(path).st_size

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rename(self, source: str, destination: str) -> None:
        os.rename(source, destination)

    def remove(self, path: str) -> None:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)  # removes links inside a tree, never their targets

    def join(self, base: str, *parts: str) -> str:
        return os.path.join(base, *parts)

    def inside(self, root: str, path: str) -> bool:
        return os.path.realpath(path).startswith(os.path.realpath(root).rstrip(os.sep) + os.sep)


class GfileFilesystem(Filesystem):
    """TensorFlow's filesystems: gs://, hdfs://, ram://, file://, s3:// with tensorflow-io."""

    def __init__(self):
        import tensorflow as tf

        self._gfile = tf.io.gfile

    def exists(self, path: str) -> bool:
        return self._gfile.exists(path)

    def isdir(self, path: str) -> bool:
        return self._gfile.isdir(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(name.rstrip("/") for name in self._gfile.listdir(path))

    def entries(self, root: str) -> Iterator[Entry]:
        yield from self._entries(root.rstrip("/"), "")

    def _entries(self, folder: str, relative: str) -> Iterator[Entry]:
        subfolders = []
        for name in self.listdir(folder):
            path = self.join(folder, name)
            entry_name = f"{relative}/{name}" if relative else name
            if self.isdir(path):
                subfolders.append(Entry(path, entry_name, DIR))
            else:
                yield Entry(path, entry_name, FILE)
        for subfolder in subfolders:
            yield subfolder
            yield from self._entries(subfolder.path, subfolder.relative)

    def open(self, path: str, mode: str) -> IO:
        return self._gfile.GFile(path, mode)

    def size(self, path: str) -> int:
        return self._gfile.stat(path).length

    def makedirs(self, path: str) -> None:
        self._gfile.makedirs(path)

    def rename(self, source: str, destination: str) -> None:
        self._gfile.rename(source, destination, overwrite=False)

    def remove(self, path: str) -> None:
        if self._gfile.isdir(path):
            self._gfile.rmtree(path)
        else:
            self._gfile.remove(path)


class FsspecFilesystem(Filesystem):
    """fsspec's filesystems (s3:// through s3fs, memory://, ...) for schemes TensorFlow lacks."""

    def __init__(self, url: str):
        scheme = url.split("://", 1)[0]
        try:
            import fsspec

            self._fs = fsspec.filesystem(scheme)
        except (ImportError, ValueError) as exc:
            hint = (" (install the project's s3 extra with its lock: see serving/README.md)"
                    if scheme.startswith("s3") else "")
            raise ModelBaseError(f"{url}: no filesystem for '{scheme}://' in TensorFlow or "
                                 f"fsspec{hint}: {exc}") from exc

    def exists(self, path: str) -> bool:
        return self._fs.exists(path)

    def isdir(self, path: str) -> bool:
        return self._fs.isdir(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1]
                      for entry in self._fs.ls(path, detail=False))

    def entries(self, root: str) -> Iterator[Entry]:
        stripped = self._fs._strip_protocol(root).rstrip("/")
        found = self._fs.find(root, withdirs=True, detail=True)
        for path in sorted(found):
            relative = path[len(stripped):].strip("/")
            if relative:
                kind = DIR if found[path]["type"] == "directory" else FILE
                yield Entry(path, relative, kind)

    def open(self, path: str, mode: str) -> IO:
        return self._fs.open(path, mode)

    def size(self, path: str) -> int:
        return int(self._fs.size(path))

    def makedirs(self, path: str) -> None:
        self._fs.makedirs(path, exist_ok=True)

    def rename(self, source: str, destination: str) -> None:
        self._fs.mv(source, destination, recursive=True)

    def remove(self, path: str) -> None:
        self._fs.rm(path, recursive=True)


def filesystem_for(url: str) -> Filesystem:
    """The filesystem for a path or URL: local, else TensorFlow's if it has the scheme, else
    fsspec's."""
    if "://" not in url:
        return LocalFilesystem()
    import tensorflow as tf

    gfile = GfileFilesystem()
    try:
        gfile.exists(url)
    except tf.errors.UnimplementedError:  # "File system scheme 's3' not implemented"
        return FsspecFilesystem(url)
    return gfile


@contextlib.contextmanager
def locked(base: str, fs: Filesystem | None = None) -> Iterator[None]:
    """Holds an exclusive lock on an existing local base path while the block runs, so that two
    local pushes into it look at what is served and publish one after the other. flock on the
    folder itself: nothing is added to it, and the kernel drops the lock with the process.
    Object stores have no such lock, and some network filesystems refuse it on a folder (NFS
    turns flock into a write lock): there the block runs unlocked, which the log says."""
    fs = fs or filesystem_for(base)
    if not isinstance(fs, LocalFilesystem):
        yield
        return
    descriptor = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # another push holds it for seconds at most
        except OSError as error:
            log.warning("Cannot lock %s (%s): pushes into it from two runs at once are not "
                        "taken in turn", base, describe_error(error))
        yield
    finally:
        os.close(descriptor)


def list_versions(base: str, fs: Filesystem | None = None, containing: str = "") -> list[int]:
    """Sorted integer versions in a base path (what TF Serving would load); with `containing`,
    only those that hold that file (e.g. saved_model.pb: a push that finished)."""
    fs = fs or filesystem_for(base)
    if not fs.isdir(base):
        return []
    return sorted(int(name) for name in fs.listdir(base) if name.isdigit()
                  and (not containing or fs.exists(fs.join(base, name, containing))))


def served_version(base: str, fs: Filesystem | None = None) -> int | None:
    """The version TF Serving serves from a base path: the highest that holds saved_model.pb."""
    versions = list_versions(base, fs, containing=contract.SAVED_MODEL_FILE)
    return versions[-1] if versions else None


def same_file(first: str, second: str) -> bool:
    """True when both files exist and hold the same bytes (each on its own filesystem)."""
    first_fs, second_fs = filesystem_for(first), filesystem_for(second)
    if not (first_fs.exists(first) and second_fs.exists(second)) or \
            first_fs.size(first) != second_fs.size(second):
        return False
    with first_fs.open(first, "rb") as a, second_fs.open(second, "rb") as b:
        while True:
            chunk = a.read(_CHUNK_BYTES)
            if chunk != b.read(_CHUNK_BYTES):
                return False
            if not chunk:
                return True


def next_version(bases: Sequence[str], now: int | None = None, above: int = 0) -> int:
    """A Unix-time version (as TFX's Pusher uses), kept above every version in all the bases (so
    the SavedModel and its .tflite can share one number) and above `above` (a number found
    taken)."""
    now = int(time.time()) if now is None else now
    latest = max((v for base in bases for v in list_versions(base)), default=0)
    return max(now, latest + 1, above + 1)


def _host_tag() -> str:
    """This machine and process-id namespace, as 8 hex digits (a host name may hold '-', the
    staging name's separator). A process id means something only in its own namespace: two
    containers of one pod (or with the host's network) share a host name, not their pids."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux: the host name alone
        namespace = ""
    return hashlib.sha1(f"{socket.gethostname()} {namespace}".encode()).hexdigest()[:8]


# The staging folder names this process has made (each unique): with this process's pid, any
# other name is an earlier process's that had the same pid (a restarted container's).
_OWN_STAGING_NAMES: set[str] = set()


def staging_name(version: int) -> str:
    """`.incoming-<version>-<start, Unix seconds>-<host>-<pid>-<random>`: a copy in progress,
    since when, and by which process of which machine."""
    name = (f"{contract.STAGING_PREFIX}{version}-{int(time.time())}-{_host_tag()}-"
            f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    _OWN_STAGING_NAMES.add(name)
    return name


def _in_progress(name: str, now: float) -> bool:
    """Whether a staging folder may still be another push's copy: its process runs (on this
    machine), or (elsewhere) it started less than STAGING_STALE_SECONDS ago. An older name
    (no start time), one of a process gone here, or one with this process's pid that this
    process did not make (an earlier process's that had the pid: a restarted container's) is an
    interrupted copy's leftovers."""
    parts = name.removeprefix(contract.STAGING_PREFIX).split("-")
    if len(parts) < 5 or not (parts[1].isdigit() and parts[3].isdigit()):
        return False
    if parts[2] == _host_tag():
        if int(parts[3]) == os.getpid():
            return name in _OWN_STAGING_NAMES
        try:
            os.kill(int(parts[3]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: running
            pass
        return True
    return now - int(parts[1]) < STAGING_STALE_SECONDS


def version_in_progress(base: str, version: int, fs: Filesystem | None = None) -> bool:
    """Whether another push is copying `version` into `base` right now (its staging folder)."""
    fs = fs or filesystem_for(base)
    if not fs.isdir(base):
        return False
    now = time.time()
    return any(name.startswith(f"{contract.STAGING_PREFIX}{version}-")
               and _in_progress(name, now) for name in fs.listdir(base))


def remove_stale_staging(base: str, fs: Filesystem | None = None,
                         now: float | None = None) -> None:
    """Removes what an interrupted copy left in a base path; a link is unlinked, not followed.

    Another push's copy in progress (another run pushing into the same base path) stays.
    """
    fs = fs or filesystem_for(base)
    if not fs.isdir(base):
        return
    now = time.time() if now is None else now
    for name in fs.listdir(base):
        if not name.startswith(contract.STAGING_PREFIX):
            continue
        if _in_progress(name, now):
            log.info("Leaving %s: another copy in progress", fs.join(base, name))
            continue
        log.warning("Removing the leftovers of an interrupted copy: %s", fs.join(base, name))
        fs.remove(fs.join(base, name))


def _checked_parts(entry: Entry, source: str) -> list[str]:
    """The entry's name as path parts, or UnsafeEntryError if it is a link or would escape."""
    if entry.kind == LINK:
        raise UnsafeEntryError(f"{entry.path}: a symbolic link in {source}; refusing to copy it "
                               f"(links are never followed; replace it with the file itself)")
    parts = [part for part in entry.relative.split("/") if part not in ("", ".")]
    if entry.relative.startswith("/") or os.path.isabs(entry.relative) or ".." in parts \
            or not parts:
        raise UnsafeEntryError(f"{entry.path}: the name {entry.relative!r} would land outside "
                               f"the destination (absolute, or with a '..' part); refusing to "
                               f"copy {source}")
    return parts


def _copy_file(source_fs: Filesystem, source: str, destination_fs: Filesystem,
               destination: str) -> None:
    with source_fs.open(source, "rb") as reader, destination_fs.open(destination, "wb") as writer:
        while chunk := reader.read(_CHUNK_BYTES):
            writer.write(chunk)
    expected, actual = source_fs.size(source), destination_fs.size(destination)
    if actual != expected:
        raise ModelBaseError(f"incomplete copy of {source}: {actual} of {expected} bytes")


def copy_tree(source_fs: Filesystem, source: str, destination_fs: Filesystem, destination: str,
              last: str = "") -> int:
    """Copies every file under `source` into `destination` (top-level `last` at the very end);
    returns the number of files. Every entry is checked before the first byte is written."""
    if source_fs.is_link(source):
        raise UnsafeEntryError(f"{source}: a symbolic link; refusing to copy it (links are "
                               f"never followed)")
    if not source_fs.isdir(source):
        raise ModelBaseError(f"{source}: not found or not a folder")
    plan = [(entry, _checked_parts(entry, source)) for entry in source_fs.entries(source)]
    plan.sort(key=lambda item: item[1] == [last])  # stable: only `last` moves to the end
    if not any(entry.kind == FILE for entry, _ in plan):
        raise ModelBaseError(f"{source}: no files to copy")
    destination_fs.makedirs(destination)
    for entry, parts in plan:
        target = destination_fs.join(destination, *parts)
        if not destination_fs.inside(destination, target):
            raise UnsafeEntryError(f"{entry.path}: would be copied to {target}, outside "
                                   f"{destination}; refusing")
        if entry.kind == DIR:
            destination_fs.makedirs(target)
            continue
        destination_fs.makedirs(destination_fs.join(destination, *parts[:-1]))
        _copy_file(source_fs, entry.path, destination_fs, target)
    return sum(entry.kind == FILE for entry, _ in plan)


def _promote(fs: Filesystem, staging: str, final: str, last: str,
             claimed: list[str] | None = None) -> None:
    """A complete staging folder becomes the version: renamed where that is atomic; elsewhere
    copied with `last` written at the very end (a server sees no saved_model.pb before the
    variables), then the staging folder removed.

    VersionTakenError when the version appeared since the caller looked: the rename finds it
    (atomically), or, on an object store, it is there just before the copy. There, two pushes
    whose copies overlap in time can still mix; the check only narrows that window to the copy.
    `claimed` gets `final` as soon as it is this call's to create (so an undo knows it).
    """
    version = int(posixpath.basename(final.rstrip("/")))
    if fs.atomic_rename:
        try:
            fs.rename(staging, final)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise VersionTakenError(f"{final} appeared meanwhile", version) from error
            raise
        return
    if fs.exists(final):
        raise VersionTakenError(f"{final} appeared meanwhile", version)
    if claimed is not None:
        claimed.append(final)
    try:
        copy_tree(fs, staging, fs, final, last=last)
    except BaseException:
        if fs.exists(final):
            fs.remove(final)
        raise
    fs.remove(staging)


def publish_version(source: str, base: str, version: int, last: str = "",
                    check: Callable[[str], None] | None = None, replace: bool = False,
                    source_fs: Filesystem | None = None,
                    base_fs: Filesystem | None = None) -> str:
    """Copies the folder `source` to `<base>/<version>` through a staging folder and a rename.

    `check(staging_path)` may raise to refuse the copy before it becomes a version; `replace`
    swaps out an existing version (which is missing for an instant: TF Serving may notice).
    Returns the version's path; on any error nothing new is left in `base`.
    """
    source_fs = source_fs or filesystem_for(source)
    base_fs = base_fs or filesystem_for(base)
    final = base_fs.join(base, str(int(version)))
    if base_fs.exists(final) and not replace:
        raise ModelBaseError(f"{final} already exists; refusing to overwrite a published version")
    base_fs.makedirs(base)
    staging = base_fs.join(base, staging_name(version))
    try:
        copy_tree(source_fs, source, base_fs, staging, last=last)
        if check is not None:
            check(staging)
        if base_fs.exists(final):
            replaced = staging + "-replaced"
            base_fs.rename(final, replaced)
            try:
                _promote(base_fs, staging, final, last)
            except BaseException:
                _to_the_end(lambda: _put_back(base_fs, replaced, final))
                raise
            base_fs.remove(replaced)
        else:
            _promote(base_fs, staging, final, last)
    finally:
        _to_the_end(lambda: _remove_if_there(base_fs, staging))
    return final


def _put_back(fs: Filesystem, replaced: str, final: str) -> None:
    """The previous copy of a version back in place, if a failed swap took it away."""
    if fs.exists(replaced):
        if fs.exists(final):
            fs.remove(final)
        fs.rename(replaced, final)


def _remove_if_there(fs: Filesystem, path: str) -> None:
    if fs.exists(path):
        fs.remove(path)


def first_line(error: BaseException) -> str:
    """An error's first line (TensorFlow's run to dozens), or its type when it has no text."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def describe_error(error: BaseException) -> str:
    """An OSError as "strerror: filename", anything else as its message."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error) or type(error).__name__


def _to_the_end(undo: Callable[[], None], tries: int = 20) -> None:
    """Runs an undo (which must be safe to run again) to its end, even when Ctrl-C lands
    meanwhile: a local run's guard raises it again every half second until the run has caught
    it, and an undo cut short would leave part of a push behind."""
    for _ in range(tries):
        try:
            undo()
            return
        except KeyboardInterrupt:
            continue
    undo()


def publish_versions_together(sources: Sequence[tuple[str, str, str]], version: int) -> list[str]:
    """Publishes every (source folder, base path, last file) as `<base>/<version>`: all or none.

    Each source is first copied into a staging folder of its base path; only when every copy
    succeeded are they renamed to the version, one after the other. On any failure the staging
    folders and the versions this call already renamed are removed, so each base path holds
    exactly what it held before, and the error names the base path and what failed.
    """
    staged: list[tuple[Filesystem, str, str, str]] = []  # (filesystem, staging, final, last)
    published: list[tuple[Filesystem, str]] = []
    promoting: tuple[Filesystem, str, str] | None = None  # (filesystem, staging, final)
    claimed: list[str] = []  # versions this call began to create (on object stores: to copy)
    current = ""
    try:
        for source, base, last in sources:
            current = base
            fs = filesystem_for(base)
            final = fs.join(base, str(int(version)))
            if fs.exists(final):
                raise VersionTakenError(f"{final} already exists; refusing to overwrite a "
                                        f"published version", int(version))
            fs.makedirs(base)
            staging = fs.join(base, staging_name(version))
            staged.append((fs, staging, final, last))
            copy_tree(filesystem_for(source), source, fs, staging, last=last)
        for fs, staging, final, last in staged:
            current = posixpath.dirname(final.rstrip("/"))
            promoting = (fs, staging, final)
            _promote(fs, staging, final, last, claimed)
            published.append((fs, final))
            promoting = None
    except BaseException as error:
        def undo() -> None:
            if promoting is not None:  # interrupted once the version was in place?
                fs, staging, final = promoting
                renamed = fs.atomic_rename and fs.exists(final) and not fs.exists(staging)
                if renamed or final in claimed:
                    published.append((fs, final))
            for fs, final in published:
                _remove_if_there(fs, final)
            for fs, staging, _, _ in staged:
                _remove_if_there(fs, staging)

        _to_the_end(undo)
        if isinstance(error, UnsafeEntryError):
            raise
        if isinstance(error, OSError | ModelBaseError):
            others = ", ".join(base for _, base, _ in sources if base != current)
            reason = describe_error(error)
            message = (f"{current}: could not publish version {version} ({reason}); nothing "
                       f"was pushed" + (f" (nothing left in {others} either)" if others else ""))
            if isinstance(error, VersionTakenError):
                raise VersionTakenError(message, int(version)) from error
            raise ModelBaseError(message) from error
        raise
    return [final for _, final in published]
