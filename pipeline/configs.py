"""Every knob of the pipeline, in one place, with defaults that work on a laptop.

The commands (cli/: `cifar10-tfx run`, `cifar10-tfx compile-kfp`) only translate flags into a
PipelineConfig; the DAG itself is built from it by pipeline.pipeline.create_pipeline.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os

from modules import contract, urls

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(PROJECT_DIR, "pipeline", "schema", "schema.pbtxt")
MODULES_DIR = os.path.join(PROJECT_DIR, "modules")
# The module functions are imported from the installed package (no per-run user-code wheels);
# code_fingerprint() goes into their custom_config so that editing modules/ invalidates the cache.
PREPROCESSING_FN = "modules.preprocessing.preprocessing_fn"
TUNER_FN = "modules.training.tuner_fn"
RUN_FN = "modules.training.run_fn"
# --trainer-workers > 1: each replica of the Vertex AI custom training job is one of these.
DEFAULT_TRAINER_MACHINE_TYPE = "n1-standard-8"


class ConfigError(ValueError):
    """A setting out of range; keeps the field and the value so that a CLI can name its flag."""

    def __init__(self, setting: str, value: object, message: str):
        super().__init__(message)
        self.setting = setting
        self.value = value


def code_fingerprint() -> str:
    """sha256 over modules/*.py and the schema: changes whenever model or preprocessing does."""
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(MODULES_DIR, "*.py"))) + [SCHEMA_PATH]:
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


@dataclasses.dataclass
class PipelineConfig:
    """All settings of one pipeline; every field has a working default."""

    pipeline_name: str = contract.PIPELINE_NAME
    # Folder holding `cifar-10-batches-bin/` (what the official archive unpacks to).
    data_root: str = os.path.expanduser(contract.DEFAULT_DATA_DIR)
    output_dir: str = os.path.join(PROJECT_DIR, "outputs")
    pipeline_root: str | None = None  # default: <output_dir>/pipeline_root
    metadata_path: str | None = None  # default: <output_dir>/metadata.sqlite
    serving_dir: str | None = None  # default: <output_dir>/serving_model (TF Serving base path)
    tflite_dir: str | None = None  # default: <output_dir>/tflite_model
    # The curated schema as the components see it (inside a container image it lives elsewhere).
    schema_path: str = SCHEMA_PATH

    # ExampleGen: the last `eval_fraction` of every training batch file becomes `eval`.
    eval_fraction: float = 0.1
    # ExampleValidator: stop when a split's label distribution moved more than this (L-infinity
    # distance of class shares) since the previous run's data. 0 switches the check off.
    label_drift_threshold: float = 0.1

    # Tuner (KerasTuner), on a proxy budget: tuner_trials x tuner_epochs on a share of `train`;
    # the first trial is the defaults. A finished search is a cache hit while the data, the code
    # and these settings are unchanged. Off: the Trainer uses the defaults.
    # `hyperparameters_dir` (an earlier search's best_hyperparameters folder) replaces the search.
    enable_tuning: bool = True
    tuner_trials: int = contract.DEFAULT_TUNER_TRIALS
    tuner_epochs: int = contract.DEFAULT_TUNER_EPOCHS
    tuner_train_fraction: float = contract.DEFAULT_TUNER_TRAIN_FRACTION
    hyperparameters_dir: str | None = None

    # Trainer.
    epochs: int = contract.DEFAULT_EPOCHS
    batch_size: int = contract.DEFAULT_BATCH_SIZE
    steps_per_epoch: int | None = None  # None: one pass over `train`
    # Initial weights, shuffling, augmentation and the Tuner's random points: two runs with the
    # same seed, data and code train alike (up to the nondeterminism of multithreaded kernels).
    seed: int = contract.DEFAULT_SEED
    distribution_strategy: str = contract.STRATEGY_DEFAULT  # one of DISTRIBUTION_STRATEGIES
    # Trainer replicas. More than 1 runs the Trainer as a Vertex AI custom training job (TFX's
    # Google Cloud extension): a chief and trainer_workers - 1 workers, each a
    # `trainer_machine_type` machine running `image` (the pipeline image) in `gcp_project` and
    # `gcp_region`, under MultiWorkerMirroredStrategy (implied by the default strategy). Only
    # for compile-kfp --target vertex: see validate_target.
    trainer_workers: int = 1
    trainer_machine_type: str = DEFAULT_TRAINER_MACHINE_TYPE
    gcp_project: str | None = None
    gcp_region: str | None = None
    image: str | None = None
    # Views of each image the exported model averages: none | flip | flip_translate |
    # flip_if_unsure (contract). flip_if_unsure: 1.09-1.34 forward passes per image on the
    # full-data networks, 0 to 0.34 points under flip (benchmarks/RESULTS.md, "Test-time levels").
    test_time_augmentation: str = contract.TTA_FLIP_IF_UNSURE

    # Evaluator: blessing needs this test accuracy, and no regression against the served model.
    accuracy_threshold: float = 0.80
    max_accuracy_regression: float = 0.0

    # TFLite converter.
    enable_tflite: bool = True
    tflite_mode: str = contract.TFLITE_MODES[0]  # int8
    tflite_calibration_samples: int = 500
    tflite_max_accuracy_drop: float = 0.01
    tflite_verify_samples: int | None = None  # None: the whole test split

    # Beam: DirectRunner in multi-processing mode by default; any runner through beam_args.
    beam_workers: int = 0  # 0: one per CPU core
    beam_args: tuple[str, ...] = ()

    enable_cache: bool = True

    # Batch inference (off when unset): classify the images of this folder (local or gs://) with
    # the blessed model through TFX's BulkInferrer; other sizes are refused unless predict_resize.
    predict_dir: str | None = None
    predict_resize: bool = False

    def __post_init__(self) -> None:
        self.pipeline_root = self.pipeline_root or os.path.join(self.output_dir,
                                                                contract.PIPELINE_ROOT_DIR)
        self.metadata_path = self.metadata_path or os.path.join(self.output_dir,
                                                                contract.METADATA_FILE)
        self.serving_dir = self.serving_dir or os.path.join(self.output_dir,
                                                            contract.SERVING_BASE_DIR)
        self.tflite_dir = self.tflite_dir or os.path.join(self.output_dir,
                                                          contract.TFLITE_BASE_DIR)
        if self.trainer_workers > 1 and self.distribution_strategy == contract.STRATEGY_DEFAULT:
            self.distribution_strategy = contract.STRATEGY_MULTI_WORKER  # replicas need it
        self.validate()

    def validate(self) -> None:
        """Fails early, naming the setting, instead of deep inside a component."""
        modes, strategies = contract.TFLITE_MODES, contract.DISTRIBUTION_STRATEGIES
        augmentations = contract.TEST_TIME_AUGMENTATIONS
        checks = [
            ("eval_fraction", 0.0 < self.eval_fraction < 1.0,
             "eval_fraction must be between 0 and 1"),
            ("label_drift_threshold", 0.0 <= self.label_drift_threshold <= 1.0,
             "label_drift_threshold must be within [0, 1] (0 switches it off)"),
            ("epochs", self.epochs >= 1, "epochs must be at least 1"),
            ("batch_size", self.batch_size >= 1, "batch_size must be at least 1"),
            ("tuner_trials", self.tuner_trials >= 1, "tuner_trials must be at least 1"),
            ("tuner_epochs", self.tuner_epochs >= 1, "tuner_epochs must be at least 1"),
            ("tuner_train_fraction", 0.0 < self.tuner_train_fraction <= 1.0,
             "tuner_train_fraction must be within (0, 1]"),
            ("accuracy_threshold", 0.0 <= self.accuracy_threshold <= 1.0,
             "accuracy_threshold must be within [0, 1]"),
            ("max_accuracy_regression", self.max_accuracy_regression >= 0.0,
             "max_accuracy_regression must be >= 0"),
            ("tflite_mode", self.tflite_mode in modes,
             f"tflite_mode must be one of {', '.join(modes)}, not {self.tflite_mode!r}"),
            ("tflite_calibration_samples", self.tflite_calibration_samples >= 1,
             "tflite_calibration_samples must be >= 1"),
            # Negative values demand the quantized model beat the float one (used by tests).
            ("tflite_max_accuracy_drop", -1.0 <= self.tflite_max_accuracy_drop <= 1.0,
             "tflite_max_accuracy_drop must be within [-1, 1] (a fraction: 0.01 is one point)"),
            ("distribution_strategy", self.distribution_strategy in strategies,
             f"distribution_strategy must be {', '.join(strategies[:-1])} or {strategies[-1]}"),
            ("trainer_workers", self.trainer_workers >= 1, "trainer_workers must be at least 1"),
            # An empty type reached Vertex AI as a job it refuses, after the run had started.
            ("trainer_machine_type", bool(self.trainer_machine_type.strip()),
             "trainer_machine_type must name a machine type (e.g. n1-standard-8)"),
            ("distribution_strategy", self.trainer_workers == 1
             or self.distribution_strategy == contract.STRATEGY_MULTI_WORKER,
             f"trainer_workers > 1 trains across the replicas with "
             f"{contract.STRATEGY_MULTI_WORKER} (implied when the strategy is left out); "
             f"{self.distribution_strategy} does not"),
            ("test_time_augmentation", self.test_time_augmentation in augmentations,
             f"test_time_augmentation must be one of {', '.join(augmentations)}, "
             f"not {self.test_time_augmentation!r}"),
            ("steps_per_epoch", self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             "steps_per_epoch must be at least 1"),
            # keras.utils.set_random_seed takes what numpy's seeding takes: 0 to 2**32 - 1.
            ("seed", 0 <= self.seed < 2 ** 32, "seed must be within [0, 2**32 - 1]"),
            # A negative count used to fail deep inside Beam ("list index out of range").
            ("beam_workers", self.beam_workers >= 0,
             "beam_workers must be >= 0 (0: one per CPU core, 1: in-process)"),
            # A missing folder used to stop the run with an empty error from the Importer.
            ("hyperparameters_dir", _is_folder_or_remote(self.hyperparameters_dir),
             "hyperparameters_dir is not a folder (a Tuner output holding "
             f"{contract.BEST_HYPERPARAMETERS_FILE})"),
            # TFX reads the one file in the folder: anything else fails in the Trainer.
            ("hyperparameters_dir", _holds_one_file(self.hyperparameters_dir),
             f"hyperparameters_dir must hold one file, {contract.BEST_HYPERPARAMETERS_FILE}, "
             f"and nothing else: a Tuner output such as <pipeline-root>/{contract.TUNER_NODE}/"
             "best_hyperparameters/<number>"),
            ("predict_dir", _is_folder_or_remote(self.predict_dir),
             "predict_dir is not a folder (of PNG/JPEG/WebP images to classify)"),
        ]
        for setting, ok, message in checks:
            if not ok:
                raise ConfigError(setting, getattr(self, setting), message)
        stray = stray_beam_arg(self.beam_args)
        if stray is not None:
            raise ConfigError("beam_args", stray, "a Beam argument is a --flag or the value "
                              "after one (Beam drops anything else); write --flag=value")
        self._validate_paths()
        self._validate_batch_size()

    def _validate_paths(self, writable: bool = False) -> None:
        """Output folders usable before anything runs (issues #16 and #20). Whether this
        machine may write there matters only for a local run (`writable`): a compiler or a
        container builds configs whose folders live elsewhere."""
        for setting in OUTPUT_PATH_SETTINGS:
            path = getattr(self, setting)
            if not isinstance(path, str) or urls.is_url(path):
                continue  # a bucket or a runtime placeholder: checked where it is written
            if any(char in path for char in GLOB_CHARACTERS):
                raise ConfigError(setting, path, f"{setting} holds a glob character (*, ? or "
                                  "[), which Beam's file sinks read as a pattern; choose a "
                                  "folder name without them")
            problem = urls.unusable_folder(path, writable)
            if problem:
                raise ConfigError(setting, path, f"{setting} {problem}")
        if self.enable_tflite and push_folders_overlap(self.serving_dir, self.tflite_dir):
            raise ConfigError("tflite_dir", self.tflite_dir,
                              "tflite_dir must be neither serving_dir nor inside it (nor hold "
                              "it): a .tflite-only version folder in the TF Serving base path "
                              "would make TF Serving fail to load it")

    def _validate_batch_size(self) -> None:
        """A batch larger than `train` used to fail only inside the Trainer, after Transform."""
        records = train_records(self.data_root, self.eval_fraction)
        if records == 0:
            raise ConfigError("eval_fraction", self.eval_fraction,
                              f"eval_fraction {self.eval_fraction:g} leaves no training records "
                              f"in {self.data_root}")
        if records is not None and self.batch_size > records:
            raise ConfigError("batch_size", self.batch_size,
                              f"batch_size is larger than the {records:,} training records in "
                              f"{self.data_root} (after the eval fraction "
                              f"{self.eval_fraction:g} is held out)")

    def validate_target(self, target: str | None) -> None:
        """Where the Trainer's replicas can run (`target`: a compile target, None: a local run).

        Several replicas need a job that starts them and sets their TF_CONFIG: a Vertex AI custom
        training job. Open-source KFP runs each step as one pod, and a local run is one process.
        """
        if self.trainer_workers == 1:
            return
        if target is None:
            raise ConfigError("trainer_workers", self.trainer_workers,
                              "a local run trains in one process; trainer_workers > 1 is for "
                              f"compile-kfp --target {contract.TARGET_VERTEX} (several local "
                              "workers by hand: docs/scale-out.md, A multi-worker Trainer)")
        if target != contract.TARGET_VERTEX:
            raise ConfigError("trainer_workers", self.trainer_workers,
                              "open-source KFP runs each step as one pod and has no "
                              "multi-replica training job; use --target "
                              f"{contract.TARGET_VERTEX} (a Vertex AI custom job), or run the "
                              "Trainer as a TFJob of the Kubeflow Training Operator "
                              "(docs/scale-out.md)")
        missing = [name for name in ("gcp_project", "gcp_region", "image")
                   if not getattr(self, name)]
        if missing:
            raise ConfigError("trainer_workers", self.trainer_workers,
                              f"trainer_workers > 1 needs {' and '.join(missing)}: where the "
                              "Vertex AI custom job runs, and the image its replicas start")

    def validate_local_run(self) -> None:
        """What only a run on this machine needs (the compiler checks nothing here exists)."""
        self.validate_target(None)
        if urls.is_url(self.output_dir):
            raise ConfigError("output_dir", self.output_dir,
                              "output_dir must be a local folder for a local run (it holds "
                              "the ML Metadata SQLite file and the Beam outputs); push to a "
                              "bucket with --serving-dir/--tflite-dir instead")
        self._validate_paths(writable=True)
        for setting in ("serving_dir", "tflite_dir"):
            path = getattr(self, setting)
            if urls.is_url(path) and not filesystem_available(path):
                raise ConfigError(setting, path, f"no filesystem for {urls.scheme(path)}:// "
                                  "is installed here (TensorFlow knows "
                                  f"{', '.join(_gfile_schemes())}; s3:// needs "
                                  "tensorflow-io or s3fs), so nothing could be pushed there")

    @property
    def runs_tuner(self) -> bool:
        """Whether the DAG holds the Tuner: imported hyperparameters replace the search."""
        return self.enable_tuning and not self.hyperparameters_dir

    def default_beam_args(self) -> list[str]:
        """DirectRunner with one worker process per core unless beam_args choose otherwise."""
        if self.beam_args:
            return list(self.beam_args)
        # The dependencies flag: no tfx sdist built in $TMPDIR per Beam stage (contract).
        if self.beam_workers == 1:  # small data: worker start-up would cost more than it saves
            return ["--direct_running_mode=in_memory", "--direct_num_workers=1",
                    contract.DIRECT_RUNNER_DEPENDENCIES_ARG]
        return ["--direct_running_mode=multi_processing",
                f"--direct_num_workers={self.beam_workers}",
                contract.DIRECT_RUNNER_DEPENDENCIES_ARG]


# Issues #16 and #20: output locations, checked before any component runs.
OUTPUT_PATH_SETTINGS = ("output_dir", "pipeline_root", "serving_dir", "tflite_dir")
GLOB_CHARACTERS = "*?["  # what Beam's FileSystems.match expands


def push_folders_overlap(first: str | None, second: str | None) -> bool:
    """True when two push base paths are the same folder, or one holds the other."""
    if not isinstance(first, str) or not isinstance(second, str) or not first or not second:
        return False  # unset, or a runtime parameter only the orchestrator resolves

    def normal(path: str) -> str:
        path = path if urls.is_url(path) else os.path.realpath(path)
        return path.rstrip("/") + "/"

    a, b = normal(first), normal(second)
    return a.startswith(b) or b.startswith(a)


def train_records(data_root: str | None, eval_fraction: float) -> int | None:
    """Records the `train` split will hold, from the .bin file sizes (None: data not here)."""
    if not isinstance(data_root, str) or not data_root or urls.is_url(data_root):
        return None
    folder = os.path.join(data_root, contract.BATCHES_DIR)
    files = [os.path.join(folder, name) for name in contract.TRAIN_BATCH_FILES]
    if not all(os.path.isfile(f) for f in files):
        return None
    # The same slice as the ExampleGen: the first round(n * (1 - eval_fraction)) of each file.
    return sum(int(round(os.path.getsize(f) // contract.RECORD_BYTES * (1.0 - eval_fraction)))
               for f in files)


def _gfile_schemes() -> list[str]:
    import tensorflow as tf

    return [f"{scheme}://" for scheme in tf.io.gfile.get_registered_schemes() if scheme]


def filesystem_available(url: str) -> bool:
    """Whether serving.model_base could write there: a TensorFlow or an fsspec filesystem."""
    scheme = urls.scheme(url)
    if f"{scheme}://" in _gfile_schemes():
        return True
    try:
        import fsspec

        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError):
        return False
    return True


# Tables every ML Metadata SQLite store has; a database with other tables and not these is not one.
MLMD_TABLES = frozenset({"Type", "Artifact", "Execution", "Context", "Event", "MLMDEnv"})


def stray_beam_arg(beam_args: tuple[str, ...] | list[str]) -> str | None:
    """The first Beam argument that Beam's option parser would discard with only a log line: one
    that is not a --flag and does not follow a --flag given without `=` (`--runner X`)."""
    open_flag = False  # the previous argument was a --flag without `=`: this one may be its value
    for arg in beam_args:
        if arg.startswith("--"):
            open_flag = "=" not in arg
        elif open_flag:
            open_flag = False
        else:
            return arg
    return None


def metadata_problem(path: str | None) -> str | None:
    """Why an existing ML Metadata SQLite file cannot be used (it is read, never written)."""
    if not path or urls.is_url(path) or not os.path.exists(path):
        return None
    import sqlite3
    import urllib.parse

    tables: set[str] = set()
    try:
        uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
        connection = sqlite3.connect(uri, uri=True)
        try:
            row = connection.execute("PRAGMA quick_check").fetchone()
            tables = {name for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.OperationalError as error:
        if "locked" in str(error):  # a run is writing it: the run lock reports that
            return None
        row = (str(error),)
    except sqlite3.Error as error:
        row = (str(error),)
    if row and row[0] == "ok":
        missing = sorted(MLMD_TABLES - tables)
        if not tables or not missing:  # a new (empty) store, or ML Metadata's own tables
            return None
        row = (f"a SQLite database without ML Metadata's {', '.join(missing)} "
               f"table{'s' if len(missing) > 1 else ''}",)
    return (f"{path} is not a usable ML Metadata database ({row[0] if row else 'empty'}): move "
            "it away to start a new store (the cache and run history start over), or use "
            "another --output-dir")


def _holds_one_file(path: object) -> bool:
    """Unset, remote, or a folder here whose one entry is a file (what TFX's HyperParameters
    reader takes)."""
    if not isinstance(path, str) or "://" in path or not os.path.isdir(path):
        return True  # _is_folder_or_remote says what is wrong with it
    entries = os.listdir(path)
    return len(entries) == 1 and os.path.isfile(os.path.join(path, entries[0]))


def _is_folder_or_remote(path: object) -> bool:
    """Unset, a folder here, or a URL (gs://...) or runtime parameter this machine cannot check."""
    if path is None:
        return True
    if not isinstance(path, str) or "://" in path:
        return True
    return os.path.isdir(path)
