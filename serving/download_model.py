"""Copies one pushed model version into a local TF Serving model base path, atomically.

    python -m serving.download_model gs://bucket/serving_model/cifar10 /srv/models/cifar10
    python -m serving.download_model /pipelines/cifar10/serving_model ./models/cifar10 --version 1732270000

The source is a model base path as the pipeline's Pusher writes it: integer version folders,
each a SavedModel. Paths go through `tf.io.gfile` (local, gs://, hdfs://, and s3:// where
tensorflow-io is installed); a scheme TensorFlow has no filesystem for, such as s3:// in a plain
install, goes through fsspec instead (`pip install s3fs` for s3://; credentials as boto reads them).
Folders whose name is not an integer, and version folders without saved_model.pb, are ignored.

The version is copied into `<dest_base>/.tmp-<version>-<random>` (TF Serving ignores folders
whose name is not an integer), loaded with `tf.saved_model.load` and checked for the
`serving_default` signature, and only then renamed to `<dest_base>/<version>` with `os.replace`,
so a server polling `dest_base` never sees a half-copied version.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid

from modules import constants

SAVED_MODEL_FILE = "saved_model.pb"


class ModelDownloadError(Exception):
    """No usable version, a missing version, a refused overwrite, or a model that fails checks."""


class _GfileStore:
    """TensorFlow's filesystems: local paths, gs://, hdfs://, ram://, s3:// with tensorflow-io."""

    def __init__(self):
        import tensorflow as tf

        self._gfile = tf.io.gfile

    def isdir(self, path: str) -> bool:
        return self._gfile.isdir(path)

    def listdir(self, path: str) -> list:
        return [entry.rstrip("/") for entry in self._gfile.listdir(path)]

    def exists(self, path: str) -> bool:
        return self._gfile.exists(path)

    def entries(self, root: str):
        """(path, path relative to root, is a folder) of everything under root."""
        root = root.rstrip("/")
        for dirpath, _, filenames in self._gfile.walk(root):
            rel_dir = dirpath.rstrip("/")[len(root):].strip("/")
            if rel_dir:
                yield dirpath, rel_dir, True
            for name in filenames:
                yield _join(dirpath, name), "/".join(p for p in (rel_dir, name) if p), False

    def size(self, path: str) -> int:
        return self._gfile.stat(path).length

    def copy_to_local(self, path: str, local: str) -> None:
        self._gfile.copy(path, local, overwrite=True)


class _FsspecStore:
    """fsspec's filesystems (s3:// through s3fs, memory://, ...) for schemes TensorFlow lacks."""

    def __init__(self, url: str):
        try:
            import fsspec

            self._fs = fsspec.filesystem(url.split("://", 1)[0])
        except (ImportError, ValueError) as exc:
            scheme = url.split("://", 1)[0]
            hint = " (pip install s3fs, or tensorflow-io)" if scheme.startswith("s3") else ""
            raise ModelDownloadError(
                f"{url}: no filesystem for '{scheme}://' in TensorFlow or fsspec{hint}: "
                f"{exc}") from exc

    def isdir(self, path: str) -> bool:
        return self._fs.isdir(path)

    def listdir(self, path: str) -> list:
        return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in self._fs.ls(path, detail=False)]

    def exists(self, path: str) -> bool:
        return self._fs.exists(path)

    def entries(self, root: str):
        stripped = self._fs._strip_protocol(root).rstrip("/")
        found = self._fs.find(root, withdirs=True, detail=True)
        for path in sorted(found):
            yield path, path[len(stripped):].strip("/"), found[path]["type"] == "directory"

    def size(self, path: str) -> int:
        return int(self._fs.size(path))

    def copy_to_local(self, path: str, local: str) -> None:
        self._fs.get_file(path, local)


def _store(url: str):
    """The filesystem for `url`: TensorFlow's where it has one for the scheme, else fsspec's."""
    import tensorflow as tf

    store = _GfileStore()
    if "://" not in url:
        return store
    try:
        store.exists(url)
    except tf.errors.UnimplementedError:  # "File system scheme 's3' not implemented"
        return _FsspecStore(url)
    return store


def _join(base: str, *parts: str) -> str:
    """Joins with "/" for local paths and URLs alike (gfile listings may end names with "/")."""
    return "/".join([base.rstrip("/") or "/"] + [p.strip("/") for p in parts])


def list_versions(source_base: str, store=None) -> list:
    """Sorted integer versions under `source_base` that hold a saved_model.pb."""
    store = store or _store(source_base)
    if not store.isdir(source_base):
        raise ModelDownloadError(f"{source_base}: not found or not a folder")
    versions = []
    for name in store.listdir(source_base):
        if name.isdigit() and store.exists(_join(source_base, name, SAVED_MODEL_FILE)):
            versions.append(int(name))
    return sorted(versions)


def _copy_tree(store, src: str, dst: str) -> list:
    """Copies every file under `src` into the local folder `dst`; returns (relpath, size)."""
    copied = []
    os.makedirs(dst, exist_ok=True)
    for remote, relative, is_dir in store.entries(src):
        local = os.path.join(dst, *relative.split("/"))
        if is_dir:
            os.makedirs(local, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(local), exist_ok=True)
        store.copy_to_local(remote, local)
        expected = store.size(remote)
        actual = os.path.getsize(local)
        if actual != expected:
            raise ModelDownloadError(f"incomplete copy of {remote}: {actual} of {expected} bytes")
        copied.append((os.path.join(*relative.split("/")), actual))
    if not copied:
        raise ModelDownloadError(f"{src}: no files to copy")
    return copied


def check_saved_model(path: str) -> None:
    """Raises ModelDownloadError unless `path` loads and has the serving_default signature."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(path)
    except Exception as exc:  # noqa: BLE001 - TF raises many types for a bad SavedModel
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelDownloadError(f"SavedModel does not load: {first_line}") from exc
    signatures = sorted(loaded.signatures.keys())
    if constants.SERVING_SIGNATURE not in signatures:
        raise ModelDownloadError(
            f"SavedModel has no '{constants.SERVING_SIGNATURE}' signature (has {signatures})")


def download_model(source_base: str, dest_base: str, version: int | None = None,
                   force: bool = False) -> str:
    """Copies the highest (or the given) version of `source_base` to `<dest_base>/<version>`.

    Returns the final local path. Raises ModelDownloadError when no version is found, the given
    version is missing, `<dest_base>/<version>` exists and `force` is False, or the copy does
    not load as a SavedModel with `serving_default`; in every error case nothing is left in
    `dest_base`.
    """
    source_base = str(source_base)
    dest_base = str(dest_base)
    store = _store(source_base)  # one filesystem (and one scheme probe) for listing and copying
    versions = list_versions(source_base, store)
    if not versions:
        raise ModelDownloadError(
            f"{source_base}: no model versions (integer folders with {SAVED_MODEL_FILE})")
    if version is None:
        version = versions[-1]
    else:
        version = int(version)
        if version not in versions:
            raise ModelDownloadError(
                f"{source_base}: version {version} not found; available: "
                + ", ".join(str(v) for v in versions))

    final = os.path.join(dest_base, str(version))
    if os.path.exists(final) and not force:
        raise ModelDownloadError(f"{final} already exists; use --force to replace it")

    os.makedirs(dest_base, exist_ok=True)
    tmp = os.path.join(dest_base, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        _copy_tree(store, _join(source_base, str(version)), tmp)
        check_saved_model(tmp)
        if os.path.exists(final):
            # os.replace cannot replace a non-empty folder: move the old one aside first. The
            # version is missing for an instant, which TF Serving may notice on its next poll.
            old = os.path.join(dest_base, f".old-{version}-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old, final)  # put the previous copy back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.download_model",
        description="Copy a pushed model version into a local TF Serving model base path.")
    parser.add_argument("source_base",
                        help="pushed base path (local, gs://, s3:// with s3fs or tensorflow-io)")
    parser.add_argument("dest_base", help="local model base path, e.g. ./models/cifar10")
    parser.add_argument("--version", type=int, help="version to copy (default: the highest)")
    parser.add_argument("--force", action="store_true",
                        help="replace the version if it already exists in dest_base")
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        path = download_model(args.source_base, args.dest_base, args.version, args.force)
    except (ModelDownloadError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
