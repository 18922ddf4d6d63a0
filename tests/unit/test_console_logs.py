"""What a run prints without --verbose: our lines, TFX's component progress, and which
components were cached (TFX's own lines for those read as if they had run)."""
from __future__ import annotations

import io
import logging
import warnings

from cli import logs


def test_progress_and_cached_components_are_shown_and_noise_is_not(monkeypatch):
    # configure() also sets TensorFlow's log level and warning filters: for this test only.
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    printed = io.StringIO()
    try:
        with warnings.catch_warnings():
            logs.configure(verbose=False)
        root.handlers[0].setStream(printed)
        tfx = logging.getLogger("absl")
        tfx.info("Component %s is running.", "Trainer")
        tfx.info("A cached execution %d is used.", 12)
        tfx.info("Component %s is finished.", "Trainer")
        tfx.info("Going to run a new execution %d", 13)
        logging.getLogger(f"{logs.PROJECT_LOGGER}.pusher").info("Pushed version %d", 7)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = [line.split(" ", 2)[2] for line in printed.getvalue().splitlines()]
    assert lines == ["Component Trainer is running.", logs.CACHED_LINE,
                     "Component Trainer is finished.", "Pushed version 7"]
