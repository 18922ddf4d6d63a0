"""Every knob of the pipeline, in one place, with defaults that work on a laptop.

The runners (local_runner.py, kubeflow_runner.py) only translate flags into a PipelineConfig; the
DAG itself is built from it by pipeline.pipeline.create_pipeline.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from typing import Optional

from modules import constants

PIPELINE_NAME = "cifar10"
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(PROJECT_DIR, "pipeline", "schema", "schema.pbtxt")
MODULES_DIR = os.path.join(PROJECT_DIR, "modules")
# The module functions are imported from the installed package (no per-run user-code wheels);
# code_fingerprint() goes into their custom_config so that editing modules/ invalidates the cache.
PREPROCESSING_FN = "modules.preprocessing.preprocessing_fn"
TUNER_FN = "modules.training.tuner_fn"
RUN_FN = "modules.training.run_fn"

# Where the binary batches sit inside the data root, as the official archive unpacks.
BATCHES_DIR = "cifar-10-batches-bin"
TRAIN_PATTERN = f"{BATCHES_DIR}/data_batch_*.bin"
TEST_PATTERN = f"{BATCHES_DIR}/test_batch.bin"

TFLITE_MODES = ("int8", "float16", "dynamic", "none")


def code_fingerprint() -> str:
    """sha256 over modules/*.py and the schema: changes whenever model or preprocessing code does."""
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(MODULES_DIR, "*.py"))) + [SCHEMA_PATH]:
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


@dataclasses.dataclass
class PipelineConfig:
    """All settings of one pipeline; every field has a working default."""

    pipeline_name: str = PIPELINE_NAME
    # Folder holding `cifar-10-batches-bin/` (what the official archive unpacks to).
    data_root: str = os.path.expanduser("~/.cache/cifar10")
    output_dir: str = os.path.join(PROJECT_DIR, "outputs")
    pipeline_root: Optional[str] = None  # default: <output_dir>/pipeline_root
    metadata_path: Optional[str] = None  # default: <output_dir>/metadata.sqlite
    serving_dir: Optional[str] = None  # default: <output_dir>/serving_model (TF Serving base path)
    tflite_dir: Optional[str] = None  # default: <output_dir>/tflite_model
    # The curated schema as the components see it (inside a container image it lives elsewhere).
    schema_path: str = SCHEMA_PATH

    # ExampleGen: the last `eval_fraction` of every training batch file becomes `eval`.
    eval_fraction: float = 0.1
    # ExampleValidator: stop when a split's label distribution moved more than this (L-infinity
    # distance of class shares) since the previous run's data. 0 switches the check off.
    label_drift_threshold: float = 0.1

    # Tuner (KerasTuner). Off: the Trainer uses `hyperparameters_dir` if given, else defaults.
    enable_tuning: bool = False
    tuner_trials: int = 6
    tuner_epochs: int = 3
    hyperparameters_dir: Optional[str] = None  # a Tuner output folder (best_hyperparameters.txt)

    # Trainer.
    epochs: int = 18  # ~2 to 2.5 min each on 2 CPU cores for the default network
    batch_size: int = 256
    steps_per_epoch: Optional[int] = None  # None: one pass over `train`
    distribution_strategy: str = "default"  # default | mirrored | multi_worker
    # Views of each image the exported model averages: none | flip | flip_translate (see constants).
    test_time_augmentation: str = constants.TTA_FLIP_TRANSLATE

    # Evaluator: blessing needs this test accuracy, and no regression against the last blessed.
    accuracy_threshold: float = 0.80
    max_accuracy_regression: float = 0.0

    # TFLite converter.
    enable_tflite: bool = True
    tflite_mode: str = "int8"
    tflite_calibration_samples: int = 500
    tflite_max_accuracy_drop: float = 0.01
    tflite_verify_samples: Optional[int] = None  # None: the whole test split

    # Beam: DirectRunner in multi-processing mode by default; any runner through beam_args.
    beam_workers: int = 0  # 0: one per CPU core
    beam_args: tuple[str, ...] = ()

    enable_cache: bool = True

    def __post_init__(self) -> None:
        self.pipeline_root = self.pipeline_root or os.path.join(self.output_dir, "pipeline_root")
        self.metadata_path = self.metadata_path or os.path.join(self.output_dir, "metadata.sqlite")
        self.serving_dir = self.serving_dir or os.path.join(self.output_dir, "serving_model")
        self.tflite_dir = self.tflite_dir or os.path.join(self.output_dir, "tflite_model")
        self.validate()

    def validate(self) -> None:
        """Fails early, naming the setting, instead of deep inside a component."""
        checks = [
            (0.0 < self.eval_fraction < 1.0, "eval_fraction must be between 0 and 1"),
            (0.0 <= self.label_drift_threshold <= 1.0,
             "label_drift_threshold must be within [0, 1] (0 switches it off)"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.tuner_trials >= 1, "tuner_trials must be at least 1"),
            (self.tuner_epochs >= 1, "tuner_epochs must be at least 1"),
            (0.0 <= self.accuracy_threshold <= 1.0, "accuracy_threshold must be within [0, 1]"),
            (self.max_accuracy_regression >= 0.0, "max_accuracy_regression must be >= 0"),
            (self.tflite_mode in TFLITE_MODES,
             f"tflite_mode must be one of {', '.join(TFLITE_MODES)}, not {self.tflite_mode!r}"),
            (self.tflite_calibration_samples >= 1, "tflite_calibration_samples must be >= 1"),
            # Negative values demand the quantized model beat the float one (used by tests).
            (-1.0 <= self.tflite_max_accuracy_drop <= 1.0,
             "tflite_max_accuracy_drop must be within [-1, 1] (a fraction: 0.01 is one point)"),
            (self.distribution_strategy in ("default", "mirrored", "multi_worker"),
             "distribution_strategy must be default, mirrored or multi_worker"),
            (self.test_time_augmentation in constants.TEST_TIME_AUGMENTATIONS,
             f"test_time_augmentation must be one of "
             f"{', '.join(constants.TEST_TIME_AUGMENTATIONS)}, not {self.test_time_augmentation!r}"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             "steps_per_epoch must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def default_beam_args(self) -> list[str]:
        """DirectRunner with one worker process per core unless beam_args choose otherwise."""
        if self.beam_args:
            return list(self.beam_args)
        if self.beam_workers == 1:  # small data: worker start-up would cost more than it saves
            return ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
        return ["--direct_running_mode=multi_processing",
                f"--direct_num_workers={self.beam_workers}"]
