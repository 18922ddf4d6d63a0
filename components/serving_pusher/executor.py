"""Pushes a blessed SavedModel into a TF Serving base path, and its .tflite beside, atomically.

A version is first copied into a hidden staging folder in the same base path and then renamed to
its number. TF Serving only loads integer-named folders, so it never sees half a version; on a local
or POSIX file system the rename is atomic. On object stores (gs://, s3://) a rename is a copy, so
there the SavedModel's `saved_model.pb` is written last, after its variables.
The SavedModel and the TFLite model share one version number.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

log = logging.getLogger("cifar10_tfx.pusher")

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
TFLITE_KEY = "tflite_model"
PUSHED_MODEL_KEY = "pushed_model"
SERVING_DIR_KEY = "serving_dir"
TFLITE_DIR_KEY = "tflite_dir"
STAGING_PREFIX = ".incoming-"


def is_blessed(blessing: types.Artifact) -> bool:
    return bool(blessing.get_int_custom_property("blessed"))


def existing_versions(base_dir: str) -> List[int]:
    """Integer version folders in a base path (what TF Serving would load)."""
    if not tf.io.gfile.isdir(base_dir):
        return []
    return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(base_dir)
                  if name.rstrip("/").isdigit())


def next_version(base_dirs: List[str], now: Optional[int] = None) -> int:
    """A Unix-time version (as TFX's Pusher uses), kept above every version already pushed."""
    now = int(time.time()) if now is None else now
    latest = max((v for d in base_dirs for v in existing_versions(d)), default=0)
    return max(now, latest + 1)


def _copy_tree(source: str, destination: str, last: str = "") -> None:
    """Copies a folder, leaving the file named `last` (if present at top level) for the end."""
    tf.io.gfile.makedirs(destination)
    deferred = None
    for root, _, files in tf.io.gfile.walk(source):
        relative = os.path.relpath(root, source)
        target_root = destination if relative == "." else os.path.join(destination, relative)
        tf.io.gfile.makedirs(target_root)
        for name in files:
            if relative == "." and name == last:
                deferred = name
                continue
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target_root, name),
                             overwrite=True)
    if deferred:
        tf.io.gfile.copy(os.path.join(source, deferred), os.path.join(destination, deferred),
                         overwrite=True)


def push_atomically(source_dir: str, base_dir: str, version: int, last: str = "") -> str:
    """Copies `source_dir` to `<base_dir>/<version>` through a staging folder and a rename."""
    final = os.path.join(base_dir, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(f"{final} already exists; refusing to overwrite a pushed version.")
    staging = os.path.join(base_dir, f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    try:
        _copy_tree(source_dir, staging, last=last)
        tf.io.gfile.rename(staging, final)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return final


def remove_stale_staging(base_dir: str) -> None:
    """Removes staging folders that a crashed push left behind (TF Serving ignores them anyway)."""
    if not tf.io.gfile.isdir(base_dir):
        return
    for name in tf.io.gfile.listdir(base_dir):
        if name.startswith(STAGING_PREFIX):
            log.warning("Removing the leftovers of an interrupted push: %s", name)
            tf.io.gfile.rmtree(os.path.join(base_dir, name.rstrip("/")))


class Executor(base_executor.BaseExecutor):
    """Pushes blessed models only; records pushed, version and destinations on the PushedModel."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        pushed = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[BLESSING_KEY])
        if not is_blessed(blessing):
            log.warning("The model is not blessed (see %s); nothing was pushed.", blessing.uri)
            pushed.set_int_custom_property("pushed", 0)
            return

        serving_dir = exec_properties[SERVING_DIR_KEY]
        tflite_dir = exec_properties.get(TFLITE_DIR_KEY) or ""
        tflite = input_dict.get(TFLITE_KEY) or []
        base_dirs = [serving_dir] + ([tflite_dir] if tflite and tflite_dir else [])
        for base_dir in base_dirs:
            tf.io.gfile.makedirs(base_dir)
            remove_stale_staging(base_dir)
        version = next_version(base_dirs)

        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        serving_source = os.path.join(model.uri, "Format-Serving")
        # The TFLite model is pushed first: a version whose SavedModel exists always has its .tflite.
        if tflite and tflite_dir:
            tflite_path = push_atomically(artifact_utils.get_single_uri(tflite), tflite_dir,
                                          version)
            pushed.set_string_custom_property("pushed_tflite_destination", tflite_path)
            log.info("Pushed the TFLite model to %s", tflite_path)
        saved_model_path = push_atomically(serving_source, serving_dir, version,
                                           last="saved_model.pb")
        log.info("Pushed the SavedModel to %s", saved_model_path)

        pushed.set_int_custom_property("pushed", 1)
        pushed.set_string_custom_property("pushed_destination", saved_model_path)
        pushed.set_int_custom_property("pushed_version", version)
        pushed.set_int_custom_property("pushed_model_id", model.id)
        io_utils.write_string_file(os.path.join(pushed.uri, "PUSHED"), saved_model_path)
