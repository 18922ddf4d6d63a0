"""Copies one pushed model version into a local TF Serving model base path, atomically.

The command is `cifar10-tfx download-model` (cli/serving.py):

    cifar10-tfx download-model gs://bucket/serving_model /srv/models/cifar10
    cifar10-tfx download-model /pipelines/cifar10/serving_model ./models/cifar10 \
        --version 1732270000

The source is a model base path as the pipeline's Pusher writes it: integer version folders,
each a SavedModel. Paths go through serving.model_base: `tf.io.gfile` (gs://, hdfs://, and s3://
where tensorflow-io is installed), or fsspec for a scheme TensorFlow has no filesystem for, such
as s3:// in a plain install (the project's `s3` extra for s3://, see serving/README.md;
credentials as boto reads them).
Folders whose name is not an integer, and version folders without saved_model.pb, are ignored.

The version is copied into a `<dest_base>/.incoming-<version>-...` staging folder (TF Serving
ignores folders whose name is not an integer), checked, and only then renamed to
`<dest_base>/<version>`, so a server polling `dest_base` never sees a half-copied version.

The check never runs the model (loading a SavedModel runs its resource initialisers, code from
the very model being checked): `saved_model.pb` is parsed as a proto, and its 'serve' MetaGraph
must hold every signature of modules.contract with its input and outputs; every tensor of the
variables checkpoint is read (data only, no graph), so a missing or cut-off shard is refused too.

Nothing outside `dest_base` is written: a source entry that is a symbolic link is refused with a
one-line error (links are never followed, so a link loop or a link to a secret cannot be copied),
and so is an entry whose name is absolute or has a `..` part (an object key can).
"""
from __future__ import annotations

import os

from modules import contract, urls
from serving import model_base


class ModelDownloadError(Exception):
    """No usable version, a missing version, a refused overwrite, an unsafe entry, or a model that
    fails checks."""


def list_versions(source_base: str, fs: model_base.Filesystem | None = None) -> list[int]:
    """Sorted integer versions under `source_base` that hold a saved_model.pb."""
    try:
        fs = fs or model_base.filesystem_for(source_base)
    except model_base.ModelBaseError as exc:
        raise ModelDownloadError(str(exc)) from exc
    if not fs.isdir(source_base):
        raise ModelDownloadError(f"{source_base}: not found or not a folder")
    return model_base.list_versions(source_base, fs, containing=contract.SAVED_MODEL_FILE)


def check_saved_model(path: str) -> None:
    """Raises ModelDownloadError unless `path`'s saved_model.pb, read as a proto and never run,
    has a 'serve' MetaGraph with every signature of modules.contract, its input and outputs."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto_path = os.path.join(path, contract.SAVED_MODEL_FILE)
    saved_model = saved_model_pb2.SavedModel()
    try:
        with open(proto_path, "rb") as f:
            saved_model.ParseFromString(f.read())
    except (OSError, DecodeError) as exc:
        raise ModelDownloadError(f"SavedModel does not load: {contract.SAVED_MODEL_FILE} is not "
                                 f"a SavedModel proto ({exc})") from exc
    graphs = [graph for graph in saved_model.meta_graphs
              if contract.SERVING_TAG in graph.meta_info_def.tags]
    if not graphs:
        raise ModelDownloadError(f"SavedModel does not load: no MetaGraph tagged "
                                 f"'{contract.SERVING_TAG}' (the one TF Serving loads)")
    signatures = graphs[0].signature_def
    for name, input_name in contract.SIGNATURE_INPUTS.items():
        if name not in signatures:
            raise ModelDownloadError(
                f"SavedModel has no '{name}' signature (has {sorted(signatures)})")
        inputs, outputs = set(signatures[name].inputs), set(signatures[name].outputs)
        missing = set(contract.SIGNATURE_OUTPUTS) - outputs
        if inputs != {input_name} or missing:
            raise ModelDownloadError(
                f"SavedModel signature '{name}' takes {sorted(inputs)} and returns "
                f"{sorted(outputs)}; expected ['{input_name}'] and "
                f"{sorted(contract.SIGNATURE_OUTPUTS)}")


def check_variables(path: str) -> None:
    """Raises ModelDownloadError unless every tensor of `path`'s variables checkpoint reads."""
    import tensorflow as tf

    prefix = os.path.join(path, contract.SAVED_MODEL_VARIABLES)
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError, OSError) as exc:
        # the file's name within the model, not the staging folder's path
        reason = model_base.first_line(exc).replace(path.rstrip(os.sep) + os.sep, "")
        raise ModelDownloadError(f"SavedModel does not load: its variables cannot be read "
                                 f"({reason})") from exc


def check_model(path: str) -> None:
    """The signatures (check_saved_model) and the weights (check_variables), never run."""
    check_saved_model(path)
    check_variables(path)


def download_model(source_base: str, dest_base: str, version: int | None = None,
                   force: bool = False) -> str:
    """Copies the highest (or the given) version of `source_base` to `<dest_base>/<version>`.

    Returns the final local path. Raises ModelDownloadError when no version is found, the given
    version is missing, `<dest_base>/<version>` exists and `force` is False, an entry is a symbolic
    link or would land outside `dest_base`, or the copy is not a SavedModel with the contract's
    signatures; in every error case nothing is left in `dest_base`.
    """
    source_base = str(source_base)
    dest_base = str(dest_base)
    _check_dest_base(source_base, dest_base)
    if not urls.is_url(source_base):
        return _download(source_base, dest_base, version, force)
    import tensorflow as tf

    try:
        return _download(source_base, dest_base, version, force)
    except tf.errors.OpError as exc:  # a bucket out of reach, without credentials, or denied
        raise ModelDownloadError(f"{source_base} cannot be read: "
                                 f"{' '.join(exc.message.split())}") from None


def _download(source_base: str, dest_base: str, version: int | None, force: bool) -> str:
    try:
        source_fs = model_base.filesystem_for(source_base)  # one scheme probe for all of it
    except model_base.ModelBaseError as exc:
        raise ModelDownloadError(str(exc)) from exc
    versions = list_versions(source_base, source_fs)
    if not versions:
        raise ModelDownloadError(
            f"{source_base}: no model versions (integer folders with {contract.SAVED_MODEL_FILE})")
    if version is None:
        version = versions[-1]
    else:
        version = int(version)
        if version not in versions:
            raise ModelDownloadError(
                f"{source_base}: version {version} not found; available: "
                + ", ".join(str(v) for v in versions))

    final = os.path.join(dest_base, str(version))
    if os.path.lexists(final) and not force:
        raise ModelDownloadError(f"{final} already exists; use --force to replace it")
    try:
        return model_base.publish_version(
            source_fs.join(source_base, str(version)), dest_base, version,
            check=check_model, replace=force, source_fs=source_fs,
            base_fs=model_base.LocalFilesystem())
    except model_base.ModelBaseError as exc:
        raise ModelDownloadError(str(exc)) from exc


def _check_dest_base(source_base: str, dest_base: str) -> None:
    """DEST_BASE is a local folder that can be made or written (checked up front, so a file in
    the way is named, not an errno), apart from SOURCE_BASE: a URL would become a folder named
    `gs:` here, and a copy into the source would grow (or rewrite) the pushed versions."""
    if urls.is_url(dest_base):
        raise ModelDownloadError(f"DEST_BASE {dest_base}: a local folder is expected (this "
                                 "copies a pushed version to this machine)")
    problem = urls.unusable_folder(dest_base)
    if problem:
        raise ModelDownloadError(f"DEST_BASE {dest_base} {problem}")
    if urls.is_url(source_base):
        return
    source, dest = os.path.realpath(source_base), os.path.realpath(dest_base)
    if dest == source or dest.startswith(source.rstrip(os.sep) + os.sep):
        raise ModelDownloadError(f"DEST_BASE {dest_base} is {'' if dest == source else 'inside '}"
                                 f"SOURCE_BASE {source_base}: copy to a folder outside it")
