"""Builds the CIFAR-10 TFX DAG; both runners call create_pipeline() with a PipelineConfig.

ExampleGen -> StatisticsGen -> (curated schema) -> ExampleValidator (stops on anomalies and on
label drift since the previous run's statistics) ->
Transform -> Tuner (unless --no-tune) -> Trainer -> Evaluator (vs. the served model) ->
[TFLiteConverter] -> Pusher
"""
from __future__ import annotations

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components.cifar10_example_gen import Cifar10ExampleGen
from components.served_model_baseline import BaselineEvaluator
from components.serving_pusher import ServingPusher
from components.strict_example_validator import StrictExampleValidator
from modules import contract
from pipeline import baselines, configs


class _LatestOrNoneStrategy(tfx.dsl.experimental.LatestArtifactStrategy):
    """LatestArtifactStrategy that resolves to nothing on a first run instead of failing.

    TFX's strategy returns None when there is no artifact yet, which marks the local resolver
    execution failed (the run goes on). KFP/Vertex run resolvers as metadata queries and only
    compile TFX's own class, so the Kubeflow runner (no metadata config) keeps that one.
    """

    def resolve_artifacts(self, store, input_dict):
        return {key: sorted(artifacts, key=lambda a: a.id)[-1:]
                for key, artifacts in input_dict.items()}


def trainer_custom_config(config: configs.PipelineConfig) -> dict:
    """Settings that modules/training.py reads from FnArgs.custom_config."""
    return {
        "code_version": configs.code_fingerprint(),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "steps_per_epoch": config.steps_per_epoch,
        "distribution_strategy": config.distribution_strategy,
        "test_time_augmentation": config.test_time_augmentation,
        "seed": config.seed,
    }


def vertex_training_config(config: configs.PipelineConfig) -> dict:
    """custom_config keys of TFX's Google Cloud Trainer: a Vertex AI custom job whose replicas
    run the Trainer's executor in the pipeline image, a chief and trainer_workers - 1 workers.

    Vertex AI gives each replica a TF_CONFIG (pool 0: `chief`, pool 1: `worker`), from which
    run_fn's MultiWorkerMirroredStrategy forms the cluster.
    """
    cloud = tfx.extensions.google_cloud_ai_platform

    def pool(replicas: int) -> dict:
        return {"machine_spec": {"machine_type": config.trainer_machine_type},
                "replica_count": replicas, "container_spec": {"image_uri": config.image}}

    return {
        cloud.ENABLE_VERTEX_KEY: True,
        cloud.VERTEX_REGION_KEY: config.gcp_region,
        cloud.TRAINING_ARGS_KEY: {
            "project": config.gcp_project,
            "job_spec": {"worker_pool_specs": [pool(1), pool(config.trainer_workers - 1)]},
        },
    }


def tuner_custom_config(config: configs.PipelineConfig) -> dict:
    """What the search depends on, and only that: other Trainer settings (epochs, test-time
    augmentation) leave a finished search a cache hit."""
    return {
        "code_version": configs.code_fingerprint(),
        "batch_size": config.batch_size,
        "epochs": config.tuner_epochs,
        "max_trials": config.tuner_trials,
        "train_fraction": config.tuner_train_fraction,
        "seed": config.seed,
    }


def eval_config(config: configs.PipelineConfig) -> tfma.EvalConfig:
    """Accuracy with a floor and a no-regression check; per-class P/R/F1; confusion matrix."""
    accuracy = tfma.MetricConfig(
        class_name="SparseCategoricalAccuracy",
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(
                lower_bound={"value": config.accuracy_threshold}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -config.max_accuracy_regression - 1e-10})))
    per_class = [tfma.MetricConfig(class_name=name, config='{"top_k": 1}')
                 for name in ("Precision", "Recall", "F1Score")]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=contract.EXAMPLES_SIGNATURE,
                                    label_key=contract.LABEL_KEY,
                                    prediction_key=contract.PROBABILITIES_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[
                accuracy,
                tfma.MetricConfig(class_name="ExampleCount"),
                tfma.MetricConfig(class_name="SparseCategoricalCrossentropy"),
                tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
            ]),
            tfma.MetricsSpec(
                binarize=tfma.BinarizationOptions(class_ids={"values": list(
                    range(contract.NUM_CLASSES))}),
                metrics=per_class),
        ])


def create_pipeline(
    config: configs.PipelineConfig,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
    target: str | None = None,
) -> tfx.dsl.Pipeline:
    """The whole DAG; feature flags in `config` switch tuning and TFLite conversion on or off.

    `target` (contract.COMPILE_TARGETS) finds baselines without resolvers: pipeline.baselines.
    """
    baselines.check_target(target)
    example_gen = Cifar10ExampleGen(input_base=config.data_root,
                                    eval_fraction=config.eval_fraction)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    # With the schema, the label is counted as categorical: class shares, for the drift check.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                  schema=schema_gen.outputs["schema"])
    # The newest statistics from before this run's StatisticsGen: the previous run's data.
    previous_statistics = baselines.previous_statistics(config) if target else tfx.dsl.Resolver(
        strategy_class=(_LatestOrNoneStrategy if metadata_connection_config is not None
                        else tfx.dsl.experimental.LatestArtifactStrategy),
        statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics),
    ).with_id(contract.PREVIOUS_STATISTICS_RESOLVER_NODE)
    example_validator = StrictExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        baseline_statistics=previous_statistics.outputs["statistics"],
        label_drift_threshold=config.label_drift_threshold,
    ).with_id(contract.EXAMPLE_VALIDATOR_NODE)

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=configs.PREPROCESSING_FN,
        custom_config={"code_version": configs.code_fingerprint()},
        # Decoding happens once in the Trainer's cached input pipeline; materializing 50k float
        # images as tf.Examples would write ~600 MB for nothing.
        materialize=False,
        disable_statistics=True)
    transform.add_upstream_node(example_validator)  # no training on data that failed validation

    components = [example_gen, previous_statistics, statistics_gen, schema_gen, example_validator,
                  transform]
    if target:
        components.append(baselines.record_statistics(
            config, statistics_gen.outputs["statistics"], example_validator))

    hyperparameters = None
    if config.runs_tuner:
        tuner = tfx.components.Tuner(
            tuner_fn=configs.TUNER_FN,
            examples=example_gen.outputs["examples"],
            transform_graph=transform.outputs["transform_graph"],
            train_args=tfx.proto.TrainArgs(splits=[contract.TRAIN_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[contract.EVAL_SPLIT]),
            custom_config=tuner_custom_config(config))
        hyperparameters = tuner.outputs["best_hyperparameters"]
        components.append(tuner)
    elif config.hyperparameters_dir:
        importer = tfx.dsl.Importer(
            source_uri=config.hyperparameters_dir,
            artifact_type=tfx.types.standard_artifacts.HyperParameters).with_id(
                contract.HYPERPARAMETERS_IMPORTER_NODE)
        hyperparameters = importer.outputs["result"]
        components.append(importer)

    config.validate_target(target)
    trainer_class, trainer_config = tfx.components.Trainer, trainer_custom_config(config)
    if config.trainer_workers > 1:  # replicas: a Vertex AI custom job started by this step
        trainer_class = tfx.extensions.google_cloud_ai_platform.Trainer
        trainer_config.update(vertex_training_config(config))
    trainer = trainer_class(
        run_fn=configs.RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        hyperparameters=hyperparameters,
        train_args=tfx.proto.TrainArgs(splits=[contract.TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[contract.EVAL_SPLIT]),
        custom_config=trainer_config)

    # The no-regression baseline is the model being served (pipeline.baselines), everywhere.
    served_model = baselines.served_model_baseline(config)
    evaluator = BaselineEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=served_model.outputs["model"],
        eval_config=eval_config(config),
        example_splits=[contract.TEST_SPLIT]).with_id(contract.EVALUATOR_NODE)
    components += [trainer, served_model, evaluator]

    tflite_model = None
    if config.enable_tflite:
        from components.tflite_converter import TFLiteConverter  # noqa: PLC0415

        converter = TFLiteConverter(
            model=trainer.outputs["model"],
            examples=example_gen.outputs["examples"],
            model_blessing=evaluator.outputs["blessing"],
            mode=config.tflite_mode,
            calibration_samples=config.tflite_calibration_samples,
            max_accuracy_drop=config.tflite_max_accuracy_drop,
            verify_samples=config.tflite_verify_samples)
        tflite_model = converter.outputs["tflite_model"]
        components.append(converter)

    pusher = ServingPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        baseline_model=served_model.outputs["model"],
        tflite_model=tflite_model,
        serving_dir=config.serving_dir,
        tflite_dir=config.tflite_dir if config.enable_tflite else None,
        # The model card of each pushed version is written from these (reports.model_card).
        evaluation=evaluator.outputs["evaluation"],
        statistics=statistics_gen.outputs["statistics"],
        model_run=trainer.outputs["model_run"],
        hyperparameters=hyperparameters,
        hyperparameters_source=("tuner" if config.runs_tuner else
                                "imported" if config.hyperparameters_dir else "defaults"),
    ).with_id(contract.PUSHER_NODE)
    components.append(pusher)
    if config.predict_dir:  # --predict-dir: BulkInferrer on a folder of images, gated by blessing
        from pipeline.batch_inference import batch_inference_components  # noqa: PLC0415

        components += batch_inference_components(
            config.predict_dir, trainer.outputs["model"], evaluator.outputs["blessing"],
            resize=config.predict_resize)

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.default_beam_args())
