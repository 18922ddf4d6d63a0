"""Running .tflite models here: LiteRT's interpreter, and quiet about it.

The TFLite converter (components/tflite_converter) and `cifar10-tfx predict --tflite`
(serving/local_models) both build interpreters, and both would print TFLite's C++ log lines.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

log = logging.getLogger("cifar10_tfx.tflite")


@contextlib.contextmanager
def native_logs_hidden() -> Iterator[None]:
    """Keeps the C++ log lines of the TFLite converter and interpreter (absl's "Ignored
    output_format", the quantizer's settings, "Created TensorFlow Lite XNNPACK delegate") off
    the console when TF_CPP_MIN_LOG_LEVEL, which they ignore, is 3 (as `cifar10-tfx` sets it
    without --verbose).

    Output descriptors 1 and 2 point at a temporary file meanwhile: on an exception its last
    lines are logged, and if the process dies inside (an LLVM abort) the file stays behind in
    the temporary folder as `cifar10-tflite-native-*.log`.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    opened: list[int] = []
    try:
        opened += [os.dup(1), os.dup(2)]
        handle, path = tempfile.mkstemp(prefix="cifar10-tflite-native-", suffix=".log")
        opened.append(handle)
    except OSError:  # no stdout or stderr to hide (closed descriptors): nothing to do
        for descriptor in opened:
            os.close(descriptor)
        yield
        return
    saved_out, saved_err, capture = opened
    os.dup2(capture, 1)
    os.dup2(capture, 2)
    failed = True
    try:
        yield
        failed = False
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for descriptor in opened:
            os.close(descriptor)
        if failed:
            with open(path, errors="replace") as f:
                tail = f.read()[-4000:].strip()
            if tail:
                log.warning("TFLite's native output before the failure:\n%s", tail)
        os.remove(path)


def make_interpreter(tflite_model: bytes):
    """LiteRT's interpreter (ai-edge-litert) on one thread, as a phone app runs it, falling back
    to tf.lite's; its tensors allocated. Raises ValueError or RuntimeError for bytes that are
    not a model it can run."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - the lock installs ai-edge-litert
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806 - a class
    with native_logs_hidden():
        interpreter = Interpreter(model_content=tflite_model, num_threads=1)
        interpreter.allocate_tensors()
    return interpreter
