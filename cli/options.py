"""Options `run` and `compile-kfp` share, and their one mapping onto PipelineConfig.

Values are checked in one place, PipelineConfig.validate; a ConfigError from it comes back here
and is reported under the flag the user typed, with the value they gave.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from cli.core import Choice, Float, Int, Option, env_source, usage_error
from modules import contract, urls
from pipeline import beam, configs

F = TypeVar("F", bound=Callable[..., Any])
_FIELDS = configs.PipelineConfig.__dataclass_fields__
# PipelineConfig settings whose flag is not simply --<setting-with-dashes>.
_FLAG_OF_SETTING = {"enable_tuning": "--no-tune", "enable_tflite": "--no-tflite",
                    "enable_cache": "--no-cache", "beam_args": "--beam-arg"}


def default(setting: str) -> Any:
    """PipelineConfig's default for a setting: the flags never restate a default."""
    return _FIELDS[setting].default


def _apply(options: list[Callable[[F], F]], function: F) -> F:
    for option in reversed(options):  # click lists options in the order they decorate
        function = option(function)
    return function


def training_options(section: str) -> Callable[[F], F]:
    """Training, tuning, blessing and TFLite flags, shown under `section` in --help."""

    def option(*args: Any, **kwargs: Any) -> Callable[[F], F]:
        return click.option(*args, cls=Option, section=section, **kwargs)

    options = [
        option("--epochs", type=Int(), default=default("epochs"), help="training epochs"),
        option("--batch-size", type=Int(), default=default("batch_size"), help="batch size"),
        option("--steps-per-epoch", type=Int(), default=None,
               help="default: one pass over train"),
        option("--seed", type=Int(), default=default("seed"),
               help="seeds initial weights, shuffling, augmentation and the Tuner"),
        option("--eval-fraction", type=Float(), default=default("eval_fraction"),
               help="share of each training batch file held out as eval"),
        option("--label-drift-threshold", type=Float(), default=default("label_drift_threshold"),
               help="stop when a split's label shares moved more than this since the previous "
                    "run's data (0: off)"),
        option("--tune/--no-tune", default=default("enable_tuning"),
               help="the KerasTuner search before training (first trial: the defaults; "
                    "reused while data, code and tuner flags are unchanged)"),
        option("--tuner-trials", type=Int(), default=default("tuner_trials"),
               help="KerasTuner trials"),
        option("--tuner-epochs", type=Int(), default=default("tuner_epochs"),
               help="epochs per trial"),
        option("--tuner-train-fraction", type=Float(), default=default("tuner_train_fraction"),
               help="share of train each trial trains on (the proxy budget)"),
        option("--hyperparameters-dir",
               help="reuse a finished search instead of tuning: a Tuner best_hyperparameters "
                    "folder"),
        option("--distribution-strategy", type=Choice(contract.DISTRIBUTION_STRATEGIES),
               default=default("distribution_strategy"),
               help="the Trainer's tf.distribute strategy"),
        option("--trainer-workers", type=Int(), default=default("trainer_workers"),
               help="Trainer replicas; more than 1 runs the Trainer as a Vertex AI custom "
                    "training job (compile-kfp --target vertex with --project and --region) "
                    "under multi_worker, which it implies; refused by a local run and by "
                    "--target kfp"),
        option("--accuracy-threshold", type=Float(), default=default("accuracy_threshold"),
               help="test accuracy the model needs to be blessed and pushed"),
        option("--max-accuracy-regression", type=Float(),
               default=default("max_accuracy_regression"),
               help="how much worse than the model being served (the newest version in the "
                    "serving folder) a new one may be"),
        option("--test-time-augmentation", type=Choice(contract.TEST_TIME_AUGMENTATIONS),
               default=default("test_time_augmentation"),
               help="views the exported model averages per image: none (1), flip (2), "
                    "flip_translate (6; a third of a point more, 3x the serving compute of flip) "
                    "or flip_if_unsure (the mirror only below a confidence the Trainer sets on "
                    "eval)"),
        option("--tflite-mode", type=Choice(contract.TFLITE_MODES), default=default("tflite_mode"),
               help="TFLite quantization"),
        option("--no-tflite", is_flag=True, help="skip the TFLite converter"),
        option("--tflite-max-accuracy-drop", type=Float(),
               default=default("tflite_max_accuracy_drop"),
               help="how much test accuracy the .tflite may lose (0.01 = one point)"),
        option("--tflite-calibration-samples", type=Int(),
               default=default("tflite_calibration_samples"),
               help="int8 calibration images from train"),
        option("--no-cache", is_flag=True, help="re-run every component"),
        option("--predict-dir", metavar="DIR",
               help="also classify the images of this folder (local or gs://) with the blessed "
                    "model (BulkInferrer): predictions.csv and .jsonl"),
        option("--resize", is_flag=True,
               help="with --predict-dir: resize images of other sizes to 32x32 instead of "
                    "refusing them"),
    ]
    return lambda function: _apply(options, function)


def beam_options(section: str, workers_help: str, arg_help: str) -> Callable[[F], F]:
    """--beam-workers and the repeatable --beam-arg (the commands word their help apart)."""
    options = [
        click.option("--beam-workers", cls=Option, section=section, type=Int(),
                     default=default("beam_workers"), help=workers_help),
        click.option("--beam-arg", "beam_arg", cls=Option, section=section, multiple=True,
                     help=arg_help),
    ]
    return lambda function: _apply(options, function)


def portable_options(section: str) -> Callable[[F], F]:
    """--beam-runner portable: a local run's Beam stages on a Flink or Spark Beam job server."""
    options = [
        click.option("--beam-runner", cls=Option, section=section,
                     type=Choice(beam.LOCAL_BEAM_RUNNERS), default=beam.RUNNER_DIRECT,
                     help="direct: in this process; portable: a Beam job server (Flink, Spark) "
                          "with the arguments `compile-kfp --beam-runner flink/spark` gives"),
        click.option("--job-endpoint", cls=Option, section=section,
                     help="portable: the Beam job server, HOST:PORT (e.g. localhost:8099)"),
        click.option("--environment-config", cls=Option, section=section,
                     help="portable: the SDK worker pool (EXTERNAL), HOST:PORT (default "
                          f"{beam.DEFAULT_WORKER_POOL})"),
    ]
    return lambda function: _apply(options, function)


def local_beam_args(runner: str, job_endpoint: str | None, environment_config: str | None,
                    extra: tuple[str, ...]) -> tuple[str, ...]:
    """The Beam arguments of a local run: --beam-arg alone, or the portable ones, then those."""
    if runner != beam.RUNNER_PORTABLE:
        if job_endpoint or environment_config:
            raise usage_error("--job-endpoint and --environment-config need --beam-runner "
                              "portable")
        return tuple(extra)
    if not job_endpoint:
        raise usage_error("--beam-runner portable needs --job-endpoint HOST:PORT (the Beam job "
                          "server of a Flink or Spark cluster)")
    return tuple(beam.with_extra(beam.local_portable_args(
        job_endpoint, environment_config or beam.DEFAULT_WORKER_POOL), extra))


def absolute(path: str | None) -> str | None:
    """Local paths become absolute; gs://, s3:// and other URLs stay as they are (issue #20:
    `--serving-dir gs://b/m` once became ./gs:/b/m). The one helper for every path flag."""
    if not path or urls.is_url(path):
        return path
    return os.path.abspath(os.path.expanduser(path))


def training_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """PipelineConfig keyword arguments from the flags training_options defined."""
    return dict(
        epochs=params["epochs"], batch_size=params["batch_size"],
        steps_per_epoch=params["steps_per_epoch"], seed=params["seed"],
        eval_fraction=params["eval_fraction"],
        label_drift_threshold=params["label_drift_threshold"],
        enable_tuning=params["tune"], tuner_trials=params["tuner_trials"],
        tuner_epochs=params["tuner_epochs"], tuner_train_fraction=params["tuner_train_fraction"],
        hyperparameters_dir=absolute(params["hyperparameters_dir"]),
        distribution_strategy=params["distribution_strategy"],
        trainer_workers=params["trainer_workers"],
        accuracy_threshold=params["accuracy_threshold"],
        max_accuracy_regression=params["max_accuracy_regression"],
        test_time_augmentation=params["test_time_augmentation"],
        enable_tflite=not params["no_tflite"], tflite_mode=params["tflite_mode"],
        tflite_max_accuracy_drop=params["tflite_max_accuracy_drop"],
        tflite_calibration_samples=params["tflite_calibration_samples"],
        enable_cache=not params["no_cache"],
        predict_dir=absolute(params["predict_dir"]), predict_resize=params["resize"])


def flag_of(setting: str, renamed: Mapping[str, str] | None = None) -> str:
    """The flag that sets a PipelineConfig field (`renamed` for a command's own names)."""
    names = {**_FLAG_OF_SETTING, **(renamed or {})}
    return names.get(setting, "--" + setting.replace("_", "-"))


def build_config(renamed: Mapping[str, str] | None = None, local: bool = False,
                 target: str | None = None,
                 **settings: Any) -> configs.PipelineConfig:
    """PipelineConfig(**settings); a bad value is a usage error naming the flag and the value.

    `local`: also what a run on this machine needs (PipelineConfig.validate_local_run);
    `target`: what that compile target can run (PipelineConfig.validate_target).
    """
    try:
        config = configs.PipelineConfig(**settings)
        if local:
            config.validate_local_run()
        if target:
            config.validate_target(target)
        return config
    except configs.ConfigError as error:
        value = error.value
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        flag = flag_of(error.setting, renamed)
        ctx = click.get_current_context(silent=True)
        param = next((p for p in ctx.command.params if flag in getattr(p, "opts", ())),
                     None) if ctx is not None else None
        envvar = env_source(ctx, param)
        named = f"{envvar}={shown}" if envvar else f"{flag} {shown}"
        raise usage_error(f"{named}: {error}") from None
    except ValueError as error:
        raise usage_error(str(error)) from None
