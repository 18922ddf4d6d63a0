"""The benchmark reports accuracy on the offline copy's original and JPEG-decoded images apart."""
from __future__ import annotations

import numpy as np

from benchmarks import run_benchmark
from modules import contract
from reports import benchmark_page
from tests.support.pipeline_runs import build_fixture


def test_offline_copy_images_are_told_apart_by_origin(tmp_path):
    data = build_fixture(tmp_path, limit=contract.OFFLINE_COPY_EXACT_PER_FILE + 83)
    images, labels, exact = run_benchmark.load_split_with_origin(
        str(data), contract.TEST_PATTERN, (0.0, 1.0))
    assert len(images) == len(labels) == len(exact) == contract.OFFLINE_COPY_EXACT_PER_FILE + 83
    assert exact[:contract.OFFLINE_COPY_EXACT_PER_FILE].all() and not exact[-83:].any()


def test_accuracy_by_origin_and_its_rows():
    labels = np.array([0, 1, 2, 3])
    predictions = np.array([0, 1, 2, 0])
    split = run_benchmark.accuracy_by_origin(predictions, labels, np.array([1, 1, 0, 0], bool))
    assert split == {"exact": {"images": 2, "accuracy": 1.0},
                     "jpeg_decoded": {"images": 2, "accuracy": 0.5}}
    assert run_benchmark.accuracy_by_origin(predictions, labels, None) == {}
    rows = benchmark_page._origin_rows({"accuracy_by_origin": split}, None)  # noqa: SLF001
    assert [row[:2] for row in rows] == [
        ("Test accuracy, 2 images with original pixels", "100.00%"),
        ("Test accuracy, 2 images with pixels decoded from JPEG", "50.00%")]


def test_exact_images_are_scored_again_after_a_jpeg_round_trip():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, *contract.IMAGE_SHAPE), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3])
    exact = np.array([1, 1, 0, 0], bool)
    seen = []

    def predict(batch):  # right on every image it gets, and remembers them
        seen.append(batch)
        return np.eye(contract.NUM_CLASSES)[labels[:len(batch)]]

    result = run_benchmark.exact_after_jpeg(predict, images, labels, exact)
    assert result == {"exact_after_jpeg": {"images": 2, "accuracy": 1.0}}
    (given,) = seen
    assert given.shape == (2, *contract.IMAGE_SHAPE) and given.dtype == np.uint8
    assert not np.array_equal(given, images[:2])  # lossy: the JPEG changed the noise pixels
    assert np.abs(given.astype(int) - images[:2]).mean() < 64
    assert run_benchmark.exact_after_jpeg(predict, images, labels, None) == {}
    rows = benchmark_page._origin_rows({"accuracy_by_origin": result}, None)  # noqa: SLF001
    assert rows[0][:2] == ("Test accuracy, 2 images with original pixels after a JPEG round "
                           "trip (quality 75)", "100.00%")
