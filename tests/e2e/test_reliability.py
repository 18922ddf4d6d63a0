"""Faults cost nothing: each test shows a clear error or verdict, and nothing lost or pushed.

- a truncated .bin stops the run at ExampleGen, naming the file;
- label drift since the previous run's data stops the run at ExampleValidator;
- a worse second model is not blessed, and the serving base path is left exactly as it was;
- a push killed mid-copy leaves no version folder, and the next push cleans up and succeeds;
- a run killed during the Trainer resumes from the cache (ML Metadata) and completes;
- logs: progress and epochs without TF's C++ noise, and more with --verbose.
"""
from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli.main import main as cifar10_tfx
from modules import contract, export
from reports import runs
from tests.support.pipeline_runs import (
    E2E_ARGS,
    PROJECT_DIR,
    copy_fixture,
    run_local_runner,
    run_pipeline,
)

# A line TF's C++ logging writes ("2026-01-01 10:00:00.123456: E external/...cc:479] ...").
TF_CPP_LINE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "
CACHED_UPSTREAM = ("Cifar10ExampleGen", "StatisticsGen", "ExampleValidator", "Transform", "Tuner")


def snapshot(base: Path) -> dict:
    """Every file under a folder: relative path -> (sha256, size, mtime in ns)."""
    found = {}
    for path in sorted(base.rglob("*")):
        if path.is_file():
            stat = path.stat()
            found[str(path.relative_to(base))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                  stat.st_size, stat.st_mtime_ns)
    return found


def entries(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


# ---- Bad input -----------------------------------------------------------------------------------

@pytest.mark.e2e
def test_truncated_batch_file_stops_the_run_naming_the_file(small_cifar10, tmp_path):
    data = copy_fixture(small_cifar10, tmp_path / "data")
    batch = data / "cifar-10-batches-bin" / "data_batch_3.bin"
    raw = batch.read_bytes()
    batch.write_bytes(raw[:len(raw) - contract.RECORD_BYTES // 2])  # half a record gone

    run = run_pipeline(data, tmp_path / "out", "--verbose")
    assert run.process.returncode == 1, run.explain()
    assert str(batch) in run.process.stderr
    assert "truncated" in run.process.stderr
    assert "Nothing was pushed" in run.process.stderr
    assert run.versions(run.serving_dir) == [] and run.versions(run.tflite_dir) == []
    states = runs.run_executions(runs.open_store(str(run.metadata_path)))
    assert states["Cifar10ExampleGen"] == ["failed"]
    assert not {"StatisticsGen", "Transform", "Trainer", "Evaluator", "Pusher"} & set(states)

    # --verbose shows what the quiet default hides: TFX's launcher lines.
    output = run.process.stdout + run.process.stderr
    assert "Running launcher for" in output or "Going to run a new execution" in output

    # The report of the stopped run says where it stopped.
    assert cifar10_tfx(["report", "--output-dir", str(run.output_dir),
                            "--to", str(tmp_path / "rep")]) == 0
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert "**Stopped**: Cifar10ExampleGen failed" in markdown
    assert re.search(r"^\| Cifar10ExampleGen \| failed \| ", markdown, re.MULTILINE)


# ---- Logs ----------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_label_drift_since_the_previous_run_stops_at_example_validator(trained_pipeline,
                                                                     small_cifar10, tmp_path):
    """Labels still in range, but class 0 now makes up about half of every file."""
    outputs = copy_fixture(trained_pipeline.output_dir, tmp_path / "outputs")
    before = (snapshot(outputs / "serving_model"), snapshot(outputs / "tflite_model"))
    data = copy_fixture(small_cifar10, tmp_path / "drifted")
    for batch in sorted((data / "cifar-10-batches-bin").glob("*.bin")):
        raw = bytearray(batch.read_bytes())
        for index in range(0, len(raw) // contract.RECORD_BYTES, 2):
            raw[index * contract.RECORD_BYTES] = 0  # every other record becomes class 0
        batch.write_bytes(bytes(raw))

    run = run_pipeline(data, outputs)
    assert run.process.returncode == 1, run.explain()
    assert "feature 'label': High Linfty distance" in run.process.stderr
    assert "since the previous data" in run.process.stderr
    states = runs.run_executions(runs.open_store(str(run.metadata_path)))
    assert states["ExampleValidator"] == ["failed"] and "Trainer" not in states
    assert (snapshot(outputs / "serving_model"), snapshot(outputs / "tflite_model")) == before


@pytest.mark.e2e
def test_quiet_logs_show_progress_and_epochs_but_no_tf_noise(trained_pipeline):
    output = trained_pipeline.process.stdout + trained_pipeline.process.stderr
    for node in ("Cifar10ExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"):
        assert f"Component {node} is running" in output, node
    assert "Epoch 1/4" in output and "Epoch 4/4" in output  # the Trainer's epochs
    assert "Test accuracy:" in output
    lowered = output.lower()
    assert "cuda" not in lowered and "onednn" not in lowered, output[-3000:]
    assert not re.search(TF_CPP_LINE, output, re.MULTILINE), output[-3000:]
    # The launcher's bookkeeping stays out of the quiet default (it shows with --verbose).
    assert "Running launcher for" not in output


# ---- A worse model -------------------------------------------------------------------------------

@pytest.mark.e2e
def test_worse_second_model_is_not_blessed_and_serving_is_untouched(trained_pipeline,
                                                                      small_cifar10, tmp_path):
    # A copy of the trained pipeline's outputs, so the other tests keep theirs as they were.
    output_dir = Path(shutil.copytree(trained_pipeline.output_dir, tmp_path / "out",
                                      ignore=shutil.ignore_patterns("reports")))
    serving, tflite = output_dir / "serving_model", output_dir / "tflite_model"
    before = (entries(serving), snapshot(serving), entries(tflite), snapshot(tflite))
    assert before[0], "the good first model should have been pushed"

    # One training step: far below the ~40% of the blessed model. With no accuracy floor, only the
    # no-regression rule against the served model can refuse it.
    run = run_pipeline(small_cifar10, output_dir, "--epochs", "1", "--steps-per-epoch", "1",
                       "--accuracy-threshold", "0")
    assert run.process.returncode == 0, run.explain()
    assert "Not blessed: nothing was pushed" in run.process.stdout

    store = runs.open_store(str(run.metadata_path))
    states = runs.run_executions(store)
    assert states["Trainer"] == ["complete"] and states["Evaluator"] == ["complete"]
    assert states["Pusher"] == ["complete"]  # it ran, and declined
    outcome = runs.latest_outcome(str(run.metadata_path))
    assert outcome.blessed is False and outcome.pushed is False

    import tensorflow_model_analysis as tfma

    validation = tfma.load_validation_result(outcome.evaluation_uri)
    assert not validation.validation_ok
    failed = [f.metric_key for s in validation.metric_validations_per_slice for f in s.failures]
    assert any(k.name == "sparse_categorical_accuracy" and k.is_diff for k in failed), failed

    after = (entries(serving), snapshot(serving), entries(tflite), snapshot(tflite))
    assert after == before  # same versions, same files, same bytes, same mtimes

    # The report of this run says so too.
    assert cifar10_tfx(["report", "--output-dir", str(output_dir),
                        "--to", str(tmp_path / "report")]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "Verdict: **NOT BLESSED**" in markdown
    assert "Nothing was pushed by this run." in markdown
    assert "**FAIL**" in markdown


# ---- Push atomicity ------------------------------------------------------------------------------

PUSH_IN_CHILD = """
import sys
from serving.model_base import publish_version
publish_version(sys.argv[1], sys.argv[2], int(sys.argv[3]), last="saved_model.pb")
"""


def _dummy_saved_model(folder: Path, blocking: bool) -> Path:
    """A SavedModel-shaped folder of a few MB; with `blocking`, one variables shard is a FIFO
    that nobody writes, so a copy of the folder stops there, mid-copy, for as long as we like."""
    (folder / "variables").mkdir(parents=True)
    (folder / "assets.extra").mkdir()
    (folder / "saved_model.pb").write_bytes(os.urandom(1 << 20))
    (folder / "fingerprint.pb").write_bytes(os.urandom(64))
    (folder / "variables" / "variables.index").write_bytes(os.urandom(4096))
    (folder / "variables" / "variables.data-00000-of-00002").write_bytes(os.urandom(8 << 20))
    (folder / "assets.extra" / "tf_serving_warmup_requests").write_bytes(os.urandom(1 << 16))
    shard = folder / "variables" / "variables.data-00001-of-00002"
    if blocking:
        os.mkfifo(shard)
    else:
        shard.write_bytes(os.urandom(8 << 20))
    return folder


def test_push_killed_mid_copy_leaves_no_version_and_the_next_push_cleans_up(tmp_path):
    from components.serving_pusher import executor
    from serving import model_base

    base = tmp_path / "serving_model"
    source = _dummy_saved_model(tmp_path / "stuck_model", blocking=True)
    child = subprocess.Popen([sys.executable, "-c", PUSH_IN_CHILD, str(source), str(base),
                              "1700000000"], cwd=PROJECT_DIR, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        staging = []
        while time.time() < deadline and child.poll() is None:
            staging = [p for p in base.glob(contract.STAGING_PREFIX + "*")] if base.exists() else []
            # Top-level files are copied before the folders: this one means the copy is under way.
            if staging and (staging[0] / "fingerprint.pb").exists():
                break
            time.sleep(0.05)
        assert child.poll() is None, child.communicate()[0]
        assert staging, "the push never started"
        time.sleep(0.5)
        assert child.poll() is None  # still copying (blocked on the FIFO shard)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # What the crash left: a staging folder without saved_model.pb, and no version TF Serving loads.
    assert child.returncode == -signal.SIGKILL
    assert model_base.list_versions(str(base)) == []
    assert not [p for p in base.iterdir() if p.name.isdigit()]
    (leftover,) = staging
    assert leftover.is_dir() and not (leftover / "saved_model.pb").exists()

    # The next push, through the Pusher's executor: removes the leftover and pushes a whole version.
    from tfx.types import standard_artifacts

    good = _dummy_saved_model(Path(export.serving_model_dir(str(tmp_path / "good_model"))),
                              blocking=False)
    model = standard_artifacts.Model()
    model.uri = str(good.parent)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property(contract.BLESSED_PROPERTY, 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    executor.Executor().Do({executor.MODEL_KEY: [model], executor.BLESSING_KEY: [blessing]},
                           {executor.PUSHED_MODEL_KEY: [pushed]},
                           {executor.SERVING_DIR_KEY: str(base), executor.TFLITE_DIR_KEY: ""})

    assert not leftover.exists()
    (version,) = model_base.list_versions(str(base))
    assert entries(base) == [str(version)]
    assert pushed.get_int_custom_property(contract.PUSHED_PROPERTY) == 1
    assert pushed.get_int_custom_property(contract.PUSHED_VERSION_PROPERTY) == version
    def contents(folder: Path) -> dict:  # path -> (sha256, size); mtimes differ after a copy
        return {k: v[:2] for k, v in snapshot(folder).items()}

    assert contents(base / str(version)) == contents(good)


# ---- Resume after a kill -------------------------------------------------------------------------

def _read_lines(stream, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
    lines.put("")  # end of output


@pytest.mark.e2e
def test_run_killed_during_training_resumes_from_the_cache(small_cifar10, tmp_path):
    output_dir = tmp_path / "out"
    flags = ["--data-dir", str(small_cifar10), "--output-dir", str(output_dir), *E2E_ARGS,
             "--epochs", "1", "--accuracy-threshold", "0", "--no-tflite"]
    child = subprocess.Popen([sys.executable, str(PROJECT_DIR / "local_runner.py"), *flags],
                             cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(child.stdout, lines), daemon=True).start()
    seen = []
    try:
        deadline = time.time() + 900
        while time.time() < deadline:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                continue
            seen.append(line)
            # The Trainer's own first line: it is registered in ML Metadata and now training.
            if not line or "Training on " in line:
                break
        text = "".join(seen)
        assert "Component Trainer is running" in text and "Training on " in seen[-1], text[-4000:]
        os.killpg(child.pid, signal.SIGKILL)  # the whole run, as a power cut would
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not any("Component Trainer is finished" in line for line in seen)

    store = runs.open_store(str(output_dir / "metadata.sqlite"))
    (killed_run,) = runs.pipeline_runs(store)
    killed = runs.run_executions(store, killed_run.name)
    assert all(killed[node] == ["complete"] for node in CACHED_UPSTREAM), killed
    assert killed["Trainer"] in (["running"], ["new"]), killed  # never finished
    assert not (output_dir / "serving_model").exists() or not entries(output_dir / "serving_model")
    del store
    assert cifar10_tfx(["report", "--output-dir", str(output_dir), "--run", killed_run.name,
                        "--to", str(tmp_path / "killed-report")]) == 0
    markdown = (tmp_path / "killed-report" / "report.md").read_text()
    assert "**Interrupted**" in markdown
    assert re.search(r"^\| Trainer \| (running|new) \| - \| ", markdown, re.MULTILINE)

    # The same command again: finished components come from the cache, the rest runs.
    again = run_local_runner(*flags)
    assert again.returncode == 0, f"{again.stdout[-3000:]}\n{again.stderr[-5000:]}"
    store = runs.open_store(str(output_dir / "metadata.sqlite"))
    all_runs = runs.pipeline_runs(store)
    assert len(all_runs) == 2
    states = runs.run_executions(store)
    # ExampleValidator runs again (in a second): its drift baseline, the killed run's
    # statistics, did not exist the first time. The same data shows no drift.
    for node in CACHED_UPSTREAM + ("ImportSchemaGen",):
        expected = ["complete"] if node == "ExampleValidator" else ["cached"]
        assert states[node] == expected, (node, states)
    for node in ("Trainer", "Evaluator", "Pusher"):
        assert states[node] == ["complete"], (node, states)
    outcome = runs.latest_outcome(str(output_dir / "metadata.sqlite"))
    assert outcome.blessed and outcome.pushed
    pushed = sorted(p.name for p in (output_dir / "serving_model").iterdir())
    versions = [name for name in pushed if name.isdigit()]
    assert versions == [str(outcome.pushed_version)]
    assert pushed == [*versions, contract.MODEL_CARDS_DIR]  # the card folder, nothing else
    assert (output_dir / "serving_model" / versions[0] / "saved_model.pb").is_file()
