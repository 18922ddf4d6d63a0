"""TFX module file for the Tuner (`tuner_fn`) and the Trainer (`run_fn`).

Settings arrive through the components' `custom_config` (see pipeline/pipeline.py); hyperparameters
come from the Tuner, from an imported earlier search, or from modules.contract.DEFAULT_HPARAMS.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from typing import Any

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from modules import contract, data, export
from modules import model as model_lib

log = logging.getLogger("cifar10_tfx.training")

WARMUP_IMAGES = 4
WHITENING_IMAGES = 5000


def search_space(hp: keras_tuner.HyperParameters) -> dict[str, Any]:
    """The Tuner's search space around the defaults; each default is its value's default, so
    the first trial (DefaultsFirstOracle) trains exactly what an untuned run trains."""
    d = contract.DEFAULT_HPARAMS
    return {
        "base_filters": hp.Choice("base_filters", [48, 56, 64], default=d["base_filters"]),
        "dropout": hp.Float("dropout", 0.0, 0.2, step=0.1, default=d["dropout"]),
        "learning_rate": hp.Float("learning_rate", 0.2, 0.8, sampling="log",
                                  default=d["learning_rate"]),
        "weight_decay": hp.Choice("weight_decay", [5e-4, 1.3e-3, 3e-3],
                                  default=d["weight_decay"]),
        "label_smoothing": hp.Choice("label_smoothing", [0.1, 0.2],
                                     default=d["label_smoothing"]),
    }


class DefaultsFirstOracle(keras_tuner.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation whose first trial is the defaults.

    So the search can only end at least as good as an untuned run on its own objective, and the
    trials table shows what tuning bought. KerasTuner's own first trials are random.
    """

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        defaults = {hp.name: hp.default for hp in self.hyperparameters.space}
        if defaults and not self._duplicate(defaults):  # noqa: SLF001 (KerasTuner's own check)
            return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": defaults}
        return super().populate_space(trial_id)


class ConciseTuner(keras_tuner.Tuner):
    """KerasTuner's Tuner whose summaries (which TFX's Tuner executor prints around the search)
    are one log line each instead of KerasTuner's pages of print(): the run report has the
    trials table, and the per-trial progress stays."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # KerasTuner 1.4 takes any process that can import IPython for a notebook (it tests
        # get_ipython()'s class name, and None's is not "Terminal...") and "clears the output"
        # between trials, which outside a notebook prints terminal escape codes into the log.
        from keras_tuner.src import utils as keras_tuner_utils

        if keras_tuner_utils.IS_NOTEBOOK and not _in_ipython():
            keras_tuner_utils.IS_NOTEBOOK = False

    def search_space_summary(self, extended: bool = False) -> None:
        log.info("Search space: %s", "; ".join(
            f"{hp.name} {_choices(hp.get_config())}" for hp in self.oracle.get_space().space))

    def results_summary(self, num_trials: int = 10) -> None:
        trials = [t for t in self.oracle.trials.values() if t.score is not None]
        best = self.oracle.get_best_trials(1)
        if best:
            log.info("Tuner: %d trial(s) scored; the best, trial %s, %s %.4f with %s",
                     len(trials), best[0].trial_id, self.oracle.objective.name, best[0].score,
                     best[0].hyperparameters.values)


def _in_ipython() -> bool:
    try:
        import IPython
    except ImportError:
        return False
    return IPython.get_ipython() is not None


def _choices(config: dict[str, Any]) -> Any:
    """A hyperparameter's choices as its KerasTuner config says them: values (Choice), a range
    (Int, Float), or the one value (Fixed); a Boolean says neither."""
    if config.get("values"):
        return config["values"]
    if "min_value" in config:
        return (config["min_value"], config["max_value"])
    return config.get("value", "True or False")


def _settings(custom_config: dict | None) -> dict[str, Any]:
    defaults = {"epochs": contract.DEFAULT_EPOCHS, "batch_size": contract.DEFAULT_BATCH_SIZE,
                "steps_per_epoch": None, "test_time_augmentation": contract.TTA_NONE,
                "distribution_strategy": contract.STRATEGY_DEFAULT,
                "seed": contract.DEFAULT_SEED}
    return {**defaults, **(custom_config or {})}


def _strategy(name: str, collective_timeout_s: float | None = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy; it must exist before any other TF op runs (collective ops are
    configured at program start-up, so run_fn creates it first thing)."""
    if name not in contract.DISTRIBUTION_STRATEGIES:
        raise ValueError(f"Unknown distribution_strategy {name!r}; choose one of "
                         f"{', '.join(contract.DISTRIBUTION_STRATEGIES)}.")
    if name == contract.STRATEGY_MIRRORED:
        return tf.distribute.MirroredStrategy()
    if name == contract.STRATEGY_MULTI_WORKER:
        # A bounded wait per collective: a lost worker fails the step instead of hanging it.
        timeout = collective_timeout_s or contract.DEFAULT_COLLECTIVE_TIMEOUT_S
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                timeout_seconds=float(timeout)))
    return tf.distribute.get_strategy()


def _is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())  # noqa: SLF001 (no public accessor)


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Worker 0 (or the chief task) writes the real outputs; every other worker only scratch."""
    if not _is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def _output_dirs(fn_args, chief: bool) -> tuple[str, str]:
    """(model URI, model-run dir): the artifacts' own for the chief, a fresh temp dir otherwise.

    Every worker must still save (saving a distributed model runs collectives), but the last
    writer would otherwise win over the chief's export, TensorBoard logs and summary.
    """
    model_uri = export.model_uri_of_serving_dir(fn_args.serving_model_dir)
    if chief:
        return model_uri, fn_args.model_run_dir
    scratch = tempfile.mkdtemp(prefix="cifar10-worker-")
    return os.path.join(scratch, "model"), os.path.join(scratch, "model_run")


def _sharded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """DATA auto-sharding: the ExampleGen writes one file per split, too few to shard by FILE."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _datasets(fn_args, batch_size: int):
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    train = data.transformed_dataset(fn_args.train_files, tf_transform_output)
    evaluation = data.transformed_dataset(fn_args.eval_files, tf_transform_output)
    num_train = data.count(train)  # fills the in-memory cache too
    if num_train < batch_size:
        raise ValueError(f"The train split has {num_train} examples, fewer than one batch of "
                         f"{batch_size}; lower batch_size or add data.")
    return tf_transform_output, train, evaluation, num_train


def _whitening(train: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The whitening stem's weights, from the first WHITENING_IMAGES of `train`."""
    return model_lib.whitening_weights(
        next(iter(train.batch(WHITENING_IMAGES).take(1)))[0].numpy())


def _new_model(hparams: dict[str, Any], whitening: tuple[np.ndarray, np.ndarray],
               total_steps: int, batch_size: int,
               synchronized_batchnorm: bool = False) -> keras.Model:
    model = model_lib.build_model(hparams)
    if synchronized_batchnorm:
        _synchronize_batchnorm(model, True)
    model_lib.set_whitening(model, whitening)
    return model_lib.compile_model(model, hparams, total_steps, batch_size)


def _synchronize_batchnorm(model: keras.Model, synchronized: bool) -> None:
    """Batch statistics over the global batch (all workers), as SyncBatchNormalization did.

    Without it each worker normalises, and updates its moving statistics, with its own shard, so
    the workers' moving statistics drift apart and the chief exports only its own.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = synchronized


def _steps_per_epoch(settings: dict, num_train: int) -> int:
    return int(settings["steps_per_epoch"] or num_train // int(settings["batch_size"]))


def proxy_subset(train: tf.data.Dataset, num_train: int, fraction: float,
                 batch_size: int) -> tuple[tf.data.Dataset, int]:
    """The first `fraction` of `train` (at least one batch): the Tuner's proxy budget."""
    count = min(num_train, max(batch_size, int(round(num_train * fraction))))
    return train.take(count), count  # `train` is cached already


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """KerasTuner search on `eval` accuracy, on a proxy budget (a share of `train`, few epochs).

    The first trial is the defaults (DefaultsFirstOracle); every trial is a short real training
    run with the Trainer's own model, schedule and input pipeline.
    """
    settings = _settings(fn_args.custom_config)
    batch_size, seed = int(settings["batch_size"]), int(settings["seed"])
    _, train, evaluation, num_train = _datasets(fn_args, batch_size)
    train, num_proxy = proxy_subset(train, num_train, float(settings.get(
        "train_fraction", contract.DEFAULT_TUNER_TRAIN_FRACTION)), batch_size)
    steps = _steps_per_epoch(settings, num_proxy)
    epochs = int(settings["epochs"])
    max_trials = int(settings.get("max_trials", contract.DEFAULT_TUNER_TRIALS))
    whitening = _whitening(train)
    log.info("Tuning: %d trial(s) of %d epoch(s) x %d steps on %d of %d train images",
             max_trials, epochs, steps, num_proxy, num_train)

    def build(hp: keras_tuner.HyperParameters) -> keras.Model:
        return _new_model(search_space(hp), whitening, steps * epochs, batch_size)

    oracle = DefaultsFirstOracle(
        objective=keras_tuner.Objective("val_accuracy", direction="max"),
        max_trials=max_trials,
        # The defaults, then random points, then the Gaussian process.
        num_initial_points=min(3, max_trials),
        seed=seed)
    tuner = ConciseTuner(
        oracle=oracle,
        hypermodel=build,
        directory=fn_args.working_dir,
        project_name="cifar10_tuning",
    )
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "x": data.without_autotune(data.training_batches(
                train, num_proxy, batch_size, seed=seed,
                augmentation=data.Augmentation.of(contract.DEFAULT_HPARAMS))),
            "validation_data": data.make_batches(evaluation, batch_size, training=False),
            "epochs": epochs,
            "steps_per_epoch": steps,
            "callbacks": model_lib.training_callbacks(
                contract.DEFAULT_HPARAMS, steps * epochs, batch_size),
            "verbose": 2,
        })


def _hyperparameters(fn_args) -> dict[str, Any]:
    if not fn_args.hyperparameters:
        return dict(contract.DEFAULT_HPARAMS)
    found = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
    return {**contract.DEFAULT_HPARAMS, **found.values}


# Keras 3's fit under MultiWorkerMirroredStrategy (keras-team/keras#20585, still in 3.6 and in
# Keras' newest code): its symbolic build passes the first *per-replica* batch to strategy.reduce,
# which cannot convert it; and its metric reduction calls strategy.reduce("MEAN", scalar, axis=0),
# which fails on scalars. Both are patched on one model, for one fit, and only for multi-worker.


def _local_batch(value, strategy: tf.distribute.Strategy):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _symbolic_build_on_local_batch(model: keras.Model, strategy: tf.distribute.Strategy):
    """Model._maybe_symbolic_build, building from this worker's first batch: only shapes count."""

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, batches in iterator.enumerate_epoch():
                data_batch = tf.nest.map_structure(lambda v: _local_batch(v, strategy),
                                                   next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)  # noqa: SLF001 (Keras' own builder)

    return maybe_symbolic_build


def _mean_over_replicas(original):
    """reduce_per_replica whose multi-worker mean averages across replicas only (axis=None)."""

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and _is_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None), values)
        return original(values, strategy, reduction)

    return reduce_per_replica


@contextlib.contextmanager
def keras_multi_worker_fixes(model: keras.Model, strategy: tf.distribute.Strategy):
    """Works around Keras' fit bugs under multi-worker training, for the duration of one fit."""
    if not _is_multi_worker(strategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer  # noqa: PLC0415

    original = keras_tf_trainer.reduce_per_replica
    keras_tf_trainer.reduce_per_replica = _mean_over_replicas(original)
    model._maybe_symbolic_build = _symbolic_build_on_local_batch(model, strategy)  # noqa: SLF001
    try:
        yield
    finally:
        keras_tf_trainer.reduce_per_replica = original
        del model._maybe_symbolic_build  # noqa: SLF001


def _barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker got here: non-chief workers leave only after the chief's export
    is written (TFX's executor checks the model folder on every worker)."""
    if _is_multi_worker(strategy):
        strategy.reduce(tf.distribute.ReduceOp.SUM,
                        strategy.run(tf.function(lambda: tf.constant(1.0))), axis=None)


# What a collective op raises when a peer died, timed out or the coordination service cut it off.
_LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                       tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError)


def weights_fingerprints(model: keras.Model) -> dict[str, str]:
    """SHA-256 of the trainable and of the other (BatchNorm moving) weights: workers compare."""
    def digest(variables) -> str:
        sha = hashlib.sha256()
        for variable in variables:
            sha.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
        return sha.hexdigest()

    return {"trainable": digest(model.trainable_weights),
            "non_trainable": digest(model.non_trainable_weights)}


def _lost_worker_error(error: Exception, strategy: tf.distribute.Strategy) -> RuntimeError:
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return RuntimeError(
        f"Multi-worker training failed: a worker of the cluster {json.dumps(cluster)} stopped "
        f"answering or failed ({type(error).__name__}: {str(error).splitlines()[0][:300]}). "
        f"Every worker must run the same Trainer step; see the other workers' logs.")


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains on `train`, validates on `eval` each epoch, exports the serving SavedModel.

    Under `multi_worker` every worker of TF_CONFIG's cluster runs this; only the chief writes
    the Model and ModelRun artifacts.
    """
    settings = _settings(fn_args.custom_config)
    strategy = _strategy(settings["distribution_strategy"], settings.get("collective_timeout_s"))
    multi_worker = _is_multi_worker(strategy)
    chief = _is_chief(strategy)
    seed = int(settings["seed"])
    keras.utils.set_random_seed(seed)
    batch_size = int(settings["batch_size"])
    hparams = _hyperparameters(fn_args)
    hparams["compute_dtype"] = model_lib.compute_dtype(hparams)  # "auto" resolved, as recorded
    tf_transform_output, train, evaluation, num_train = _datasets(fn_args, batch_size)
    steps = _steps_per_epoch(settings, num_train)
    epochs = int(settings["epochs"])
    model_uri, model_run_dir = _output_dirs(fn_args, chief)
    log.info("Training on %d images, %d epochs of %d steps, hyperparameters %s, %d replica(s)%s",
             num_train, epochs, steps, json.dumps(hparams, sort_keys=True),
             strategy.num_replicas_in_sync, "" if chief else f"; scratch output {model_uri}")
    started = time.monotonic()
    try:
        with strategy.scope():
            model = _new_model(hparams, _whitening(train), steps * epochs, batch_size,
                               synchronized_batchnorm=multi_worker)
        with strategy.scope(), keras_multi_worker_fixes(model, strategy):
            model.fit(
                _sharded(data.training_batches(
                    train, num_train, batch_size, seed=seed,
                    augmentation=data.Augmentation.of(hparams))),
                validation_data=_sharded(
                    data.make_batches(evaluation, batch_size, training=False)),
                epochs=epochs,
                steps_per_epoch=steps,
                verbose=2,
                callbacks=[keras.callbacks.TensorBoard(log_dir=model_run_dir),
                           *model_lib.training_callbacks(hparams, steps * epochs, batch_size)],
            )
        _synchronize_batchnorm(model, False)  # the export is the same model as a 1-worker one's
        with strategy.scope():  # what follows sees the served (float32) numerics
            model = export.float32_twin(model)
        if float(hparams["ema_momentum"]) > 0.0:
            # Every worker sees the same unshuffled, unaugmented batches: equal statistics.
            model_lib.recalibrate_batchnorm(
                model, data.make_batches(train, batch_size, training=False).repeat())
        fingerprints = weights_fingerprints(model)
        log.info("Weights fingerprints (equal on every worker): %s", json.dumps(fingerprints))
        views = export.calibrated_views(model, settings["test_time_augmentation"],
                                        evaluation.batch(batch_size))
        export.export_serving_model(
            model, tf_transform_output, model_uri,
            data.encoded_images(fn_args.eval_files, WARMUP_IMAGES), tta=views)
        summary = {"hyperparameters": hparams, "parameters": int(model.count_params()),
                   "train_examples": num_train, "epochs": epochs, "steps_per_epoch": steps,
                   "seed": seed, "replicas": int(strategy.num_replicas_in_sync),
                   "weights_fingerprints": fingerprints,
                   contract.TRAIN_SECONDS_KEY: round(time.monotonic() - started, 1),
                   contract.MACHINE_KEY: _machine()}
        summary_path = os.path.join(model_run_dir, contract.TRAINING_SUMMARY_FILE)
        tf.io.gfile.makedirs(model_run_dir)
        with tf.io.gfile.GFile(summary_path, "w") as f:
            f.write(json.dumps(summary, indent=2, sort_keys=True))
        _barrier(strategy)
    except _LOST_WORKER_ERRORS as error:
        if multi_worker:
            raise _lost_worker_error(error, strategy) from error
        raise
    finally:
        if not chief:
            shutil.rmtree(os.path.dirname(model_uri), ignore_errors=True)


def _machine() -> dict[str, Any]:
    """Where the model was trained, for its model card: figures depend on the hardware."""
    return {"platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "tensorflow": tf.__version__}
