"""Copies one pushed model version into a local TF Serving model base path, atomically.

    python -m serving.download_model gs://bucket/serving_model/cifar10 /srv/models/cifar10
    python -m serving.download_model /pipelines/cifar10/serving_model ./models/cifar10 --version 1732270000

The source is a model base path as the pipeline's Pusher writes it: integer version folders,
each a SavedModel. Any path `tf.io.gfile` reads works (local, gs://, s3:// with
tensorflow-io). Folders whose name is not an integer, and version folders without
saved_model.pb, are ignored.

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


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _join(base: str, *parts: str) -> str:
    """Joins with "/" for local paths and URLs alike (gfile listings may end names with "/")."""
    return "/".join([base.rstrip("/") or "/"] + [p.strip("/") for p in parts])


def list_versions(source_base: str) -> list:
    """Sorted integer versions under `source_base` that hold a saved_model.pb."""
    gfile = _gfile()
    if not gfile.isdir(source_base):
        raise ModelDownloadError(f"{source_base}: not found or not a folder")
    versions = []
    for entry in gfile.listdir(source_base):
        name = entry.rstrip("/")
        if not name.isdigit():
            continue
        if gfile.exists(_join(source_base, name, SAVED_MODEL_FILE)):
            versions.append(int(name))
    return sorted(versions)


def _copy_tree(src: str, dst: str) -> list:
    """Copies every file under `src` into the local folder `dst`; returns (relpath, size)."""
    gfile = _gfile()
    copied = []
    src_root = src.rstrip("/")
    for dirpath, _, filenames in gfile.walk(src_root):
        rel_dir = dirpath.rstrip("/")[len(src_root):].lstrip("/")
        local_dir = os.path.join(dst, *rel_dir.split("/")) if rel_dir else dst
        os.makedirs(local_dir, exist_ok=True)
        for name in filenames:
            remote = _join(dirpath, name)
            local = os.path.join(local_dir, name)
            gfile.copy(remote, local, overwrite=True)
            expected = gfile.stat(remote).length
            actual = os.path.getsize(local)
            if actual != expected:
                raise ModelDownloadError(
                    f"incomplete copy of {remote}: {actual} of {expected} bytes")
            copied.append((os.path.join(rel_dir, name) if rel_dir else name, actual))
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
    versions = list_versions(source_base)
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
        _copy_tree(_join(source_base, str(version)), tmp)
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
                        help="pushed base path (local, gs://, or s3:// with tensorflow-io)")
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
