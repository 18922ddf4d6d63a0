"""`cifar10-tfx run`: the pipeline on this machine (LocalDagRunner, SQLite ML Metadata, Beam).

    cifar10-tfx run --data-dir ~/.cache/cifar10          # data already unpacked there
    cifar10-tfx run                                      # downloads the official archive

Re-running reuses every cached component whose inputs did not change (ML Metadata), so a killed
run picks up where it stopped. Ends by printing where the model went and its test accuracy.
"""
from __future__ import annotations

import difflib
import fcntl
import os
import signal
import sys
import traceback
from typing import IO, Any

import click

from cli import interrupted, logs, options
from cli.core import EXIT_INTERRUPTED, Command, Failure, Option
from modules import contract, urls
from pipeline import beam, configs

LOCATIONS = "locations"
TRAINING = "training and evaluation"
BEAM = "Apache Beam and logs"
# Every flag of `run` can come from the environment as CIFAR10_<FLAG> (CIFAR10_DATA_DIR,
# CIFAR10_EPOCHS, ...): how settings reach local_runner.py when the tfx CLI starts it bare.
ENV_PREFIX = "CIFAR10"


def resolve_data_dir(data_dir: str | None, download_dir: str) -> str:
    """The folder that holds cifar-10-batches-bin/, downloading the official archive if needed."""
    if data_dir and urls.is_url(data_dir):  # never ./gs:/bucket/data
        raise Failure(f"--data-dir {data_dir}: a local run reads the data from a local folder; "
                      "copy it here first (gsutil cp -r, or cifar10-tfx download)")
    if data_dir:
        data_dir = os.path.abspath(os.path.expanduser(data_dir))
        if os.path.basename(data_dir.rstrip("/")) == contract.BATCHES_DIR:
            data_dir = os.path.dirname(data_dir.rstrip("/"))
        batches = os.path.join(data_dir, contract.BATCHES_DIR)
        if not os.path.isdir(batches):
            raise Failure(f"{data_dir} does not hold {contract.BATCHES_DIR}/ (the unpacked "
                          f"official cifar-10-binary.tar.gz).")
        # The ExampleGen reads whichever of data_batch_1..5.bin there are: a lost file would
        # train on less data without a word.
        missing = [name for name in (*contract.TRAIN_BATCH_FILES, contract.TEST_BATCH_FILE)
                   if not os.path.isfile(os.path.join(batches, name))]
        if missing:
            raise Failure(f"{batches} lacks {', '.join(missing)}: the official archive unpacks "
                          f"{contract.TRAIN_BATCH_FILES[0]} to {contract.TRAIN_BATCH_FILES[-1]} "
                          f"and {contract.TEST_BATCH_FILE}.")
        print(f"Using the CIFAR-10 data in {data_dir} (--data-dir); nothing is downloaded.")
        return data_dir
    from dataset import download

    download_dir = os.path.abspath(os.path.expanduser(download_dir))
    try:
        batches = download.download_cifar10(download_dir)
    except download.DownloadError as error:
        unverified = os.path.join(download_dir, contract.BATCHES_DIR)
        if os.path.isdir(unverified):  # e.g. built from a local copy: not a verified download
            raise Failure(f"{error} {download_dir} already holds {contract.BATCHES_DIR}/, not "
                          f"from a verified download: to use it, pass --data-dir "
                          f"{download_dir}.") from None
        raise Failure(str(error)) from None
    return os.path.dirname(batches)


def tfx_cli_is_exporting() -> bool:
    """True while `tfx pipeline create|update|compile --engine local` reads the pipeline.

    That CLI executes local_runner.py inside its own process with LocalDagRunner.run replaced by a
    stub that only records the pipeline: nothing runs, so there is nothing to download first and
    no metadata to read after. `tfx run create` starts a plain `python local_runner.py` instead,
    where this is False and the run is real.
    """
    return "tfx.tools.cli.handler.base_handler" in sys.modules


def export_for_tfx_cli(config: configs.PipelineConfig) -> int:
    """Hands the DAG to `tfx pipeline create|update`: no download, no lock, no metadata read."""
    from tfx import v1 as tfx

    from pipeline import pipeline

    dag = pipeline.create_pipeline(
        config, tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))
    tfx.orchestration.LocalDagRunner().run(dag)  # the CLI's stub: records the pipeline only
    print(f"Pipeline {config.pipeline_name} handed to the tfx CLI; `tfx run create --engine local "
          f"--pipeline_name {config.pipeline_name}` runs it (settings: CIFAR10_<FLAG> variables).")
    return 0


LOCK_FILE = contract.RUN_LOCK_FILE  # in --output-dir: held (flock) for as long as a run lives


def lock_output_dir(output_dir: str) -> IO[str]:
    """An exclusive lock on the output folder, or a Failure naming the run that holds it.

    flock: the kernel drops it when the process ends, however it ends (a crash, kill -9), so a
    stale lock file never blocks the next run. Keep the returned file open while running.
    """
    path = os.path.join(output_dir, LOCK_FILE)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until the run ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise Failure(f"{output_dir} is in use by another run (process {holder} holds {path}): "
                      "wait for it to finish, or use another --output-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


UNREADABLE = -1  # _served_version of a base path it cannot read


def _served_version(serving_dir: str) -> int:
    """The version served from the base path now: 0 when none is, UNREADABLE when it cannot be
    read (only for a message: the push itself says what is wrong)."""
    from serving import model_base

    try:
        return model_base.served_version(serving_dir) or 0
    except Exception:  # noqa: BLE001
        return UNREADABLE


def _run_ids(metadata_path: str) -> list[str]:
    """The pipeline run ids already in the store, oldest first."""
    from reports import runs

    try:
        store = runs.open_store(metadata_path)
    except FileNotFoundError:  # none yet, or an empty file the run's store starts in
        return []
    return [context.name for context in runs.pipeline_runs(store)]


def run_pipeline(config: configs.PipelineConfig, verbose: bool = False) -> int:
    """Runs the DAG and prints the outcome; returns a process exit code."""
    try:
        os.makedirs(config.output_dir, exist_ok=True)
    except OSError as error:  # validate() checked; another process may have raced us
        raise Failure(f"cannot create --output-dir {config.output_dir}: {error.strerror}") \
            from None
    lock = lock_output_dir(config.output_dir)
    try:
        return _run_locked(config, verbose)
    finally:
        lock.close()


def _run_locked(config: configs.PipelineConfig, verbose: bool) -> int:
    problem = configs.metadata_problem(config.metadata_path)
    if problem:
        raise Failure(problem)
    from tfx import v1 as tfx

    from pipeline import baselines, pipeline
    from reports import runs

    earlier = set(_run_ids(config.metadata_path))
    served_before = _served_version(config.serving_dir)
    # Beam's worker processes leave Ctrl-C to the guard, which stops them (cli/interrupted.py).
    interrupted.ignore_ctrl_c_in_beam_workers()
    dag = pipeline.create_pipeline(
        config, tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))
    guard = interrupted.InterruptGuard()
    nodes: list[str] = []  # the DAG's, recorded with the run (outside the guard, as it ends)
    try:
        with guard:
            # run_with_ir: the served-model baseline must not come from the cache
            ir = baselines.local_ir(dag)
            nodes = [node.pipeline_node.node_info.id for node in ir.nodes]
            tfx.orchestration.LocalDagRunner().run_with_ir(ir)
    except KeyboardInterrupt:
        guard.caught()
        # A supervisor's second SIGTERM must not cut the cleanup of the store short.
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _record_dag(config.metadata_path, earlier, nodes)
            interrupted.clean_up(config, earlier)
        finally:
            signal.signal(signal.SIGTERM, previous)
        served_now = _served_version(config.serving_dir)
        appeared = served_before != UNREADABLE and served_now > max(served_before, 0)
        what = (f"version {served_now} appeared in {config.serving_dir} meanwhile (this run's "
                f"push, or another run's)" if appeared else "nothing was pushed by this run")
        completed = ", and a push of this run's model is completed" if appeared else ""
        print(f"\ninterrupted: {what}; run the same command again to resume (finished "
              f"components are reused from {config.metadata_path}{completed})", file=sys.stderr)
        # 130 for Ctrl-C; 143 for SIGTERM, as a process that a SIGTERM ended reports to a shell
        return EXIT_INTERRUPTED - signal.SIGINT + (guard.signal_number or signal.SIGINT)
    except Exception as error:  # a component failed: say which and why, without the traceback
        _record_dag(config.metadata_path, earlier, nodes)
        if verbose:
            traceback.print_exc()
        print(f"\nerror: the pipeline stopped: {error}", file=sys.stderr)
        print(f"Nothing was pushed by this run. Logs and artifacts: {config.pipeline_root}",
              file=sys.stderr)
        return 1
    # This run's own verdict: a store can hold other runs (and other runs' newer artifacts).
    _record_dag(config.metadata_path, earlier, nodes)
    ours = [run_id for run_id in _run_ids(config.metadata_path) if run_id not in earlier]
    outcome = runs.latest_outcome(config.metadata_path, run_id=ours[-1] if ours else None)
    accuracy = "n/a" if outcome.test_accuracy is None else f"{outcome.test_accuracy:.2%}"
    print(f"\nTest accuracy: {accuracy} (threshold {config.accuracy_threshold:.0%})")
    if outcome.pushed:
        print(f"Blessed; version {outcome.pushed_version} already serves this model, so nothing "
              f"new was pushed:" if outcome.already_served else
              f"Blessed and pushed version {outcome.pushed_version}:")
        print(f"  SavedModel (TF Serving base path {config.serving_dir}): {outcome.serving_path}")
        if outcome.tflite_path:
            print(f"  TFLite: {outcome.tflite_path}")
    elif outcome.superseded_by:
        print(f"Blessed, but {config.serving_dir} serves version {outcome.superseded_by} now, "
              f"not the version this run took as its baseline ({outcome.superseded_cause}), so "
              f"nothing was pushed: run the same command again to evaluate it against that "
              f"version.")
    else:
        print(f"Not blessed: nothing was pushed. Evaluation: {outcome.evaluation_uri}")
    print(f"ML Metadata: {config.metadata_path}")
    return 0


def _record_dag(metadata_path: str, earlier_runs: set[str], nodes: list[str]) -> None:
    """Records this run's DAG in the store, so its report tells a node of the DAG that did not
    run from one only an older DAG had. Best effort: a report without it lists every node."""
    from reports import runs

    try:
        new_runs = [run_id for run_id in _run_ids(metadata_path) if run_id not in earlier_runs]
        runs.record_run_nodes(metadata_path, new_runs, nodes)
    except Exception as error:  # noqa: BLE001 (the run's own outcome matters more)
        print(f"warning: could not record the run's nodes in {metadata_path}: {error}",
              file=sys.stderr)


def misspelled_env_vars(command: click.Command, environ: dict[str, str]) -> list[str]:
    """Warnings for CIFAR10_* variables that no command reads and that look like one of this
    command's settings: they are ignored, and a run with a setting silently lost costs an hour."""
    from cli.kubeflow import ENV_VARS  # compile-kfp's own variables, which may be exported too

    own = {f"{ENV_PREFIX}_{param.name.upper()}": param for param in command.params
           if isinstance(param, click.Option) and param.name}
    prefix, negation = f"{ENV_PREFIX}_", f"{ENV_PREFIX}_NO_"
    warnings = []
    for name in sorted(environ):
        if not name.startswith(prefix) or name in own or name in ENV_VARS.values():
            continue
        flag = prefix + name.removeprefix(negation)
        if name.startswith(negation) and flag in own and own[flag].secondary_opts:
            hint = f"{flag}=false"  # --tune/--no-tune reads CIFAR10_TUNE
        else:  # compared without the prefix, which every name shares
            close = difflib.get_close_matches(name.removeprefix(prefix),
                                              [o.removeprefix(prefix) for o in own], n=1,
                                              cutoff=0.8)
            hint = prefix + close[0] if close else ""
        if hint:
            warnings.append(f"warning: {name} is not a setting and is ignored; did you mean "
                            f"{hint}?")
    return warnings


def _location(*args: Any, **kwargs: Any):
    return click.option(*args, cls=Option, section=LOCATIONS, **kwargs)


@click.command("run", cls=Command, context_settings={"auto_envvar_prefix": ENV_PREFIX},
               help="Run the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, "
                    "Beam DirectRunner. Re-running reuses every cached component whose inputs "
                    "did not change, so a killed run picks up where it stopped.",
               short_help="run the pipeline on this machine (LocalDagRunner)")
@_location("--data-dir", help=f"folder holding {contract.BATCHES_DIR}/ (or that folder itself); "
           "if omitted, the official archive is downloaded to --download-dir")
@_location("--download-dir", default=contract.DEFAULT_DATA_DIR)
@_location("--output-dir", default=options.default("output_dir"),
           help=f"pipeline root, {contract.METADATA_FILE} and pushed models go here")
@_location("--serving-dir", help="TF Serving model base path "
           f"(default <output-dir>/{contract.SERVING_BASE_DIR})")
@_location("--tflite-dir",
           help=f"where .tflite versions go (default <output-dir>/{contract.TFLITE_BASE_DIR})")
@options.training_options(TRAINING)
@options.beam_options(BEAM, "DirectRunner worker processes (0: one per core, 1: in-process)",
                      "a Beam pipeline argument, repeatable (e.g. "
                      "--beam-arg=--runner=FlinkRunner)")
@options.portable_options(BEAM)
@click.option("--verbose", cls=Option, section=BEAM, is_flag=True,
              help="show TensorFlow, TFX and Beam logs")
def run_command(data_dir: str | None, download_dir: str, output_dir: str,
                serving_dir: str | None, tflite_dir: str | None, beam_workers: int,
                beam_arg: tuple[str, ...], beam_runner: str, job_endpoint: str | None,
                environment_config: str | None, verbose: bool, **training: Any) -> int:
    for warning in misspelled_env_vars(click.get_current_context().command, dict(os.environ)):
        print(warning, file=sys.stderr)
    # Every flag is checked, together, before anything is downloaded or run. Path flags go
    # through options.absolute: gs://bucket/models must never become ./gs:/bucket/models.
    settings = dict(output_dir=options.absolute(output_dir),
                    serving_dir=options.absolute(serving_dir),
                    tflite_dir=options.absolute(tflite_dir),
                    beam_workers=beam_workers,
                    beam_args=options.local_beam_args(beam_runner, job_endpoint,
                                                      environment_config, tuple(beam_arg)),
                    **options.training_settings(training))
    # Where the data will be (checked against --batch-size when it is already there).
    planned_root = (options.absolute(data_dir) if data_dir
                    else options.absolute(download_dir))
    if planned_root and os.path.basename(planned_root.rstrip("/")) == contract.BATCHES_DIR:
        planned_root = os.path.dirname(planned_root.rstrip("/"))
    options.build_config(local=True, data_root=planned_root, **settings)
    logs.configure(verbose=verbose)
    if tfx_cli_is_exporting():
        return export_for_tfx_cli(options.build_config(local=True, data_root=planned_root,
                                                       **settings))
    # A job server or worker pool nobody answers on: say so now, not as a deadline minutes in.
    unreachable = beam.unreachable_endpoints(settings["beam_args"])
    if unreachable:
        raise Failure("; ".join(unreachable) + " (start it, or fix --job-endpoint / "
                      "--environment-config)")
    data_root = resolve_data_dir(data_dir, download_dir)
    return run_pipeline(options.build_config(local=True, data_root=data_root, **settings),
                        verbose=verbose)
