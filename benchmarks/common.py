"""What the issue benchmarks (batch_inference.py, scale_out.py) share, once: where a run's files
go, a timed pipeline run with the machine's load beside it, and writing the JSON and the page
rendered from it. Their flags and the pipeline run itself are run_benchmark.py's.

The cores of the hosts these run on are shared, so every timing carries the load average around
it; the machine itself is described by run_benchmark.machine_description alone.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence

from benchmarks import run_benchmark

PROJECT_DIR = run_benchmark.PROJECT_DIR
RESULTS_HELP = "where the page and JSON go (default benchmarks/, or the output dir with --fast)"


def run_dirs(args: argparse.Namespace, name: str) -> tuple[str, str]:
    """(output dir, results dir): benchmarks/runs/NAME[_fast] and benchmarks/ by default; a fast
    run keeps its results beside its outputs, so CI never overwrites the published page."""
    output_dir = os.path.abspath(args.output_dir or os.path.join(
        PROJECT_DIR, "benchmarks", "runs", name + ("_fast" if args.fast else "")))
    results_dir = os.path.abspath(args.results_dir or (
        output_dir if args.fast else os.path.join(PROJECT_DIR, "benchmarks")))
    return output_dir, results_dir


def invocation(script: str, argv: Sequence[str] | None) -> str:
    """The command line a reader can rerun, as the page shows it."""
    return shlex.join(["python", f"benchmarks/{script}",
                       *(sys.argv[1:] if argv is None else argv)])


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages: the cores are shared, so every number carries them."""
    return [round(x, 2) for x in os.getloadavg()]


@contextlib.contextmanager
def measured(record: dict) -> Iterator[dict]:
    """Fills `record` with the wall seconds and the load before and after the block."""
    record["load_before"] = load_average()
    start = time.perf_counter()
    try:
        yield record
    finally:
        record["seconds"] = round(time.perf_counter() - start, 3)
        record["load_after"] = load_average()


def timed_pipeline(data_dir: str, fast: bool, pipeline_args: list[str],
                   output_dir: str) -> dict:
    """One local_runner.py run (run_benchmark.run_pipeline), timed with the load around it."""
    record: dict = {}
    namespace = argparse.Namespace(data_dir=data_dir, fast=fast, pipeline_args=pipeline_args)
    with measured(record):
        command, _ = run_benchmark.run_pipeline(namespace, output_dir)
    record["command"] = shlex.join(command[1:])
    return record


def load_text(record: dict) -> str:
    """'before → after' of the 1-minute load of a `measured` record; '-' when not measured."""
    from reports import benchmark_page

    return benchmark_page.load_text(record)


def machine_line(machine: dict) -> str:
    """run_benchmark.machine_description's dict as one phrase of a page."""
    from reports import benchmark_page

    return benchmark_page.machine_text(machine)


def read_json(results_dir: str, name: str) -> dict:
    with open(os.path.join(results_dir, name)) as f:
        return json.load(f)


def write_json(report: dict, results_dir: str, name: str) -> str:
    """The raw figures, sorted and indented so that a rerun diffs cleanly."""
    path = os.path.join(results_dir, name)
    with open(path, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def write_page(text: str, results_dir: str, name: str) -> str:
    path = os.path.join(results_dir, name)
    with open(path, "w") as f:
        f.write(text)
    print(f"Wrote {path}")
    return path
