"""The fast modes of benchmarks/batch_inference.py (#18) and benchmarks/scale_out.py (#15): the
same code paths as the full runs, on small fixtures; no timings or accuracies are asserted."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.pipeline_runs import E2E_ARGS, PROJECT_DIR, build_fixture, copy_fixture

pytestmark = pytest.mark.e2e


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_DIR / "benchmarks" / script), *args],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=1500)


def test_fast_batch_inference_benchmark(trained_pipeline, small_cifar10, tmp_path):
    # A copy of the e2e run, run with its own flags: ExampleGen..Pusher are cache hits and only
    # the batch stage (new nodes) runs; the e2e run's serving folder is only read.
    outputs = copy_fixture(trained_pipeline.output_dir, tmp_path / "outputs")
    results = tmp_path / "results"
    process = _run("batch_inference.py", "--fast", "--data-dir", str(small_cifar10),
                   "--output-dir", str(outputs), "--results-dir", str(results),
                   "--images-dir", str(tmp_path / "images"), "--", *E2E_ARGS, "--tune")
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-4000:]
    report = json.loads((results / "batch_inference.json").read_text())
    assert report["images"] == 300 and len(list((tmp_path / "images").iterdir())) == 300
    assert set(report["batch_stage"]["component_seconds"]) == {
        "ImageFolderExampleGen", "BulkInferrer", "BatchPredictionsWriter"}
    assert report["answered"] == {"batch_stage": 300, "saved_model": 300, "tflite": 300}
    assert all(pair["compared"] == 300 for pair in report["agreement"].values())
    assert all(row["seconds"] > 0 for row in report["rates"][:4])
    assert len(report["pipeline"]["load_before"]) == 3 and report["machine"]["cores"] >= 1
    page = (results / "BATCH_INFERENCE.md").read_text()
    for text in ("## Throughput", "## Do they agree?", "batch stage: total",
                 "cifar10-tfx predict --saved-model", "cifar10-tfx predict --tflite"):
        assert text in page


def test_fast_scale_out_benchmark(tmp_path):
    data_dir = build_fixture(tmp_path / "cifar10", limit=50)
    results = tmp_path / "results"
    # Two workers only: the 1-worker path is the same loop, and CI time is short.
    process = _run("scale_out.py", "all", "--fast", "--data-dir", str(data_dir),
                   "--output-dir", str(tmp_path / "runs"), "--results-dir", str(results),
                   "--workers", "2")
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-4000:]
    report = json.loads((results / "scale_out.json").read_text())
    paths = report["beam"]["paths"]
    assert set(paths) == {"direct_1", "portable"}
    for path in paths.values():
        for node in ("Cifar10ExampleGen", "StatisticsGen", "ExampleValidator", "Transform",
                     "Evaluator"):
            assert path["component_seconds"][node] >= 0, node
    assert paths["portable"]["jobs_done_on_job_service"] >= 4
    assert set(report["beam"]["ratios"]) == {"portable / direct_1"}
    trainer = report["trainer"]
    assert [(r["workers"], r["steps"], r["replicas"]) for r in trainer["runs"]] == [
        (2, 1, 2), (2, 3, 2)]
    assert trainer["ratio_2_over_1"] is None  # one cluster size only
    page = (results / "SCALE_OUT.md").read_text()
    for text in ("## 1. The Beam stages", "## 2. The Trainer", "on a cluster"):
        assert text in page
