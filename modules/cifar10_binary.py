"""Reader for the official CIFAR-10 *binary* batches (`cifar-10-batches-bin/*.bin`).

The binary version is used, never the python one: the python batches are pickles, and unpickling a
downloaded file can run arbitrary code. A binary record is one label byte followed by 3072 pixel
bytes (1024 red, 1024 green, 1024 blue, each a row-major 32x32 plane). The parser checks structure
only; label range and image size are the schema's job, so that bad data surfaces as an
ExampleValidator anomaly a person can read.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from modules import contract

LABEL_BYTES = contract.RECORD_BYTES - contract.PIXELS_PER_IMAGE  # the one label byte


class Cifar10FormatError(ValueError):
    """A batch file whose bytes are not a whole number of CIFAR-10 records."""


class Record(NamedTuple):
    index: int  # position of the record in its file, from 0
    label: int
    image: np.ndarray  # uint8 [32, 32, 3], channels last


def _open(path: str):
    # tf.io.gfile reads local paths, gs:// and s3:// alike; import lazily so the parser stays cheap.
    import tensorflow as tf

    return tf.io.gfile.GFile(path, "rb")


def _file_size(path: str) -> int:
    import tensorflow as tf

    return tf.io.gfile.stat(path).length


def check_structure(path: str) -> int:
    """Returns the number of records in `path`, or raises Cifar10FormatError naming the file."""
    size = _file_size(path)
    full, leftover = divmod(size, contract.RECORD_BYTES)
    if size == 0:
        raise Cifar10FormatError(f"{path}: the file is empty; a CIFAR-10 batch holds at least one "
                                 f"{contract.RECORD_BYTES}-byte record.")
    if leftover:
        raise Cifar10FormatError(
            f"{path}: {size:,} bytes is not a whole number of {contract.RECORD_BYTES}-byte "
            f"CIFAR-10 records ({full:,} full records, then {leftover:,} stray bytes). The file "
            f"is truncated or is not a CIFAR-10 binary batch; download or rebuild it.")
    return full


def decode_record(raw: bytes) -> tuple[int, np.ndarray]:
    """Splits one 3073-byte record into its label and a channels-last uint8 image."""
    label = raw[0]
    planes = np.frombuffer(raw, dtype=np.uint8, offset=LABEL_BYTES)
    image = planes.reshape(contract.IMAGE_CHANNELS, contract.IMAGE_HEIGHT,
                           contract.IMAGE_WIDTH).transpose(1, 2, 0)
    return int(label), np.ascontiguousarray(image)


def read_records(path: str) -> Iterator[Record]:
    """Streams the records of one batch file, after checking its size is whole."""
    count = check_structure(path)
    with _open(path) as f:
        for index in range(count):
            raw = f.read(contract.RECORD_BYTES)
            if len(raw) != contract.RECORD_BYTES:  # the file shrank while we read it
                raise Cifar10FormatError(
                    f"{path}: record {index} is cut short ({len(raw)} of {contract.RECORD_BYTES} "
                    f"bytes).")
            label, image = decode_record(raw)
            yield Record(index, label, image)


def encode_record(label: int, image: np.ndarray) -> bytes:
    """Inverse of decode_record; used to write fixtures and in tests."""
    image = np.asarray(image, dtype=np.uint8).reshape(contract.IMAGE_SHAPE)
    return bytes([label]) + image.transpose(2, 0, 1).tobytes()
