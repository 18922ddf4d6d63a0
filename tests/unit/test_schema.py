"""The curated schema refuses what the issue calls bad data: a label out of range, a wrong size."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv

from components.cifar10_example_gen import executor as example_gen
from components.strict_example_validator import executor as validator
from pipeline import configs


def _stats(tmp_path, examples: list[bytes], schema=None):
    path = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            writer.write(example)
    # With the schema (as StatisticsGen gets it), the label is counted as a categorical feature.
    options = tfdv.StatsOptions(schema=schema) if schema is not None else tfdv.StatsOptions()
    return tfdv.generate_statistics_from_tfrecord(path, stats_options=options)


def _image(height=32, width=32):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def schema():
    return tfdv.load_schema_text(configs.SCHEMA_PATH)


def test_good_examples_have_no_anomalies(tmp_path, schema):
    stats = _stats(tmp_path, [example_gen.to_example(i % 10, _image()) for i in range(20)])
    anomalies = tfdv.validate_statistics(stats, schema)
    assert not anomalies.anomaly_info


def test_out_of_range_label_and_wrong_size_are_anomalies(tmp_path, schema):
    examples = [example_gen.to_example(i % 10, _image()) for i in range(20)]
    examples.append(example_gen.to_example(12, _image()))
    examples.append(example_gen.to_example(1, _image(28, 28)))
    anomalies = tfdv.validate_statistics(_stats(tmp_path, examples), schema)
    assert {"label", "height", "width"} <= set(anomalies.anomaly_info)
    lines = validator.describe_anomalies("train", anomalies)
    label_line = next(line for line in lines if "'label'" in line)
    assert label_line.startswith("split 'train', feature 'label':")
    assert "12" in label_line  # says which value is wrong


def test_label_is_not_required_when_serving(schema):
    label = next(f for f in schema.feature if f.name == "label")
    assert "SERVING" in label.not_in_environment


def _stats_artifact(tmp_path, name: str, labels: list[int], schema):
    """An ExampleStatistics artifact laid out as StatisticsGen writes it, for one `train` split."""
    from tfx.types import standard_artifacts

    stats = _stats(tmp_path, [example_gen.to_example(label, _image()) for label in labels], schema)
    split_dir = tmp_path / name / "Split-train"
    split_dir.mkdir(parents=True)
    (split_dir / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    with tf.io.TFRecordWriter(str(split_dir / "stats_tfrecord")) as writer:
        writer.write(stats.SerializeToString())
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(tmp_path / name)
    artifact.split_names = '["train"]'
    return artifact


def test_label_drift_between_runs_is_caught(tmp_path, schema):
    balanced = [i % 10 for i in range(100)]
    skewed = [0] * 30 + [i % 10 for i in range(70)]  # class 0: 10% -> 37%
    before = _stats_artifact(tmp_path, "before", balanced, schema)
    same = _stats_artifact(tmp_path, "same", balanced, schema)
    after = _stats_artifact(tmp_path, "after", skewed, schema)
    assert validator.label_drift_problems(same, before, schema, threshold=0.1) == []
    (problem,) = validator.label_drift_problems(after, before, schema, threshold=0.1)
    assert problem.startswith("split 'train', feature 'label':")
    assert "since the previous data" in problem and "0.1" in problem
    assert validator.label_drift_problems(after, before, schema, threshold=0.5) == []
