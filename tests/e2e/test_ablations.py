"""benchmarks/ablations.py on the shared e2e run: each variant is run_fn with its levers."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.pipeline_runs import PROJECT_DIR

pytestmark = pytest.mark.e2e

SCRIPT = str(PROJECT_DIR / "benchmarks" / "ablations.py")


def test_each_variant_trains_with_its_levers_and_is_scored(trained_pipeline, small_cifar10,
                                                            tmp_path):
    # The levers' code paths in run_fn (weight average + BatchNorm recalibration, alternating
    # flips, a wider middle block; mixed precision exported in float32) on the shared run's
    # Examples and Transform graph, read-only.
    def ablate() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, SCRIPT, "--data-dir", str(small_cifar10),
             "--run-dir", str(trained_pipeline.output_dir), "--epochs", "2", "--batch-size", "64",
             "--steps-per-epoch", "3", "--variants", "ema+flip+wide,bfloat16",
             "--results-dir", str(tmp_path)],
            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=900)

    process = ablate()
    assert process.returncode == 0, process.stderr[-4000:]
    report = json.loads((tmp_path / "ablations.json").read_text())
    levers, mixed = report["variants"]  # the defaults' path is the shared run's own
    assert levers["variant"] == "ema+flip+wide" and levers["seed"] == 42  # the pipeline's
    assert levers["hyperparameters"]["ema_momentum"] == 0.99
    assert levers["hyperparameters"]["alternating_flip"] is True
    assert levers["parameters"] == 986_232  # 64/160/192 (the defaults' 64/128/192: 829,368)
    assert levers["test_images"] == 300 and levers["train_seconds"] > 0
    assert all(speed > 0 for speed in levers["train_images_per_s"])  # the host, before and after
    assert 0.0 <= levers["accuracy_1_view"] <= 1.0 and 0.0 <= levers["accuracy_2_views"] <= 1.0
    origin = levers["accuracy_2_views_by_origin"]  # the fixture's images are all original
    assert origin["exact_after_jpeg"]["images"] == origin["exact"]["images"] == 300
    assert "| ema+flip+wide |" in (tmp_path / "ABLATIONS.md").read_text()
    assert mixed["variant"] == "bfloat16"
    assert mixed["hyperparameters"]["compute_dtype"] == "bfloat16"
    assert mixed["parameters"] == 829_368  # the same network, scored through its float32 export
    assert 0.0 <= mixed["accuracy_2_views"] <= 1.0

    # A rerun with the same budget keeps what was measured (a stopped run resumes) and trains
    # only what is new.
    again = ablate()
    assert again.returncode == 0, again.stderr[-4000:]
    assert "ema+flip+wide, seed 42: kept from " in again.stdout
    assert json.loads((tmp_path / "ablations.json").read_text())["variants"] == [levers, mixed]


def test_an_unknown_variant_is_one_line(tmp_path):
    process = subprocess.run(
        [sys.executable, SCRIPT, "--variants", "defaults,bigger", "--run-dir", str(tmp_path)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    assert process.stderr.strip().splitlines() == [
        "error: --variants: unknown bigger; choose from defaults, ema, lookahead, "
        "lookahead_1280, frozen_whitening_bias, alternating_flip, wide_stage2, ema+flip+wide, "
        "ema+wide, relu, linear_decay, translate_4, cutout, bfloat16."]
