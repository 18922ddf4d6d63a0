"""The .bin parser: record layout, and clear errors that name the broken file."""
from __future__ import annotations

import numpy as np
import pytest

from modules import cifar10_binary, contract


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, contract.IMAGE_SHAPE, dtype=np.uint8)


def _write(path, records) -> str:
    path.write_bytes(b"".join(cifar10_binary.encode_record(label, image)
                              for label, image in records))
    return str(path)


def test_reads_labels_and_channel_last_images(tmp_path):
    images = [_image(i) for i in range(3)]
    path = _write(tmp_path / "data_batch_1.bin", zip([0, 9, 4], images, strict=False))
    records = list(cifar10_binary.read_records(path))
    assert [r.label for r in records] == [0, 9, 4]
    assert [r.index for r in records] == [0, 1, 2]
    for record, image in zip(records, images, strict=False):
        assert record.image.shape == (32, 32, 3) and record.image.dtype == np.uint8
        np.testing.assert_array_equal(record.image, image)


def test_planes_are_red_green_blue(tmp_path):
    raw = bytes([7]) + bytes([10]) * 1024 + bytes([20]) * 1024 + bytes([30]) * 1024
    (tmp_path / "one.bin").write_bytes(raw)
    (record,) = cifar10_binary.read_records(str(tmp_path / "one.bin"))
    assert record.label == 7
    assert record.image[5, 6].tolist() == [10, 20, 30]


def test_truncated_file_is_a_clear_error_naming_the_file(tmp_path):
    path = _write(tmp_path / "data_batch_2.bin", [(1, _image(0)), (2, _image(1))])
    with open(path, "r+b") as f:
        f.truncate(3073 + 1000)  # the second record is cut off
    with pytest.raises(cifar10_binary.Cifar10FormatError) as error:
        list(cifar10_binary.read_records(path))
    message = str(error.value)
    assert path in message
    assert "1 full records" in message and "1,000 stray bytes" in message
    assert "truncated" in message


def test_size_not_a_multiple_of_the_record_size(tmp_path):
    path = tmp_path / "test_batch.bin"
    path.write_bytes(b"\x00" * 5000)
    with pytest.raises(cifar10_binary.Cifar10FormatError, match="test_batch.bin: 5,000 bytes"):
        cifar10_binary.check_structure(str(path))


def test_empty_file(tmp_path):
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(b"")
    with pytest.raises(cifar10_binary.Cifar10FormatError,
                       match="data_batch_3.bin: the file is empty"):
        cifar10_binary.check_structure(str(path))


def test_any_record_count_is_accepted(tmp_path):
    """Files do not have to hold 10,000 records (the offline test batch holds 5,000)."""
    path = _write(tmp_path / "b.bin", [(i % 10, _image(i)) for i in range(7)])
    assert cifar10_binary.check_structure(path) == 7


def test_labels_are_not_range_checked_here(tmp_path):
    """Label range is the schema's job, so that ExampleValidator reports it with context."""
    path = _write(tmp_path / "b.bin", [(12, _image(0))])
    assert next(cifar10_binary.read_records(path)).label == 12
