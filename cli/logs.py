"""Logging set-up: our own progress lines stay visible, TF/Beam noise only with --verbose."""
from __future__ import annotations

import logging
import os
import re
import warnings

PROJECT_LOGGER = "cifar10_tfx"
# TFX's launcher lines that say which component starts and ends: kept as progress.
_PROGRESS = re.compile(r"^Component \S+ is (running|finished)|^node \S+ is (running|finished)",
                       re.IGNORECASE)
# TFX's launcher line for a component whose outputs come from the cache: between that
# component's "is running" and "is finished", which otherwise read as if it had run.
_CACHED = re.compile(r"^A cached execution \d+ is used")
CACHED_LINE = "Cached: the outputs of an earlier run with the same inputs are reused."


class _QuietFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(PROJECT_LOGGER) or record.levelno >= logging.ERROR:
            return True
        if _CACHED.search(record.getMessage()):
            record.msg, record.args = CACHED_LINE, ()
            return True
        return bool(_PROGRESS.search(record.getMessage()))


def configure(verbose: bool = False) -> None:
    """Call before TensorFlow is imported so its C++ logging is quietened too."""
    if not verbose:
        # Level 3 also hides TF's C++ ERROR lines: on CPU machines, CUDA plugin registration
        # noise ("Unable to register cuDNN factory", once per Beam worker too). Set, not
        # defaulted: an inherited "2" would bring it back. --verbose leaves the level alone.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        warnings.filterwarnings("ignore")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%H:%M:%S"))
    if not verbose:
        handler.addFilter(_QuietFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        from absl import logging as absl_logging

        absl_logging.use_python_logging()
        absl_logging.set_verbosity(absl_logging.INFO)
        absl_logging.get_absl_handler().setLevel(logging.INFO)
    except ImportError:
        pass
