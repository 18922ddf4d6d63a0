"""`cifar10-tfx run` refusing what would fail late or write in the wrong place (issues #16, #20).

Every case goes through the command itself (cli.main, in-process) and asserts the exact outcome:
the exit code, ONE `error: ...` line naming the flag or file and what is wrong, and that nothing
outside the intended folder changed (a `victim` folder is compared before and after). All are
refused before TensorFlow or TFX is imported, so these tests take seconds.
"""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import logs
from cli import run as run_module
from cli.main import main
from modules import contract

PROJECT_DIR = Path(__file__).resolve().parents[2]
RECORDS_PER_FILE = 20  # 18 train + 2 eval per batch file: 90 training records in all


@pytest.fixture(autouse=True)
def _keep_pytest_logging(monkeypatch):
    monkeypatch.setattr(logs, "configure", lambda verbose=False: None)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A CIFAR-10 binary layout of real-format records (label byte + 3072 pixel bytes)."""
    folder = tmp_path / "data" / contract.BATCHES_DIR
    folder.mkdir(parents=True)
    for name in (*contract.TRAIN_BATCH_FILES, contract.TEST_BATCH_FILE):
        (folder / name).write_bytes(bytes(contract.RECORD_BYTES * RECORDS_PER_FILE))
    return folder.parent


@pytest.fixture
def victim(tmp_path) -> Path:
    folder = tmp_path / "victim"
    (folder / "sub").mkdir(parents=True)
    (folder / "keep.txt").write_text("mine")
    (folder / "sub" / "model.tflite").write_bytes(b"\0" * 10)
    return folder


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def run(capsys, *argv: str) -> tuple[int, str]:
    """`cifar10-tfx run ARGV`: the exit code and its one stderr line (asserted to be one).

    --batch-size 8 fits the 90 training records (a later --batch-size wins)."""
    code = main(["run", "--batch-size", "8", *argv])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return code, lines[0]


@pytest.mark.parametrize("flag, value, expected", [
    ("--batch-size", "91", "batch_size is larger than the 90 training records in {data} (after "
                           "the eval fraction 0.1 is held out)"),
    # Before, this one was reported as a --batch-size error, against 0 training records.
    ("--eval-fraction", "0.999", "eval_fraction 0.999 leaves no training records in {data}")])
def test_too_little_training_data_is_refused_before_any_component(tmp_path, data_dir, capsys,
                                                                  flag, value, expected):
    out = tmp_path / "out"
    code, line = run(capsys, "--data-dir", str(data_dir), "--output-dir", str(out), flag, value)
    assert code == 2
    assert line == f"error: {flag} {value}: " + expected.format(data=data_dir)
    assert not out.exists()


@pytest.mark.parametrize("make", ["file", "file_above", "read_only"])
def test_output_dir_that_is_a_file_or_read_only(tmp_path, data_dir, victim, capsys, make):
    before = snapshot(victim)
    target = {"file": victim / "keep.txt", "file_above": victim / "keep.txt" / "out",
              "read_only": Path("/proc/1/cifar10-out")}[make]
    code, line = run(capsys, "--data-dir", str(data_dir), "--output-dir", str(target))
    assert code == 2 and line.startswith(f"error: --output-dir {target}: output_dir ")
    assert line.endswith({"file": "is an existing file, not a folder",
                          "file_above": f"is inside {victim / 'keep.txt'}, which is an existing "
                                        "file, not a folder",
                          "read_only": "would be created in /proc/1, which is not writable"}[make])
    assert snapshot(victim) == before


@pytest.mark.parametrize("name", ["out*", "out?", "out[1]"])
def test_glob_characters_in_output_dir_are_refused(tmp_path, data_dir, capsys, name):
    out = tmp_path / name
    code, line = run(capsys, "--data-dir", str(data_dir), "--output-dir", str(out))
    assert code == 2 and line.startswith(f"error: --output-dir {out}: output_dir holds a glob "
                                         "character (*, ? or [)")
    assert sorted(os.listdir(tmp_path)) == ["data"]


@pytest.mark.parametrize("tflite", ["same", "inside", "holding"])
def test_serving_and_tflite_folders_must_not_overlap(tmp_path, data_dir, capsys, tflite):
    serving = tmp_path / "models"
    tflite_dir = {"same": serving, "inside": serving / "tflite", "holding": tmp_path}[tflite]
    code, line = run(capsys, "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "o"),
                     "--serving-dir", str(serving), "--tflite-dir", str(tflite_dir))
    assert code == 2 and line.startswith(f"error: --tflite-dir {tflite_dir}: tflite_dir must be "
                                         "neither serving_dir nor inside it")
    # The same folders are fine when no .tflite is pushed.
    code, line = run(capsys, "--data-dir", str(tmp_path / "missing"), "--no-tflite",
                     "--serving-dir", str(serving), "--tflite-dir", str(tflite_dir))
    assert code == 1 and "does not hold cifar-10-batches-bin" in line


@pytest.mark.parametrize("flag, url", [
    ("--serving-dir", "s3://bucket/models"), ("--tflite-dir", "s3://bucket/tflite"),
    ("--output-dir", "gs://bucket/outputs"), ("--output-dir", "s3://bucket/outputs")])
def test_bucket_paths_are_refused_when_they_cannot_work_here(tmp_path, data_dir, capsys,
                                                             monkeypatch, flag, url):
    monkeypatch.chdir(tmp_path)
    code, line = run(capsys, "--data-dir", str(data_dir), flag, url)
    assert code == 2 and line.startswith(f"error: {flag} {url}: ")
    assert ("no filesystem for s3:// is installed here" in line if flag != "--output-dir"
            else "output_dir must be a local folder for a local run" in line)
    assert sorted(os.listdir(tmp_path)) == ["data"]  # no ./s3:/ or ./gs:/ folder


def test_gs_push_folders_stay_urls(tmp_path, capsys, monkeypatch):
    """gs:// has a TensorFlow filesystem: accepted, and never turned into ./gs:/bucket/models."""
    monkeypatch.chdir(tmp_path)
    code, line = run(capsys, "--data-dir", str(tmp_path / "nothing"), "--output-dir",
                     str(tmp_path / "o"), "--serving-dir", "gs://bucket/models",
                     "--tflite-dir", "gs://bucket/tflite")
    assert code == 1 and "does not hold cifar-10-batches-bin" in line  # flags passed
    assert sorted(os.listdir(tmp_path)) == []
    settings = dict(output_dir=str(tmp_path / "o"), serving_dir="gs://bucket/models")
    from cli import options

    assert options.build_config(local=True, **settings).serving_dir == "gs://bucket/models"


def test_corrupt_metadata_store_is_one_line_and_left_alone(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    store = out / contract.METADATA_FILE
    store.write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    before = snapshot(out)
    code, line = run(capsys, "--data-dir", str(data_dir), "--output-dir", str(out))
    assert code == 1
    assert line.startswith(f"error: {store} is not a usable ML Metadata database (")
    assert line.endswith("move it away to start a new store (the cache and run history start "
                         "over), or use another --output-dir")
    after = snapshot(out)
    after.pop(run_module.LOCK_FILE)
    assert after == before


def test_a_second_run_on_a_busy_output_dir_stops_at_once(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / run_module.LOCK_FILE, "w") as held:  # what a running run holds
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, line = run(capsys, "--data-dir", str(data_dir), "--output-dir", str(out))
    assert code == 1
    assert line == (f"error: {out} is in use by another run (process 4242 holds "
                    f"{out / run_module.LOCK_FILE}): wait for it to finish, or use another "
                    "--output-dir")
    assert sorted(os.listdir(out)) == [run_module.LOCK_FILE]


def test_the_lock_goes_with_a_crashed_run(tmp_path):
    """flock is the kernel's: a run killed with SIGKILL leaves no lock behind."""
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cli.run import lock_output_dir; "
         f"lock = lock_output_dir({str(out)!r}); print('locked', flush=True); time.sleep(60)"],
        cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(Exception, match="is in use by another run"):
            run_module.lock_output_dir(str(out))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    run_module.lock_output_dir(str(out)).close()


def test_report_to_a_file_is_one_line(tmp_path, victim, capsys):
    before = snapshot(victim)
    assert main(["report", "--output-dir", str(tmp_path), "--to", str(victim / "keep.txt")]) == 1
    _, err = capsys.readouterr()
    assert err.strip() == f"error: --to {victim / 'keep.txt'} is an existing file, not a folder"
    assert snapshot(victim) == before
    assert main(["report", "--output-dir", str(tmp_path), "--to", "/proc/1/report"]) == 1
    _, err = capsys.readouterr()
    assert err.strip() == ("error: --to /proc/1/report would be created in /proc/1, which is "
                           "not writable")


def _store_with_run_type(path: Path):
    """(a new ML Metadata store at `path`, the id of its pipeline-run context type)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    from reports import runs

    connection = pb.ConnectionConfig()
    connection.sqlite.filename_uri = str(path)
    store = metadata_store.MetadataStore(connection)
    return store, store.put_context_type(pb.ContextType(name=runs.PIPELINE_RUN_CONTEXT))


def test_the_summary_reads_its_own_runs_artifacts(tmp_path):
    """Two runs in one store: each run's outcome is its own push, not the newest in the store."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    from reports import runs

    path = str(tmp_path / contract.METADATA_FILE)
    store, run_type = _store_with_run_type(Path(path))
    pushed_type = store.put_artifact_type(pb.ArtifactType(name="PushedModel"))
    execution_type = store.put_execution_type(pb.ExecutionType(name="Pusher"))
    for run_id, version in (("run-a", 1), ("run-b", 2)):  # run-b pushes after run-a
        [context_id] = store.put_contexts([pb.Context(type_id=run_type, name=run_id)])
        pushed = pb.Artifact(type_id=pushed_type, uri=f"/p/{version}", state=pb.Artifact.LIVE)
        pushed.custom_properties[contract.PUSHED_PROPERTY].int_value = 1
        pushed.custom_properties[contract.PUSHED_VERSION_PROPERTY].int_value = version
        execution = pb.Execution(type_id=execution_type,
                                 last_known_state=pb.Execution.COMPLETE)
        store.put_execution(execution, [(pushed, pb.Event(type=pb.Event.OUTPUT))],
                            [pb.Context(id=context_id, type_id=run_type, name=run_id)])
    del store
    assert runs.latest_outcome(path, run_id="run-a").pushed_version == 1
    assert runs.latest_outcome(path, run_id="run-b").pushed_version == 2
    assert runs.latest_outcome(path).pushed_version == 2  # no run named: the newest


def test_the_report_lists_the_runs_own_dag_not_older_nodes(tmp_path):
    """A store keeps the nodes of every DAG it saw: a run records its own, so the report lists
    a node of its DAG that did not run, and not one that only an older DAG had."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    from reports import run_report, runs

    path = tmp_path / contract.METADATA_FILE
    store, run_type = _store_with_run_type(path)
    node_type = store.put_context_type(pb.ContextType(name=runs.NODE_CONTEXT))
    store.put_contexts([pb.Context(type_id=node_type, name=f"cifar10.{node}")
                        for node in ("latest_blessed_model_resolver", "Trainer", "Pusher")])
    [run_context] = store.put_contexts([pb.Context(type_id=run_type, name="run-a")])
    execution_type = store.put_execution_type(pb.ExecutionType(name="Trainer"))
    [trainer] = store.get_contexts_by_type(runs.NODE_CONTEXT)[1:2]
    store.put_execution(pb.Execution(type_id=execution_type,
                                     last_known_state=pb.Execution.COMPLETE), [],
                        [store.get_contexts_by_id([run_context])[0], trainer])
    del store

    def not_run() -> list[str]:
        view = runs.RunView(runs.open_store(str(path)), "run-a")
        return [row["node"] for row in run_report.component_rows(view)
                if row["state"] == "not run"]

    assert not_run() == ["latest_blessed_model_resolver", "Pusher"]  # no record: every node
    runs.record_run_nodes(str(path), ["run-a"], ["Trainer", "Pusher"])
    assert not_run() == ["Pusher"]


def test_a_run_stopped_inside_the_pusher_is_reported_as_such(tmp_path):
    """Ctrl-C marks the unfinished executions canceled (cli/interrupted.py): a run stopped in
    the Pusher may have published part of a version, which the report must not deny."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    from reports import document, run_report, runs

    path = tmp_path / contract.METADATA_FILE
    store, run_type = _store_with_run_type(path)
    node_type = store.put_context_type(pb.ContextType(name=runs.NODE_CONTEXT))
    [run_context] = store.put_contexts([pb.Context(type_id=run_type, name="run-a")])
    run = store.get_contexts_by_id([run_context])[0]
    for node, state in ((contract.EVALUATOR_NODE, pb.Execution.COMPLETE),
                        (contract.PUSHER_NODE, pb.Execution.CANCELED)):
        [node_context] = store.put_contexts([pb.Context(type_id=node_type,
                                                        name=f"cifar10.{node}")])
        execution_type = store.put_execution_type(pb.ExecutionType(name=node))
        store.put_execution(pb.Execution(type_id=execution_type, last_known_state=state), [],
                            [run, store.get_contexts_by_id([node_context])[0]])
    del store
    view = runs.RunView(runs.open_store(str(path)), "run-a")
    rows = run_report.component_rows(view)
    assert [row["note"] for row in rows if row["node"] == contract.PUSHER_NODE] == \
        ["never finished: the run was interrupted"]
    doc = document.Document()
    run_report.section_summary(doc, view, rows, str(path))
    assert "**Interrupted while pushing**" in document.to_markdown(doc)


def test_report_to_a_folder_the_kernel_refuses_is_one_line(tmp_path, capsys):
    """/proc passes the up-front check for root (access() says writable); os.makedirs then
    fails, and the line says what could not be done, not only the errno."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    store, run_type = _store_with_run_type(tmp_path / contract.METADATA_FILE)
    store.put_contexts([pb.Context(type_id=run_type, name="run-a")])
    del store
    assert main(["report", "--output-dir", str(tmp_path), "--to", "/proc/cifar10-report"]) == 1
    _, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(("error: cannot create the report folder /proc/cifar10-report: ",
                           "error: --to /proc/cifar10-report ")), err  # the latter: not root


def test_a_report_whose_artifact_folders_are_gone_says_so(tmp_path, capsys):
    """A moved or cleaned output dir: the report said "Blessed and pushed" above empty tables,
    and nothing told why."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    store, run_type = _store_with_run_type(tmp_path / contract.METADATA_FILE)
    [run_id] = store.put_contexts([pb.Context(type_id=run_type, name="run-a")])
    kept, gone = tmp_path / "kept", tmp_path / "moved" / "examples"
    kept.mkdir()
    artifact_type = store.put_artifact_type(pb.ArtifactType(name="Examples"))
    execution_type = store.put_execution_type(pb.ExecutionType(name="ExampleGen"))
    for uri, state in ((kept, pb.Execution.COMPLETE), (gone, pb.Execution.CACHED),
                       (tmp_path / "never_written", pb.Execution.CANCELED)):
        store.put_execution(pb.Execution(type_id=execution_type, last_known_state=state),
                            [(pb.Artifact(type_id=artifact_type, uri=str(uri)),
                              pb.Event(type=pb.Event.OUTPUT))],
                            [pb.Context(id=run_id, type_id=run_type, name="run-a")])
    del store
    assert main(["report", "--output-dir", str(tmp_path), "--to", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == (f"warning: 1 of the run's artifact folders are gone (first: {gone}); "
                           "the report lacks what they held")
    assert (f"**1 of the run's 2 artifact folders are gone** (first: `{gone}`)"
            in (tmp_path / "r" / "report.md").read_text())


def test_a_bucket_data_dir_is_refused_not_made_local(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, line = run(capsys, "--data-dir", "gs://bucket/cifar10", "--output-dir",
                     str(tmp_path / "o"))
    assert code == 1 and line.startswith("error: --data-dir gs://bucket/cifar10: a local run "
                                         "reads the data from a local folder")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("extra", [[], ["--list-runs"]])
def test_report_on_a_corrupt_metadata_store_is_one_line(tmp_path, capsys, extra):
    store = tmp_path / contract.METADATA_FILE
    store.write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    assert main(["report", "--output-dir", str(tmp_path), *extra]) == 1
    _, err = capsys.readouterr()
    assert err.startswith(f"error: {store} is not a usable ML Metadata database (")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert store.read_bytes() == b"SQLite format 3\0" + b"\xff" * 4000


def _sqlite_with(path: Path, *statements: str) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


@pytest.mark.parametrize("extra", [[], ["--list-runs"]])
def test_report_on_a_database_that_is_not_ml_metadata_is_one_line(tmp_path, capsys, extra):
    """Sound SQLite that ML Metadata cannot open read-only: a traceback from inside MLMD."""
    store = tmp_path / contract.METADATA_FILE
    _sqlite_with(store, "CREATE TABLE photos (name TEXT)")
    assert main(["report", "--output-dir", str(tmp_path), *extra]) == 1
    _, err = capsys.readouterr()
    assert err.strip() == (
        f"error: {store} is not a usable ML Metadata database (a SQLite database without ML "
        "Metadata's Artifact, Context, Event, Execution, MLMDEnv, Type tables): move it away to "
        "start a new store (the cache and run history start over), or use another --output-dir")

    # Created and never written, or SQLite without a table: no run yet, not an error of the file.
    for empty in (lambda: store.write_bytes(b""),
                  lambda: _sqlite_with(store, "CREATE TABLE t (x)", "DROP TABLE t")):
        empty()
        assert main(["report", "--output-dir", str(tmp_path), *extra]) == 1
        _, err = capsys.readouterr()
        assert err.strip() == (f"error: No pipeline run in {store} yet (an empty ML Metadata "
                               "database); run the pipeline first.")


def test_a_store_missing_one_of_its_tables_is_refused_by_the_run(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    store = out / contract.METADATA_FILE
    _sqlite_with(store, *(f"CREATE TABLE {table} (id INTEGER)"
                          for table in ("Type", "Artifact", "Context", "Event", "MLMDEnv")))
    code, line = run(capsys, "--data-dir", str(data_dir), "--output-dir", str(out))
    assert code == 1
    assert line.startswith(f"error: {store} is not a usable ML Metadata database (a SQLite "
                           "database without ML Metadata's Execution table): ")
    assert sorted(os.listdir(out)) == [run_module.LOCK_FILE, contract.METADATA_FILE]


def test_an_empty_store_file_is_a_new_store_to_the_run(tmp_path):
    """A zero-byte metadata.sqlite (touched, or left by a crash at creation), or one that SQLite
    wrote no table into, holds no run."""
    store = tmp_path / contract.METADATA_FILE
    store.write_bytes(b"")
    assert run_module._run_ids(str(store)) == []  # noqa: SLF001
    _sqlite_with(store, "PRAGMA user_version = 1")
    assert store.stat().st_size > 0
    assert run_module._run_ids(str(store)) == []  # noqa: SLF001


def test_a_ctrl_c_that_python_drops_is_raised_again(capsys):
    """Ctrl-C landing in a __del__ (or a weakref callback) is dropped by Python with an
    "Exception ignored" traceback; the run's guard raises it again, silently (issue #16)."""
    import signal
    import time

    from cli.interrupted import InterruptGuard

    class Collected:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # the handler runs here, inside __del__
            sum(range(1000))

    # A terminal's Python has this handler; a process started in the background (a CI job, an
    # xdist worker) may begin with SIGINT ignored instead.
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    reached = None
    try:
        with pytest.raises(KeyboardInterrupt):
            with InterruptGuard():
                Collected()  # collected at once: the interrupt is raised inside __del__, dropped
                reached = time.monotonic()
                while time.monotonic() - reached < 5:
                    time.sleep(0.05)
        assert reached is not None  # the first interrupt was indeed dropped, the second was not
        assert "Exception ignored" not in capsys.readouterr().err
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    finally:
        signal.signal(signal.SIGINT, found)


def test_a_thread_the_stopped_run_left_behind_fails_quietly_after_the_guard():
    """Beam's `run_worker` thread raises once it reaps a worker the guard stopped, which can be
    after the guard has closed: its traceback came out after the run's one line (CI, stop 32).
    Its data-plane reader logs the stream the stop broke ("Failed to read inputs in the data
    plane." and a gRPC traceback, seen by hand). A thread that was there before the guard still
    reports its failure, and logs."""
    import threading

    from cli.interrupted import InterruptGuard

    release = threading.Event()
    reported: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reported.append(f"logged by {record.threadName}")

    def fails_later() -> None:
        release.wait(30)
        logging.getLogger("apache_beam.runners.worker.data_plane").error("Failed to read inputs")
        raise RuntimeError("Worker subprocess exited with return code -15")

    hook = threading.excepthook
    threading.excepthook = lambda args: reported.append(args.thread.name)
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    threads = [threading.Thread(target=fails_later, name="older")]
    recorder = Recorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    try:
        threads[0].start()
        with pytest.raises(KeyboardInterrupt):
            with InterruptGuard():
                threads.append(threading.Thread(target=fails_later, name="run_worker"))
                threads[1].start()
                signal.raise_signal(signal.SIGINT)
        release.set()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(reported) == ["logged by older", "older"]
        logging.getLogger("apache_beam").error("after the run")  # the main thread's still pass
        assert reported[-1] == "logged by MainThread"
    finally:
        release.set()
        signal.signal(signal.SIGINT, found)
        threading.excepthook = hook
        root.removeHandler(recorder)


def test_beam_workers_leave_ctrl_c_to_the_run_from_their_first_instant(monkeypatch):
    """Issue #16: the DirectRunner's worker processes, in the terminal's process group, printed
    a traceback each on Ctrl-C, for seconds while they imported Beam. With the run's PYTHONPATH
    they ignore SIGINT from start-up (before any import of theirs), and no other process does."""
    from cli import interrupted

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    interrupted.ignore_ctrl_c_in_beam_workers()
    interrupted.ignore_ctrl_c_in_beam_workers()  # once only
    assert os.environ["PYTHONPATH"] == os.pathsep.join([interrupted.BEAM_WORKER_SITE,
                                                        "/elsewhere"])

    def ignores_sigint(*command: str) -> bool:
        # SIGINT as a terminal's foreground job has it (a background shell job ignores it).
        process = subprocess.Popen([sys.executable, *command], stderr=subprocess.DEVNULL,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            time.sleep(0.5)  # Beam's own imports take seconds; the site module runs first
            status = Path(f"/proc/{process.pid}/status").read_text().splitlines()
            mask = int(next(line for line in status if line.startswith("SigIgn:")).split()[1], 16)
            return bool(mask & (1 << (signal.SIGINT - 1)))
        finally:
            process.kill()
            process.wait()

    assert ignores_sigint("-m", interrupted.BEAM_SDK_WORKER)
    assert not ignores_sigint("-c", "import time; time.sleep(60)")


def test_stopping_beam_workers_ends_them_and_nothing_else():
    """On Ctrl-C the guard ends this process's Beam SDK workers (SIGTERM, no traceback); any
    other child is not its business."""
    from cli import interrupted

    sleep = "import time; time.sleep(60)"
    worker = subprocess.Popen([sys.executable, "-c", sleep, "-m", interrupted.BEAM_SDK_WORKER])
    other = subprocess.Popen([sys.executable, "-c", sleep])
    try:
        assert interrupted.stop_beam_workers(timeout_s=10) == 1
        assert worker.wait(timeout=10) == -signal.SIGTERM
        assert other.poll() is None
    finally:
        for process in (worker, other):
            process.kill()
            process.wait()


def test_a_misspelled_setting_in_the_environment_is_named(tmp_path, data_dir, capsys,
                                                          monkeypatch):
    """CIFAR10_NO_TUNE and CIFAR10_EPOCH are read by nothing: each gets one warning line with the
    variable that would work, before the flags are checked."""
    monkeypatch.setenv("CIFAR10_NO_TUNE", "1")
    monkeypatch.setenv("CIFAR10_EPOCH", "2")
    monkeypatch.setenv("CIFAR10_IMAGE", "registry/cifar10:1")  # compile-kfp's: no warning
    assert main(["run", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"),
                 "--epochs", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [
        "warning: CIFAR10_EPOCH is not a setting and is ignored; did you mean CIFAR10_EPOCHS?",
        "warning: CIFAR10_NO_TUNE is not a setting and is ignored; did you mean "
        "CIFAR10_TUNE=false?"]
    assert "epochs" in err[2] and len(err) == 3


def test_sigterm_stops_the_run_as_ctrl_c_does():
    """`timeout`, `docker stop` and systemd send SIGTERM: the guard takes it as a Ctrl-C (the
    run's cleanup and one line follow), records which signal came, and gives SIGTERM back."""
    from cli.interrupted import InterruptGuard

    before = signal.getsignal(signal.SIGTERM)
    guard = InterruptGuard()
    with pytest.raises(KeyboardInterrupt):
        with guard:
            signal.raise_signal(signal.SIGTERM)
    assert guard.signal_number == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_missing_batch_file_is_named(tmp_path, data_dir, capsys):
    """The ExampleGen reads whichever of data_batch_1..5.bin there are: one lost file trained
    on 4/5 of the data without a word."""
    (data_dir / contract.BATCHES_DIR / contract.TRAIN_BATCH_FILES[-1]).unlink()
    assert main(["run", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"error: {data_dir / contract.BATCHES_DIR} lacks data_batch_5.bin: the "
                    "official archive unpacks data_batch_1.bin to data_batch_5.bin and "
                    "test_batch.bin.")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value, expected", [
    ("0", "error: CIFAR10_EPOCHS=0: epochs must be at least 1"),
    ("ten", "error: environment variable CIFAR10_EPOCHS: invalid int value: 'ten' (see --help)")])
def test_a_bad_value_from_the_environment_names_the_variable(tmp_path, data_dir, capsys,
                                                             monkeypatch, value, expected):
    """Under `tfx run create` nobody typed --epochs: the message names what was set."""
    monkeypatch.setenv("CIFAR10_EPOCHS", value)
    assert main(["run", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [expected]
