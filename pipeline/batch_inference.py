"""The optional batch-inference stage (`--predict-dir DIR`): classify a folder of images in bulk.

ImageFolderExampleGen (the folder's images, checked; wrong ones refused and listed) ->
TFX's BulkInferrer (the Trainer's model on `batch_examples`: serving_examples without the
class-name strings tfx_bsl cannot split; gated by the Evaluator's blessing: it skips itself when
the model is not blessed) -> BatchPredictionsWriter
(predictions.csv and predictions.jsonl). The stage runs under the pipeline's Beam arguments, like
every other Beam stage.
"""
from __future__ import annotations

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import base_node

from components.batch_predictions import BatchPredictionsWriter
from components.image_folder_example_gen import ImageFolderExampleGen
from modules import contract


def batch_inference_components(predict_dir: str, model: types.BaseChannel,
                               model_blessing: types.BaseChannel,
                               resize: bool = False) -> list[base_node.BaseNode]:
    """The three nodes of the stage, for `model` gated by `model_blessing`."""
    images = ImageFolderExampleGen(input_base=predict_dir, resize=resize).with_id(
        contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE)
    inferrer = tfx.components.BulkInferrer(
        examples=images.outputs["examples"],
        model=model,
        model_blessing=model_blessing,
        data_spec=tfx.proto.DataSpec(example_splits=[contract.PREDICT_SPLIT]),
        model_spec=tfx.proto.ModelSpec(model_signature_name=[contract.BATCH_EXAMPLES_SIGNATURE]),
    ).with_id(contract.BULK_INFERRER_NODE)
    writer = BatchPredictionsWriter(
        inference_result=inferrer.outputs["inference_result"],
        model_blessing=model_blessing,
    ).with_id(contract.BATCH_PREDICTIONS_NODE)
    return [images, inferrer, writer]
