"""Command-line flags both runners share, and their mapping onto PipelineConfig fields."""
from __future__ import annotations

import argparse
import os
from typing import Any, Optional

from modules import constants
from pipeline import configs

_FIELDS = configs.PipelineConfig.__dataclass_fields__
STRATEGIES = ("default", "mirrored", "multi_worker")


def default(name: str):
    return _FIELDS[name].default


def add_training_flags(group) -> None:
    """Training, tuning, blessing and TFLite flags (an ArgumentParser or an argument group)."""
    group.add_argument("--epochs", type=int, default=default("epochs"), help="training epochs")
    group.add_argument("--batch-size", type=int, default=default("batch_size"), help="batch size")
    group.add_argument("--steps-per-epoch", type=int, default=None,
                       help="default: one pass over train")
    group.add_argument("--eval-fraction", type=float, default=default("eval_fraction"),
                       help="share of each training batch file held out as eval")
    group.add_argument("--label-drift-threshold", type=float,
                       default=default("label_drift_threshold"),
                       help="stop when a split's label shares moved more than this since the "
                       "previous run's data (0: off)")
    group.add_argument("--tune", action="store_true", help="run the KerasTuner search first")
    group.add_argument("--tuner-trials", type=int, default=default("tuner_trials"),
                       help="KerasTuner trials")
    group.add_argument("--tuner-epochs", type=int, default=default("tuner_epochs"),
                       help="epochs per trial")
    group.add_argument("--hyperparameters-dir",
                       help="reuse a finished search: a Tuner best_hyperparameters folder")
    group.add_argument("--distribution-strategy", default=default("distribution_strategy"),
                       choices=STRATEGIES, help="the Trainer's tf.distribute strategy")
    group.add_argument("--accuracy-threshold", type=float, default=default("accuracy_threshold"),
                       help="test accuracy the model needs to be blessed and pushed")
    group.add_argument("--max-accuracy-regression", type=float,
                       default=default("max_accuracy_regression"),
                       help="how much worse than the latest blessed model a new one may be")
    group.add_argument("--test-time-augmentation", default=default("test_time_augmentation"),
                       choices=constants.TEST_TIME_AUGMENTATIONS,
                       help="views the exported model averages per image: none (1), flip (2) or "
                            "flip_translate (6; most accurate, 6x the serving compute of none)")
    group.add_argument("--tflite-mode", default=default("tflite_mode"),
                       choices=configs.TFLITE_MODES, help="TFLite quantization")
    group.add_argument("--no-tflite", action="store_true", help="skip the TFLite converter")
    group.add_argument("--tflite-max-accuracy-drop", type=float,
                       default=default("tflite_max_accuracy_drop"),
                       help="how much test accuracy the .tflite may lose (0.01 = one point)")
    group.add_argument("--tflite-calibration-samples", type=int,
                       default=default("tflite_calibration_samples"),
                       help="int8 calibration images from train")
    group.add_argument("--no-cache", action="store_true", help="re-run every component")


def _absolute(path: Optional[str]) -> Optional[str]:
    """Local paths become absolute; gs://, s3:// and other URLs stay as they are."""
    if not path or "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))


def training_settings(args: argparse.Namespace) -> dict[str, Any]:
    """PipelineConfig keyword arguments from the flags add_training_flags defined."""
    return dict(
        epochs=args.epochs, batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch,
        eval_fraction=args.eval_fraction, label_drift_threshold=args.label_drift_threshold,
        enable_tuning=args.tune, tuner_trials=args.tuner_trials, tuner_epochs=args.tuner_epochs,
        hyperparameters_dir=_absolute(args.hyperparameters_dir),
        distribution_strategy=args.distribution_strategy,
        accuracy_threshold=args.accuracy_threshold,
        max_accuracy_regression=args.max_accuracy_regression,
        test_time_augmentation=args.test_time_augmentation,
        enable_tflite=not args.no_tflite, tflite_mode=args.tflite_mode,
        tflite_max_accuracy_drop=args.tflite_max_accuracy_drop,
        tflite_calibration_samples=args.tflite_calibration_samples,
        enable_cache=not args.no_cache)
