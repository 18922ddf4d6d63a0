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
# one pixel down-right and up-left (6 views).
TTA_NONE, TTA_FLIP, TTA_FLIP_TRANSLATE = "none", "flip", "flip_translate"
TEST_TIME_AUGMENTATIONS = (TTA_NONE, TTA_FLIP, TTA_FLIP_TRANSLATE)
