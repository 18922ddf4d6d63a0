"""Exports the trained Keras model as a SavedModel that TF Serving, TFMA and batch jobs all call.

Every signature goes through the one preprocessing path of modules.preprocessing (decode and check,
then scale), the very functions Transform's preprocessing_fn is made of; the export checks that the
Transform graph still agrees. Wrong input is refused in the graph (INVALID_ARGUMENT naming the input
and what is wrong); an empty batch gets empty outputs. Signatures (names in modules.contract):
  serving_default   image_bytes: string [N], PNG or JPEG (REST clients send {"b64": ...})
  serving_pixels    pixels: uint8 [N, 32, 32, 3]
  serving_examples  examples: string [N], serialized tf.Example (TFMA, batch inference)
Each returns probabilities [N, 10], class_ids [N] and class_names [N].
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from modules import contract, preprocessing

log = logging.getLogger("cifar10_tfx.export")


# The Trainer's Model artifact holds two exports side by side:
#   <model_uri>/<contract.SERVING_MODEL_DIR>/  the SavedModel (TFX's own name for it: the Evaluator
#                                              and the Pusher read it)
#   <model_uri>/<contract.KERAS_MODEL_DIR>/    the bare Keras model and export.json, for the TFLite
#                                              converter (the Transform graph's string ops cannot
#                                              run in TFLite)
# These functions are the one place that layout is spelled out.
def serving_model_dir(model_uri: str) -> str:
    """The SavedModel folder of a Model artifact."""
    return os.path.join(model_uri, contract.SERVING_MODEL_DIR)


def keras_model_dir(model_uri: str) -> str:
    """The Keras model's folder of a Model artifact."""
    return os.path.join(model_uri, contract.KERAS_MODEL_DIR)


def model_uri_of_serving_dir(serving_dir: str) -> str:
    """The Model artifact a SavedModel folder belongs to (TFX hands run_fn the folder only)."""
    model_uri, name = os.path.split(serving_dir.rstrip("/"))
    if name != contract.SERVING_MODEL_DIR:
        raise ValueError(f"{serving_dir}: not a Model artifact's SavedModel folder (expected a "
                         f"folder named {contract.SERVING_MODEL_DIR})")
    return model_uri



# Test-time augmentation (levels in modules.contract). Measured on the 16-epoch full-data model
# (5,000 test images): none 88.94%, flip 89.74%, flip_translate 90.06%, for 1x, 2x and 6x the
# compute per image.
def check_test_time_augmentation(name: str) -> str:
    if name not in contract.TEST_TIME_AUGMENTATIONS:
        raise ValueError(f"Unknown test-time augmentation {name!r}; choose one of "
                         f"{', '.join(contract.TEST_TIME_AUGMENTATIONS)}.")
    return name


@dataclasses.dataclass(frozen=True)
class ServingViews:
    """A test-time augmentation level as a model is exported with it: flip_if_unsure carries the
    confidence below which an image also gets its mirror view (the Trainer sets it on `eval`)."""

    level: str
    unsure_below: float | None = None

    def __post_init__(self):
        check_test_time_augmentation(self.level)
        gated = self.level == contract.TTA_FLIP_IF_UNSURE
        if gated != (self.unsure_below is not None):
            raise ValueError(f"test-time augmentation {self.level!r}: "
                             + ("needs the confidence threshold the Trainer sets on eval"
                                if gated else "takes no confidence threshold"))

    def settings(self) -> dict:
        """Its entries of export.json."""
        return {"test_time_augmentation": self.level,
                **({"unsure_below": self.unsure_below} if self.unsure_below is not None else {})}


def serving_views(tta: str | ServingViews) -> ServingViews:
    return tta if isinstance(tta, ServingViews) else ServingViews(tta)


def settings_serving_views(settings: dict) -> ServingViews:
    """The level an export.json names (models exported before the levels say flip_averaging)."""
    if "test_time_augmentation" in settings:
        return ServingViews(settings["test_time_augmentation"], settings.get("unsure_below"))
    return ServingViews(contract.TTA_FLIP if settings.get("flip_averaging") else contract.TTA_NONE)


def _mirror(images: tf.Tensor) -> tf.Tensor:
    return tf.reverse(images, axis=[2])


def tta_views(images: tf.Tensor, tta: str) -> list[tuple[tf.Tensor, float]]:
    """(view, weight) pairs whose weights sum to 1: every view every image gets.

    flip_translate adds the image shifted one pixel down-right and one up-left (reflect-padded, as
    in training), each with its mirror: half the weight stays on the unshifted pair.
    flip_if_unsure has the views of flip (only some images take the second one).
    """
    check_test_time_augmentation(tta)
    if tta == contract.TTA_NONE:
        return [(images, 1.0)]
    if tta in (contract.TTA_FLIP, contract.TTA_FLIP_IF_UNSURE):
        return [(images, 0.5), (_mirror(images), 0.5)]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    down_right, up_left = padded[:, :-2, :-2, :], padded[:, 2:, 2:, :]
    return [(images, 0.25), (_mirror(images), 0.25),
            (down_right, 0.125), (_mirror(down_right), 0.125),
            (up_left, 0.125), (_mirror(up_left), 0.125)]


def predict_probabilities(model, images: tf.Tensor, tta: str | ServingViews) -> tf.Tensor:
    """The model's probabilities, averaged over the test-time views of each image.

    A batch of any size (the SavedModel's signatures) takes one model call per view: on the
    2-core EPYC, timed round-robin on the full-data network, two calls of 256 images ran 0.50-0.56x
    a single view's throughput against 0.45-0.47x for one call of 512, and batch 1 was no slower
    (1.36-1.40x a single view either way). A batch whose size is fixed when traced (the TFLite
    converter's batch of 1) goes through the model as one batch: one set of activation ranges
    when the graph is quantized (two separate calls quantized badly: 64% top-1 agreement).
    There flip_if_unsure averages both views of every image, as flip does: with both in one call
    the gate would save nothing (checked once by hand on a full-data network: int8 .tflite
    90.14-90.16% averaging everywhere, 90.04-90.10% gated, the SavedModel 90.42%).
    """
    views = serving_views(tta)
    if views.level == contract.TTA_FLIP_IF_UNSURE and images.shape[0] is None:
        return _flip_if_unsure(model, images, views.unsure_below)
    weighted = tta_views(images, views.level)  # flip_if_unsure on a fixed batch: as flip
    if len(weighted) == 1:
        return model(images, training=False)
    if images.shape[0] is None:
        return tf.add_n([weight * model(view, training=False) for view, weight in weighted])
    count = images.shape[0]
    probabilities = model(tf.concat([view for view, _ in weighted], axis=0), training=False)
    return tf.add_n([weight * probabilities[i * count:(i + 1) * count]
                     for i, (_, weight) in enumerate(weighted)])


def _flip_if_unsure(model, images: tf.Tensor, unsure_below: float) -> tf.Tensor:
    """One call on every image, a second on the mirrors of the unsure ones only (none: no call;
    the model's reflect padding refuses an empty batch)."""
    single = model(images, training=False)
    rows = tf.where(tf.reduce_max(single, axis=-1) < unsure_below)  # int64 [U, 1]

    def with_mirrors() -> tf.Tensor:
        mirrored = model(tf.gather_nd(_mirror(images), rows), training=False)
        return tf.tensor_scatter_nd_update(
            single, rows, 0.5 * (tf.gather_nd(single, rows) + mirrored))

    return tf.cond(tf.shape(rows)[0] > 0, with_mirrors, lambda: tf.identity(single))


def unsure(single: np.ndarray, unsure_below: float) -> np.ndarray:
    """Which images flip_if_unsure gives a second view: top probability below the threshold
    (as the exported graph decides; `single` holds the probabilities [N, 10] of one view)."""
    return single.max(axis=1) < unsure_below


def calibrate_unsure_below(single: np.ndarray, mirrored: np.ndarray, labels: np.ndarray,
                           min_share: float = contract.TTA_MIN_SECOND_VIEW_SHARE) -> float:
    """The confidence threshold of flip_if_unsure, set on these images (the `eval` split): the
    lowest from which on it classifies them at least as well as flip does on all of them, and
    that sends at least `min_share` of them to the second view (none if the mirror never helps).

    `single` and `mirrored` are the probabilities [N, 10] of each image and of its mirror. The k
    least confident images taking both views score right_single + gain(k); the threshold lies
    halfway between the k-th and the next confidence.
    """
    confidence = single.max(axis=1)
    order = np.argsort(confidence, kind="stable")
    right_single = (single.argmax(axis=1) == labels)[order]
    right_both = ((single + mirrored).argmax(axis=1) == labels)[order]
    correct = right_single.sum() + np.concatenate(
        [[0], np.cumsum(right_both.astype(int) - right_single.astype(int))])
    short_of_flip = np.flatnonzero(correct < right_both.sum())  # never k = N: that is flip
    if len(short_of_flip) == 0:
        return 0.0
    k = max(int(short_of_flip[-1]) + 1, int(np.ceil(min_share * len(confidence))))
    ranked = confidence[order]
    if k >= len(ranked):
        return float(np.nextafter(np.float32(1.0), np.float32(2.0)))  # above every probability
    return float((ranked[k - 1] + ranked[k]) / 2.0)


def calibrated_views(model, level: str, batches: Iterable) -> ServingViews:
    """The level to export with; flip_if_unsure gets its threshold from (scaled images, int
    labels) batches of the `eval` split, classified as the served model would."""
    if level != contract.TTA_FLIP_IF_UNSURE:
        return ServingViews(level)
    single, mirrored, labels = [], [], []
    for images, batch_labels in batches:
        (first, _), (mirror, _) = tta_views(tf.convert_to_tensor(images), level)
        single.append(np.asarray(model(first, training=False)))
        mirrored.append(np.asarray(model(mirror, training=False)))
        labels.append(np.asarray(batch_labels))
    single_all, mirrored_all = np.concatenate(single), np.concatenate(mirrored)
    threshold = calibrate_unsure_below(single_all, mirrored_all, np.concatenate(labels))
    log.info("flip_if_unsure: the mirror view for images whose top probability is below %.4f "
             "(%.1f%% of %d eval images)", threshold,
             100.0 * float(np.mean(unsure(single_all, threshold))), len(single_all))
    return ServingViews(level, threshold)


def load_keras_model(model_uri: str):
    """The bare Keras model and the export settings the SavedModel was made with."""
    import keras

    folder = keras_model_dir(model_uri)
    with tf.io.gfile.GFile(os.path.join(folder, contract.EXPORT_SETTINGS_FILE)) as f:
        settings = json.load(f)
    model = keras.models.load_model(os.path.join(folder, contract.KERAS_MODEL_FILE),
                                    compile=False)  # inference only
    return model, settings


class ServingModule(tf.Module):
    """The three signatures over one preprocessing path (modules.preprocessing).

    bytes -> decode_images, Examples -> their image bytes -> decode_images, pixels ->
    check_pixels; then scale_pixels and the model. Every refusal is INVALID_ARGUMENT naming the
    input; an empty batch gets empty outputs.
    """

    def __init__(self, model, tf_transform_output, tta: str | ServingViews):
        super().__init__()
        self.model = model
        # Batch jobs only need to send the image; other raw features are not model inputs.
        self._image_spec = tf_transform_output.raw_feature_spec()[contract.IMAGE_KEY]
        self._views = serving_views(tta)
        self._class_names = tf.constant(contract.CLASS_NAMES)
        # Track the tf.Variables under the Keras 3 ones (as keras.export.ExportArchive does):
        # without them the SavedModel's TF1-style restore (TF Serving's C++ loader, tfx_bsl's
        # RunInference in the BulkInferrer) leaves every weight uninitialized ("Could not find
        # variable ..."); TF2's tf.saved_model.load works either way.
        self.tf_variables = [variable.value for variable in model.variables]

    def _predict_from_pixels(self, pixels: tf.Tensor) -> dict:
        """Checked uint8 [N, 32, 32, 3] -> the outputs; the model is not run on an empty batch
        (its reflect padding refuses one)."""
        images = preprocessing.scale_pixels(pixels)
        probabilities = tf.cond(
            tf.shape(images)[0] > 0,
            lambda: tf.cast(predict_probabilities(self.model, images, self._views), tf.float32),
            lambda: tf.zeros([0, contract.NUM_CLASSES], tf.float32))
        probabilities = tf.ensure_shape(probabilities, [None, contract.NUM_CLASSES])
        class_ids = tf.argmax(probabilities, axis=-1)
        return {
            contract.PROBABILITIES_OUTPUT: probabilities,
            contract.CLASS_ID_OUTPUT: class_ids,
            contract.CLASS_NAME_OUTPUT: tf.gather(self._class_names, class_ids),
        }

    def _image_bytes_of_examples(self, examples: tf.Tensor) -> tf.Tensor:
        """The `image` feature of each serialized tf.Example, or INVALID_ARGUMENT naming the
        first one that is not a tf.Example with one image.

        tf.io.parse_example fails on the whole batch with the raw bytes in its message (Python
        cannot even decode it as text); parsing one by one with errors dropped tells which.
        """
        examples = preprocessing.check_vector(examples, contract.EXAMPLES_INPUT)
        spec = {contract.IMAGE_KEY: self._image_spec}
        count = tf.shape(examples, out_type=tf.int64)[0]
        parsed = tf.data.Dataset.from_tensor_slices((tf.range(count), examples)).map(
            lambda index, example: (index, tf.reshape(
                tf.io.parse_single_example(example, spec)[contract.IMAGE_KEY], [])))
        parsed = parsed.ignore_errors()
        found, images = parsed.batch(1024).reduce(
            (tf.zeros([0], tf.int64), tf.zeros([0], tf.string)),
            lambda state, batch: (tf.concat([state[0], batch[0]], 0),
                                  tf.concat([state[1], batch[1]], 0)))
        missing = tf.sparse.to_dense(tf.sets.difference(tf.range(count)[None], found[None]))[0]
        first = tf.concat([missing, [-1]], 0)[0]
        check = tf.debugging.Assert(tf.equal(tf.size(found, out_type=tf.int64), count), [
            tf.strings.format(contract.EXAMPLES_INPUT + "[{}]: not a serialized tf.Example "
                              f"with one bytes feature {contract.IMAGE_KEY}", first)])
        with tf.control_dependencies([check]):
            return tf.identity(images)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=contract.IMAGE_BYTES_INPUT)])
    def serve_images(self, image_bytes):
        return self._predict_from_pixels(
            preprocessing.decode_images(image_bytes, contract.IMAGE_BYTES_INPUT))

    @tf.function(input_signature=[
        tf.TensorSpec([None, *contract.IMAGE_SHAPE], tf.uint8, name=contract.PIXELS_INPUT)])
    def serve_pixels(self, pixels):
        return self._predict_from_pixels(preprocessing.check_pixels(pixels, contract.PIXELS_INPUT))

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
    def serve_examples(self, examples):
        return self._predict_from_pixels(preprocessing.decode_images(
            self._image_bytes_of_examples(examples), contract.EXAMPLES_INPUT))

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
    def batch_examples(self, examples):
        """serve_examples without class_names: what TFX's BulkInferrer can split per example."""
        outputs = self.serve_examples(examples)
        return {key: outputs[key]
                for key in (contract.PROBABILITIES_OUTPUT, contract.CLASS_ID_OUTPUT)}

    def signatures(self) -> dict:
        return {
            contract.SERVING_SIGNATURE: self.serve_images.get_concrete_function(),
            contract.PIXELS_SIGNATURE: self.serve_pixels.get_concrete_function(),
            contract.EXAMPLES_SIGNATURE: self.serve_examples.get_concrete_function(),
            contract.BATCH_EXAMPLES_SIGNATURE: self.batch_examples.get_concrete_function(),
        }


def check_transform_matches(tf_transform_output, sample_images: Sequence[bytes]) -> None:
    """Refuses to export when the Transform graph no longer prepares images exactly as the
    serving path does (e.g. preprocessing_fn gained an analyzer): training and serving would
    then see different inputs."""
    images = tf.constant(list(sample_images), tf.string)
    transformed = tf_transform_output.transform_features_layer()(
        {contract.IMAGE_KEY: images})[contract.TRANSFORMED_IMAGE_KEY]
    served = preprocessing.scale_pixels(preprocessing.decode_images(images))
    difference = float(tf.reduce_max(tf.abs(transformed - served))) if len(sample_images) else 0.
    if difference > 1e-6:
        raise ValueError(f"The Transform graph prepares images differently from the serving "
                         f"path in modules.preprocessing (max difference {difference:g}); "
                         f"keep preprocessing_fn = scale_pixels(decode_images(...)).")


def write_warmup_requests(export_dir: str, sample_images: Sequence[bytes],
                          model_name: str = contract.MODEL_NAME) -> str:
    """Writes TF Serving warmup records, one PredictRequest per signature: a fast first call."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, *contract.WARMUP_FILE.split("/"))
    tf.io.gfile.makedirs(os.path.dirname(path))
    images = list(sample_images)
    pixels = tf.stack([tf.io.decode_png(b, channels=contract.IMAGE_CHANNELS) for b in images])
    examples = [tf.train.Example(features=tf.train.Features(feature={
        contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}))
        .SerializeToString() for image in images]
    inputs_by_signature = {
        contract.SERVING_SIGNATURE: tf.make_tensor_proto(images, tf.string),
        contract.PIXELS_SIGNATURE: tf.make_tensor_proto(pixels.numpy(), tf.uint8),
        contract.EXAMPLES_SIGNATURE: tf.make_tensor_proto(examples, tf.string),
    }
    with tf.io.TFRecordWriter(path) as writer:
        for signature, proto in inputs_by_signature.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            request.inputs[contract.SIGNATURE_INPUTS[signature]].CopyFrom(proto)
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def float32_twin(model):
    """The model computing in float32, with the same weights: a network trained in mixed
    precision (`compute_dtype` bfloat16) is exported in float32, since TF Serving's and
    TFLite's hosts need not compute bfloat16. A float32 model is returned as it is."""
    import keras

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model

    def float32_layer(layer):
        return type(layer).from_config({**layer.get_config(), "dtype": "float32"})

    twin = keras.models.clone_model(model, clone_function=float32_layer)
    trained = {variable.path: variable for variable in model.weights}
    for variable in twin.weights:
        variable.assign(trained[variable.path])
    return twin


def save_serving_model(model, tf_transform_output, export_dir: str,
                       tta: str | ServingViews) -> None:
    """The SavedModel alone, with its three signatures: what the Pusher ships, and what the
    benchmarks time when they export a trained network again."""
    module = ServingModule(float32_twin(model), tf_transform_output, tta)
    tf.saved_model.save(module, export_dir, signatures=module.signatures())


def export_serving_model(model, tf_transform_output, model_uri: str,
                         sample_images: Sequence[bytes],
                         tta: str | ServingViews = contract.TTA_NONE) -> None:
    """Writes both exports of a Model artifact: the SavedModel with its three signatures and
    warmup records, and the Keras model with its export settings."""
    check_transform_matches(tf_transform_output, sample_images)
    model = float32_twin(model)
    export_dir = serving_model_dir(model_uri)
    save_serving_model(model, tf_transform_output, export_dir, tta)
    write_warmup_requests(export_dir, sample_images)
    keras_dir = keras_model_dir(model_uri)
    tf.io.gfile.makedirs(keras_dir)
    model.save(os.path.join(keras_dir, contract.KERAS_MODEL_FILE))
    with tf.io.gfile.GFile(os.path.join(keras_dir, contract.EXPORT_SETTINGS_FILE), "w") as f:
        json.dump(serving_views(tta).settings(), f)
