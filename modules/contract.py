"""The one place for every constant the pipeline, the model and the clients share."""

IMAGE_HEIGHT = 32
IMAGE_WIDTH = 32
IMAGE_CHANNELS = 3
IMAGE_SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH, IMAGE_CHANNELS)
PIXELS_PER_IMAGE = IMAGE_HEIGHT * IMAGE_WIDTH * IMAGE_CHANNELS

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASS_NAMES)

# Raw tf.Example features written by the ExampleGen.
IMAGE_KEY = "image"  # PNG-encoded uint8 HxWx3 image (lossless, and what serving clients send)
HEIGHT_KEY = "height"
WIDTH_KEY = "width"
CHANNELS_KEY = "channels"
LABEL_KEY = "label"  # int64, 0..9 in CLASS_NAMES order


def transformed_name(key: str) -> str:
    """Name of a feature after Transform, kept distinct from the raw name on purpose."""
    return f"{key}_xf"


TRANSFORMED_IMAGE_KEY = transformed_name(IMAGE_KEY)  # float32 [32, 32, 3] in [0, 1]
TRANSFORMED_LABEL_KEY = transformed_name(LABEL_KEY)

# Splits produced by the ExampleGen.
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
TEST_SPLIT = "test"

# SavedModel signatures.
SERVING_SIGNATURE = "serving_default"  # encoded PNG/JPEG bytes in
PIXELS_SIGNATURE = "serving_pixels"  # uint8 [N, 32, 32, 3] in
EXAMPLES_SIGNATURE = "serving_examples"  # serialized tf.Example in (TFMA, batch jobs)
PROBABILITIES_OUTPUT = "probabilities"
CLASS_ID_OUTPUT = "class_ids"
CLASS_NAME_OUTPUT = "class_names"

# Test-time augmentation levels of the exported model (modules.export): the views of each image it
# classifies and averages. none: the image; flip: and its mirror; flip_translate: and both shifted
# one pixel down-right and up-left (6 views); flip_if_unsure: the mirror only for the images whose
# top probability on the first view is below a threshold the Trainer sets on `eval`.
TTA_NONE, TTA_FLIP, TTA_FLIP_TRANSLATE = "none", "flip", "flip_translate"
TTA_FLIP_IF_UNSURE = "flip_if_unsure"
TEST_TIME_AUGMENTATIONS = (TTA_NONE, TTA_FLIP, TTA_FLIP_TRANSLATE, TTA_FLIP_IF_UNSURE)
# Forward passes per image, at most.
TTA_VIEWS = {TTA_NONE: 1, TTA_FLIP: 2, TTA_FLIP_TRANSLATE: 6, TTA_FLIP_IF_UNSURE: 2}
# flip_if_unsure sends at least this share of the eval images to the mirror once it helps any
# (modules.export.calibrate_unsure_below). On 5,000 eval images the last few images that tip the
# gated score to flip's are noise: on two full runs' weights the test score matched flip's from
# a 20% share on and fell 0.3 points short at 9%, while a 34% share still served at 0.78x a
# single view's throughput at batch 256.
TTA_MIN_SECOND_VIEW_SHARE = 0.25

# --------------------------------------------------------------------------------------------------
# The data set on disk, as the official cifar-10-binary.tar.gz unpacks (modules.cifar10_binary reads
# it, dataset/ downloads it, the ExampleGen and the benchmarks find it).
RECORD_BYTES = 1 + PIXELS_PER_IMAGE  # one label byte, then the red, green and blue 32x32 planes
BATCHES_DIR = "cifar-10-batches-bin"
TRAIN_BATCH_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCH_FILE = "test_batch.bin"
# data_batch_1.bin .. data_batch_5.bin and nothing else: a stray data_batch_1_old.bin or a copy
# would otherwise be read as more training data.
TRAIN_PATTERN = f"{BATCHES_DIR}/data_batch_[1-5].bin"
TEST_PATTERN = f"{BATCHES_DIR}/{TEST_BATCH_FILE}"
DEFAULT_DATA_DIR = "~/.cache/cifar10"

# --------------------------------------------------------------------------------------------------
# Defaults both the DAG (pipeline.configs) and the module functions (custom_config) agree on.
PIPELINE_NAME = "cifar10"
DEFAULT_EPOCHS = 18  # ~2 to 2.5 min each on 2 CPU cores for the default network
DEFAULT_BATCH_SIZE = 256
DEFAULT_SEED = 42  # initial weights, shuffling, augmentation and the Tuner's random points
# The untuned hyperparameters (modules.model builds and compiles from them; the Tuner's first
# trial trains exactly these).
DEFAULT_HPARAMS: dict[str, float | int | str | bool] = {
    "base_filters": 64,  # block widths are 1x, 2x and 3x this
    "dropout": 0.0,
    "learning_rate": 0.4,
    "weight_decay": 1.3e-3,
    "label_smoothing": 0.2,
    # Levers measured in benchmarks/ABLATIONS.md: GELU won on the short budget's two seeds; in
    # full runs its gain is within the spread of one setting run twice (benchmarks/RESULTS.md).
    # Training the whitening stem's bias won on every seed at no cost in time. The others keep
    # the network as it was.
    "stage2_width": 2.0,  # the middle block's width, in multiples of base_filters
    "activation": "gelu",  # or "relu"
    "ema_momentum": 0.0,  # >0: export an exponential moving average of the weights
    # >0: every this many training images, pull the weights toward a slow copy; export that copy
    "lookahead_images": 0,
    "whitening_bias_share": 0.3,  # the whitening stem's bias trains for this share of the steps
    "translate_pixels": 2,  # training images shift by up to this many pixels each way
    "alternating_flip": False,  # mirror each image in every other epoch, not at random
    "cutout_size": 0,  # >0: cover a random square of this side in each training image
    "lr_schedule": "cosine",  # after the warm-up: cosine, or "linear" decay, both to a 2% floor
    # "bfloat16": mixed precision, ~0.7x the Trainer's time on a CPU with native bfloat16 but
    # 0.2-0.9 points lower on the full budget (benchmarks/ablations_full_budget); "auto": bfloat16
    # where the CPU computes it natively, float32 elsewhere.
    "compute_dtype": "float32",
}
# The Tuner's proxy budget: trials x epochs on a share of `train` (4 x 3 x 0.15 = 1.8 passes
# over train, against the Trainer's 18). Each trial's start-up and per-epoch evaluation add to
# that: at 0.2 of train (2.4 passes) the search took 0.15x-0.21x the Trainer's time, depending on
# the host, against a goal of at most 0.20x.
DEFAULT_TUNER_TRIALS = 4
DEFAULT_TUNER_EPOCHS = 3
DEFAULT_TUNER_TRAIN_FRACTION = 0.15
STRATEGY_DEFAULT, STRATEGY_MIRRORED, STRATEGY_MULTI_WORKER = "default", "mirrored", "multi_worker"
DISTRIBUTION_STRATEGIES = (STRATEGY_DEFAULT, STRATEGY_MIRRORED, STRATEGY_MULTI_WORKER)
TFLITE_INT8, TFLITE_FLOAT16, TFLITE_DYNAMIC, TFLITE_NONE = "int8", "float16", "dynamic", "none"
TFLITE_MODES = (TFLITE_INT8, TFLITE_FLOAT16, TFLITE_DYNAMIC, TFLITE_NONE)  # none: float32

# --------------------------------------------------------------------------------------------------
# Node ids of the DAG (the report and the run summary find executions by them).
EXAMPLE_GEN_NODE = "Cifar10ExampleGen"
STATISTICS_GEN_NODE = "StatisticsGen"
SCHEMA_GEN_NODE = "ImportSchemaGen"
EXAMPLE_VALIDATOR_NODE = "ExampleValidator"
TRANSFORM_NODE = "Transform"
TUNER_NODE = "Tuner"
TRAINER_NODE = "Trainer"
EVALUATOR_NODE = "Evaluator"
TFLITE_CONVERTER_NODE = "TFLiteConverter"
PUSHER_NODE = "Pusher"
PREVIOUS_STATISTICS_RESOLVER_NODE = "previous_statistics_resolver"
HYPERPARAMETERS_IMPORTER_NODE = "hyperparameters_importer"
BEST_HYPERPARAMETERS_FILE = "best_hyperparameters.txt"  # a HyperParameters artifact's one file

# --------------------------------------------------------------------------------------------------
# The Trainer's Model artifact: two exports side by side (modules.export writes them, the Evaluator,
# the TFLite converter and the Pusher read them through modules.export's path functions).
SERVING_MODEL_DIR = "Format-Serving"  # TFX's own name: the SavedModel the Evaluator and Pusher use
KERAS_MODEL_DIR = "Format-Keras"  # the Keras model the TFLite converter re-wraps
KERAS_MODEL_FILE = "model.keras"
EXPORT_SETTINGS_FILE = "export.json"  # how the served model wraps the Keras one (its TTA)
TRAINING_SUMMARY_FILE = "training_summary.json"  # in the ModelRun artifact
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
SAVED_MODEL_FILE = "saved_model.pb"
SAVED_MODEL_VARIABLES = "variables/variables"  # the weights' checkpoint prefix in a SavedModel

# The TFLiteModel artifact.
TFLITE_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
TFLITE_METRICS_FILE = "metrics.json"
TFLITE_RESULTS_FILE = "results.md"
# Its custom properties (the converter writes them, the report reads them).
TFLITE_CONVERTED_PROPERTY = "converted"
TFLITE_MODE_PROPERTY = "mode"
TFLITE_ACCURACY_PROPERTY = "accuracy"

# --------------------------------------------------------------------------------------------------
# Where a run puts things (inside --output-dir unless the flags say otherwise), and the TF Serving
# model base path layout: <serving_dir>/<version>/saved_model.pb and
# <tflite_dir>/<version>/model.tflite.
MODEL_NAME = "cifar10"  # the name TF Serving serves the model under
PIPELINE_ROOT_DIR = "pipeline_root"
METADATA_FILE = "metadata.sqlite"
SERVING_BASE_DIR = "serving_model"
TFLITE_BASE_DIR = "tflite_model"
STAGING_PREFIX = ".incoming-"  # a version being copied into a base path; never an integer name

# On a local run's `pipeline_run` context: its DAG's node ids, comma-separated (the report lists
# a node of the DAG without an execution as "not run"; a store also holds older DAGs' nodes).
RUN_NODES_PROPERTY = "pipeline_nodes"

# Custom properties of the PushedModel artifact (the Pusher writes them, the report reads them).
PUSHED_PROPERTY = "pushed"
PUSHED_VERSION_PROPERTY = "pushed_version"
PUSHED_DESTINATION_PROPERTY = "pushed_destination"
PUSHED_TFLITE_DESTINATION_PROPERTY = "pushed_tflite_destination"
PUSHED_MODEL_ID_PROPERTY = "pushed_model_id"
# 1: the model was already the newest version, so nothing new was published (same paths)
ALREADY_SERVED_PROPERTY = "already_served"
# The version served at push time when it was no longer the baseline this model was evaluated
# against (another run pushed, or the baseline was removed): nothing pushed. The Pusher's output
# then also records the baseline's version as BASELINE_VERSION_PROPERTY (absent: none was served).
SUPERSEDED_BY_PROPERTY = "superseded_by_version"


def superseded_cause(served_now: int, baseline_version: int | None) -> str:
    """Why version `served_now` is not the baseline a model was compared with, for the Pusher's
    log, the run's last lines and the report alike."""
    if baseline_version is None or served_now > baseline_version:
        return "another run pushed since"
    if served_now < baseline_version:
        return f"version {baseline_version}, the baseline, was removed since"
    return f"version {baseline_version}, the baseline, was replaced since"

# --------------------------------------------------------------------------------------------------
# Components, modules and the model base path: what a served SavedModel must hold (modules.export
# writes it, serving/client.py sends to it, serving/download_model.py checks it without running it).
SERVING_TAG = "serve"  # the MetaGraph tag TF Serving loads
IMAGE_BYTES_INPUT, PIXELS_INPUT, EXAMPLES_INPUT = "image_bytes", "pixels", "examples"
SIGNATURE_INPUTS = {  # signature: its one input
    SERVING_SIGNATURE: IMAGE_BYTES_INPUT,
    PIXELS_SIGNATURE: PIXELS_INPUT,
    EXAMPLES_SIGNATURE: EXAMPLES_INPUT,
}
SIGNATURE_OUTPUTS = (PROBABILITIES_OUTPUT, CLASS_ID_OUTPUT, CLASS_NAME_OUTPUT)
BLESSED_PROPERTY = "blessed"  # TFX's ModelBlessing property: 1 when the Evaluator blessed the model

# --------------------------------------------------------------------------------------------------
# Compile targets and run baselines without resolvers (issue #14; cli/kubeflow.py compiles them,
# components/served_model_baseline and components/previous_statistics implement them). KFP 2.x
# runs no resolver tasks, and Vertex AI's resolver queries cannot be scoped to one pipeline, so
# both targets find their baselines through these instead.
TARGET_KFP, TARGET_VERTEX = "kfp", "vertex"  # a KFP 2.x PipelineSpec / a Vertex AI PipelineJob
COMPILE_TARGETS = (TARGET_VERTEX, TARGET_KFP)
SERVED_MODEL_BASELINE_NODE = "ServedModelBaseline"  # the newest version in the serving base path
PREVIOUS_STATISTICS_NODE = "PreviousStatistics"  # the statistics the last validated run recorded
RECORD_STATISTICS_NODE = "RecordStatistics"  # records this run's once the validator passed
# Custom property of the baseline Model: the served version it copies (absent: nothing served).
BASELINE_VERSION_PROPERTY = "served_version"
# <pipeline_root>/run_records/<pipeline_name>/validated_statistics.json: {"uri", "split_names"}.
RUN_RECORDS_DIR = "run_records"
STATISTICS_RECORD_FILE = "validated_statistics.json"

# --------------------------------------------------------------------------------------------------
# Deployment: what serving/docker-compose.yml, serving/*.config and deploy/k8s agree on (checked by
# tests/unit/test_deploy.py and tests/unit/test_serving_configs.py).
TF_SERVING_IMAGE = "tensorflow/serving:2.16.1"  # the TensorFlow 2.16 the model is exported with
TF_SERVING_GRPC_PORT = 8500
TF_SERVING_REST_PORT = 8501  # also serves the Prometheus metrics
SERVING_MOUNT_PATH = f"/models/{MODEL_NAME}"  # where the base path is mounted in the container
PROMETHEUS_METRICS_PATH = "/monitoring/prometheus/metrics"  # serving/monitoring.config

# --------------------------------------------------------------------------------------------------
# Batch inference and model card (issue #18). The Pusher writes a model card for every version it
# pushes, beside it where TF Serving never looks: TF Serving loads only integer-named children of a
# base path, so <serving_dir>/model_cards/<version>/ is ignored by it, and the card is published in
# the same all-or-none step as the SavedModel and its .tflite (serving.model_base).
MODEL_CARDS_DIR = "model_cards"
MODEL_CARD_MARKDOWN = "model_card.md"
MODEL_CARD_HTML = "model_card.html"
MODEL_CARD_JSON = "model_card.json"  # the card's figures, for tests and tools
PUSHED_MODEL_CARD_PROPERTY = "pushed_model_card"  # on the PushedModel: the card's Markdown path
# Written into the ModelRun's training_summary.json by modules.training.
TRAIN_SECONDS_KEY = "train_seconds"
MACHINE_KEY = "machine"
# The full official data set; fewer images means a subset such as the offline copy.
OFFICIAL_TRAIN_IMAGES = 50_000
OFFICIAL_TEST_IMAGES = 10_000
# The offline copy (../shared/datasets/cifar10): the first 1,017 records of every file are the
# original pixels, the rest were decoded from JPEG copies; the benchmark reports both apart.
OFFLINE_COPY_EXACT_PER_FILE = 1_017
# Predictions written by `cifar10-tfx predict` (and the batch stage): one row per image, the same
# columns in CSV and JSON Lines: the file, the class, then one probability per class.
PREDICTION_FORMATS = ("csv", "jsonl")
PREDICTION_COLUMNS = ("file", "class_id", "class_name",
                      *(f"p_{name}" for name in CLASS_NAMES))

# --------------------------------------------------------------------------------------------------
# Scale-out (issue #15): multi-worker training and Beam's portable runner.
# How long one collective op (an all-reduce of a training step) may wait for the other workers:
# past it a lost worker fails the Trainer step with a clear error instead of hanging it.
DEFAULT_COLLECTIVE_TIMEOUT_S = 300.0

# The batch-inference stage (issue #18, `--predict-dir`): a folder of images -> examples of one
# split -> TFX's BulkInferrer (serving_examples) -> predictions.csv / predictions.jsonl.
PREDICT_SPLIT = "predict"
FILE_KEY = "file"  # the image's path, kept in each example so predictions can name their file
REFUSED_IMAGES_FILE = "refused_images.json"  # in the Examples artifact: [{"file", "reason"}]
REFUSED_IMAGES_PROPERTY = "refused_images"  # its count, on the Examples artifact
PREDICTIONS_CSV = "predictions.csv"
PREDICTIONS_JSONL = "predictions.jsonl"
PREDICTIONS_COUNT_PROPERTY = "predictions"  # on the BatchPredictions artifact (0: not blessed)
IMAGE_FOLDER_EXAMPLE_GEN_NODE = "ImageFolderExampleGen"
BULK_INFERRER_NODE = "BulkInferrer"
BATCH_PREDICTIONS_NODE = "BatchPredictionsWriter"

# --------------------------------------------------------------------------------------------------
# Local runs: the output folder lock and Beam's DirectRunner (issues #16 and #20; cli/run.py,
# pipeline/configs.py).
RUN_LOCK_FILE = ".cifar10-tfx.lock"  # in --output-dir; flock-ed for as long as a run lives
# TFX builds a 52 MB `tfx_ephemeral` sdist in $TMPDIR for every Beam stage (and never deletes
# it) unless the Beam arguments already name the workers' dependencies (tfx/utils/
# dependency_utils.make_beam_dependency_flags: --extra_packages, --setup_file,
# --requirements_file, --worker_harness_container_image or --sdk_container_image). The
# DirectRunner's workers are this Python, which holds them; it ignores the image flag.
DIRECT_RUNNER_DEPENDENCIES_ARG = "--sdk_container_image=unused-by-the-direct-runner"
TFX_EPHEMERAL_PACKAGE = "tfx_ephemeral"  # the sdist's name: tfx_ephemeral-<version>.tar.gz
# The BulkInferrer's signature: serving_examples without its class_names output. tfx_bsl 1.16
# splits every output per example and fails on a rank-1 string tensor ("'bytes' object has no
# attribute 'dtype'"), so batch jobs get the numeric outputs only (names follow from CLASS_NAMES).
BATCH_EXAMPLES_SIGNATURE = "batch_examples"
