"""One worker of a multi-worker Trainer: TFX's GenericExecutor.Do with this process's TF_CONFIG.

Usage: python multi_worker_trainer.py SPEC_JSON (written by benchmarks.local_cluster.multi_worker).
"""
from __future__ import annotations

import json
import logging
import sys


def main(spec_path: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("cifar10_tfx").setLevel(logging.INFO)  # the weights fingerprints
    with open(spec_path) as f:
        spec = json.load(f)

    from tfx.components.trainer.executor import GenericExecutor
    from tfx.proto import trainer_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from modules import contract
    from pipeline import configs

    inputs = spec["inputs"]
    examples = standard_artifacts.Examples()
    examples.uri = inputs["examples_uri"]
    examples.split_names = json.dumps(inputs["split_names"])
    transform_graph = standard_artifacts.TransformGraph()
    transform_graph.uri = inputs["transform_graph_uri"]
    model = standard_artifacts.Model()
    model.uri = spec["model_uri"]
    model_run = standard_artifacts.ModelRun()
    model_run.uri = spec["model_run_uri"]
    exec_properties = {
        "train_args": proto_utils.proto_to_json(
            trainer_pb2.TrainArgs(splits=[contract.TRAIN_SPLIT])),
        "eval_args": proto_utils.proto_to_json(
            trainer_pb2.EvalArgs(splits=[contract.EVAL_SPLIT])),
        "run_fn": configs.RUN_FN,
        "custom_config": json.dumps(spec["custom_config"]),
    }
    GenericExecutor().Do({"examples": [examples], "transform_graph": [transform_graph]},
                         {"model": [model], "model_run": [model_run]}, exec_properties)
    print("WORKER DONE", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
