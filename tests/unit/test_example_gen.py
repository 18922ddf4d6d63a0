"""Cifar10ExampleGen pieces: the split slices, the tf.Example encoding, input checks."""
from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from components.cifar10_example_gen import executor
from modules import cifar10_binary, contract


def test_eval_is_the_tail_of_every_training_file():
    slices = executor.split_slices(0.1)
    assert executor.slice_bounds(10_000, slices["train"]) == (0, 9_000)
    assert executor.slice_bounds(10_000, slices["eval"]) == (9_000, 10_000)
    assert executor.slice_bounds(5_000, slices["test"]) == (0, 5_000)
    # train and eval partition any file size, with nothing lost or shared
    for count in (1, 7, 200, 301, 10_000):
        train = executor.slice_bounds(count, slices["train"])
        evaluation = executor.slice_bounds(count, slices["eval"])
        assert train[0] == 0 and train[1] == evaluation[0] and evaluation[1] == count


def test_example_holds_lossless_png_and_metadata():
    image = np.random.default_rng(0).integers(0, 256, contract.IMAGE_SHAPE, dtype=np.uint8)
    example = tf.train.Example.FromString(executor.to_example(3, image))
    features = example.features.feature
    assert features[contract.LABEL_KEY].int64_list.value == [3]
    assert features[contract.HEIGHT_KEY].int64_list.value == [32]
    assert features[contract.WIDTH_KEY].int64_list.value == [32]
    assert features[contract.CHANNELS_KEY].int64_list.value == [3]
    png = features[contract.IMAGE_KEY].bytes_list.value[0]
    assert png.startswith(b"\x89PNG")
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)


def test_read_slice_keeps_order_and_bounds(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    rng = np.random.default_rng(1)
    path.write_bytes(b"".join(cifar10_binary.encode_record(i % 10, rng.integers(
        0, 256, contract.IMAGE_SHAPE, dtype=np.uint8)) for i in range(10)))
    tail = list(executor.read_slice(str(path), (0.8, 1.0)))
    labels = [tf.train.Example.FromString(e).features.feature["label"].int64_list.value[0]
              for e in tail]
    assert labels == [8, 9]


def test_missing_files_name_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-bin/data_batch_\\*.bin"):
        executor.matching_files(str(tmp_path), "cifar-10-batches-bin/data_batch_*.bin")


def test_only_the_five_official_training_files_are_read(tmp_path):
    """A stray copy beside the batches (data_batch_1_old.bin, data_batch_12.bin) is not training
    data."""
    folder = tmp_path / contract.BATCHES_DIR
    folder.mkdir()
    record = cifar10_binary.encode_record(1, np.zeros(contract.IMAGE_SHAPE, np.uint8))
    for name in (*contract.TRAIN_BATCH_FILES, "data_batch_1_old.bin", "data_batch_12.bin"):
        (folder / name).write_bytes(record)
    files = executor.matching_files(str(tmp_path), contract.TRAIN_PATTERN)
    assert sorted(os.path.basename(f) for f in files) == sorted(contract.TRAIN_BATCH_FILES)


def test_broken_file_is_refused_before_beam_runs(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(b"\x01" * 4000)
    with pytest.raises(cifar10_binary.Cifar10FormatError, match="data_batch_1.bin"):
        executor.matching_files(str(tmp_path), "cifar-10-batches-bin/data_batch_*.bin")


def test_an_empty_split_is_refused_with_its_name(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    image = np.zeros(contract.IMAGE_SHAPE, np.uint8)
    (folder / "data_batch_1.bin").write_bytes(cifar10_binary.encode_record(1, image) * 3)
    files = executor.matching_files(str(tmp_path), "cifar-10-batches-bin/data_batch_*.bin")
    assert executor.split_record_count(files, executor.split_slices(0.1)["train"]) == 3
    assert executor.split_record_count(files, executor.split_slices(0.1)["eval"]) == 0


def test_executor_refuses_an_empty_eval_split_before_beam(tmp_path):
    import apache_beam as beam
    from tfx.proto import example_gen_pb2
    from tfx.utils import proto_utils

    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    image = np.zeros(contract.IMAGE_SHAPE, np.uint8)
    for name in ("data_batch_1.bin", "test_batch.bin"):
        (folder / name).write_bytes(cifar10_binary.encode_record(1, image) * 3)
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=pattern) for name, pattern in (
            ("train", "cifar-10-batches-bin/data_batch_*.bin"),
            ("eval", "cifar-10-batches-bin/data_batch_*.bin"),
            ("test", "cifar-10-batches-bin/test_batch.bin"))])
    properties = {"input_base": str(tmp_path), "eval_fraction": 0.1,
                  "input_config": proto_utils.proto_to_json(input_config)}
    with pytest.raises(ValueError, match="Split 'eval' would be empty"):
        executor.Executor().GenerateExamplesByBeam(beam.Pipeline(), properties)
