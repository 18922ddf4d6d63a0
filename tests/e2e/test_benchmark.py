"""The benchmark script's fast mode: same code path as the full run, on the small fixture."""
from __future__ import annotations

import json
import subprocess
import sys

from modules import contract
from tests.support.pipeline_runs import E2E_ARGS, PROJECT_DIR, copy_fixture


def test_fast_benchmark_writes_results(trained_pipeline, small_cifar10, tmp_path):
    # A copy of the e2e run's outputs, run with its flags: ExampleGen..Trainer are cache hits,
    # and the e2e run's own serving folder is left alone.
    outputs = copy_fixture(trained_pipeline.output_dir, tmp_path / "outputs")
    results_dir = tmp_path / "results"
    process = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "benchmarks" / "run_benchmark.py"), "--fast",
         "--data-dir", str(small_cifar10), "--output-dir", str(outputs),
         "--results-dir", str(results_dir), "--", *E2E_ARGS],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=1200)
    assert process.returncode == 0, process.stderr[-4000:]
    report = json.loads((results_dir / "results.json").read_text())
    model, baseline = report["pipeline"], report["baseline"]
    assert report["test_images"] == 300 and report["budget"]["epochs"] == 4
    assert 0.0 <= model["accuracy"] <= 1.0 and 0.0 <= baseline["accuracy"] <= 1.0
    assert 550_000 <= baseline["parameters"] <= 650_000  # "about 600k", the original's size
    assert len(model["per_class"]) == 10 and sum(r["support"] for r in model["per_class"]) == 300
    assert model["trainer_seconds"] > 0 and model["pipeline_seconds"] >= model["trainer_seconds"]
    assert model["latency_ms_batch1"] > 0 and model["throughput_images_per_s_batch256"] > 0
    assert report["machine"]["cores"] >= 1
    assert [figure > 0 for figure in report["machine"]["train_images_per_s"]] == [True, True]
    costs = model["serving_costs"]
    assert set(costs) == {"single view", *contract.SIGNATURE_INPUTS}
    assert all(cost["latency_ms_batch1"] > 0 and cost["throughput_images_per_s_batch256"] > 0
               for cost in costs.values())
    assert model["serving_costs_timing"] == "round-robin, images in turn"
    levels = model["test_time_levels"]  # every level on the same weights, beside a single view
    assert set(levels) == {"single view", *contract.TEST_TIME_AUGMENTATIONS}
    assert all(0.0 <= levels[name]["accuracy"] <= 1.0 for name in contract.TEST_TIME_AUGMENTATIONS)
    gated = levels[contract.TTA_FLIP_IF_UNSURE]
    assert gated["unsure_below"] >= 0.0 and 0.0 <= gated["second_view_share"] <= 1.0
    assert all(level["latency_ms_batch1_mean"] > 0 for level in levels.values())
    assert model["hyperparameters"]["learning_rate"] > 0  # what the Trainer trained
    page = (results_dir / "RESULTS.md").read_text()
    for heading in ("## Targets", "## Pipeline model vs. baseline", "## Per-class metrics",
                    "## TFLite", "## Serving cost", "| `serving_examples` |", "| airplane |",
                    "Baseline F1", "taken in turn across the rows", "## Test-time levels",
                    "| `flip_if_unsure` |"):
        assert heading in page
    for png in ("confusion_matrix.png", "per_class_f1.png"):
        assert (results_dir / png).read_bytes().startswith(b"\x89PNG")

    # The serving costs timed again on the same weights through today's export: only they change.
    process = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "benchmarks" / "serving_costs.py"),
         "--data-dir", str(small_cifar10), "--output-dir", str(outputs),
         "--results", str(results_dir / "results.json")],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-4000:]
    retimed = json.loads((results_dir / "results.json").read_text())
    assert retimed["pipeline"]["serving_costs_export"].startswith("re-exported with")
    assert set(retimed["pipeline"]["serving_costs"]) == set(costs)
    assert retimed["pipeline"]["accuracy"] == model["accuracy"]
    assert retimed["baseline"] == baseline
    assert "trained network re-exported with" in (results_dir / "RESULTS.md").read_text()
