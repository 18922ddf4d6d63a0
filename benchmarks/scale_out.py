"""Issue #15's benchmarks: the Beam stages on Beam's portable runner vs. the DirectRunner, and the
Trainer on 2 MultiWorkerMirroredStrategy workers vs. 1.

    python benchmarks/scale_out.py beam --data-dir ~/.cache/cifar10       # the Beam stages
    python benchmarks/scale_out.py trainer --data-dir ~/.cache/cifar10    # 1 vs. 2 workers
    python benchmarks/scale_out.py all --data-dir ~/.cache/cifar10        # both
    python benchmarks/scale_out.py all --data-dir SMALL_FIXTURE --fast    # CI: proves it works

`beam` runs the whole pipeline (a short Trainer: the Evaluator only needs a model) on the
DirectRunner and on `--beam-runner portable` against Beam's own job service and SDK worker pool
(benchmarks/local_cluster/beam_services.py: real processes on free ports, what a Flink or Spark
job server and its worker-pool sidecars are), and compares each Beam component's wall time from
ML Metadata. `trainer` runs TFX's Trainer executor in 1 and in 2 worker processes
(benchmarks/local_cluster/multi_worker.py) on the same Transform output for two step counts, so
that the images per second of training come from the difference and exclude start-up, the
in-memory cache fill, validation and the export. Each part rewrites its section of
scale_out.json, and SCALE_OUT.md is rendered from the whole file.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_DIR)

from benchmarks import common, run_benchmark  # noqa: E402
from pipeline import beam as beam_lib  # noqa: E402
from reports.document import Document  # noqa: E402

PAGE = "SCALE_OUT.md"
JSON = "scale_out.json"
# The Trainer only has to hand the Evaluator a model: its time is not compared.
BEAM_PIPELINE_ARGS = ["--epochs", "1", "--steps-per-epoch", "20", "--no-tune", "--no-tflite",
                      "--accuracy-threshold", "0", "--no-cache"]
FAST_BEAM_PIPELINE_ARGS = ["--steps-per-epoch", "4"]
# 0: one DirectRunner process per core (the default); 1: in-process, one worker, which is what
# Beam's local job service gives a job (its FnApiRunner runs one SDK harness).
DIRECT_WORKERS, FAST_DIRECT_WORKERS = (0, 1), (1,)
BEAM_NODES = ("Cifar10ExampleGen", "StatisticsGen", "ExampleValidator", "Transform", "Evaluator")
# Global batch (what the dataset is batched at; the strategy splits it across the replicas).
TRAINER_BATCH, TRAINER_STEPS = 256, (10, 40)
FAST_TRAINER_BATCH, FAST_TRAINER_STEPS = 16, (1, 3)
TRAINER_TIMEOUT_S = 1800


PARTS = ("beam", "trainer", "all", "render")


@click.command("scale_out.py", context_settings=run_benchmark.CONTEXT_SETTINGS,
               help=run_benchmark.description(
                   __doc__, f"PART, one of {', '.join(PARTS)}; render: only rewrite the page "
                   "from the JSON (with --note)."))
@click.argument("part", type=click.Choice(PARTS), metavar="PART")
@run_benchmark.run_options("run folders (default benchmarks/runs/scale_out[_fast])",
                           common.RESULTS_HELP)
@click.option("--note", multiple=True,
              help="a line about the conditions of this run, kept in the JSON and the page")
@click.option("--workers", type=int, multiple=True, default=[1, 2],
              help="Trainer cluster sizes to compare, one per --workers (default: 1 2)")
def scale_out_command(**flags: Any) -> argparse.Namespace:
    """The flags; main() does the work."""
    return argparse.Namespace(**{**flags, "note": list(flags["note"]),
                                 "workers": list(flags["workers"])})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return run_benchmark.parse(scale_out_command, argv)


# ---------------------------------------------------------------------------------------------
# Beam: DirectRunner vs. the portable runner.

def run_beam(args: argparse.Namespace, output_dir: str) -> dict:
    from benchmarks.local_cluster.beam_services import start_beam_services
    from modules import contract

    extra = [*BEAM_PIPELINE_ARGS, *(FAST_BEAM_PIPELINE_ARGS if args.fast else [])]
    paths: dict = {}
    for workers in FAST_DIRECT_WORKERS if args.fast else DIRECT_WORKERS:
        name = f"direct_{workers}"
        paths[name] = _pipeline(args, os.path.join(output_dir, name),
                                [*extra, "--beam-workers", str(workers)])
        paths[name]["beam_workers"] = workers
    log_dir = Path(output_dir) / "beam_services"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    services = start_beam_services(log_dir)
    try:
        paths["portable"] = _pipeline(args, os.path.join(output_dir, "portable"), [
            *extra, "--beam-runner", "portable", "--job-endpoint", services.job_endpoint,
            "--environment-config", services.worker_pool])
    except BaseException:
        print(services.explain(), file=sys.stderr)
        raise
    finally:
        services.stop()
    paths["portable"]["services"] = {"job_endpoint": services.job_endpoint,
                                     "worker_pool": services.worker_pool}
    jobs_done = (log_dir / "job_service.log").read_text(errors="replace").count("with state DONE")
    paths["portable"]["jobs_done_on_job_service"] = jobs_done
    ratios = {}
    for name in paths:
        if name == "portable":
            continue
        ratios[f"portable / {name}"] = {
            node: paths["portable"]["component_seconds"][node] / paths[name]["component_seconds"][
                node] for node in [*BEAM_NODES, "beam_total"]
            if paths[name]["component_seconds"].get(node)}
    direct_dir = os.path.join(output_dir, next(iter(paths)))  # reused by the Trainer part
    return {"date": common.now_utc(), "pipeline_args": extra, "paths": paths, "ratios": ratios,
            "examples_uri": _output_uri(direct_dir, contract.EXAMPLE_GEN_NODE, "examples"),
            "transform_graph_uri": _output_uri(direct_dir, contract.TRANSFORM_NODE,
                                               "transform_graph")}


def _pipeline(args: argparse.Namespace, output_dir: str, extra: list[str]) -> dict:
    """One local_runner.py run, timed, its components' times from ML Metadata."""
    from modules import contract

    record = common.timed_pipeline(args.data_dir, args.fast, extra, output_dir)
    seconds = run_benchmark.component_wall_seconds(
        os.path.join(output_dir, contract.METADATA_FILE))
    seconds["beam_total"] = sum(seconds.get(node, 0.0) for node in BEAM_NODES)
    record["component_seconds"] = seconds
    return record


def _output_uri(output_dir: str, node: str, key: str) -> str:
    from modules import contract
    from reports import runs

    store = runs.open_store(os.path.join(output_dir, contract.METADATA_FILE))
    return runs.RunView(store).output(node, key).uri


# ---------------------------------------------------------------------------------------------
# Trainer: 1 vs. 2 MultiWorkerMirroredStrategy workers.

def run_trainer(args: argparse.Namespace, output_dir: str, beam: dict | None) -> dict:
    from benchmarks.local_cluster.multi_worker import (
        TrainerInputs,
        build_trainer_inputs,
        start_cluster,
        wait,
    )
    from modules import contract

    if beam and os.path.isdir(beam.get("examples_uri", "")):
        examples_uri = beam["examples_uri"]
        inputs = TrainerInputs(examples_uri, sorted(
            p.name.removeprefix("Split-") for p in Path(examples_uri).glob("Split-*")),
            beam["transform_graph_uri"])
    else:  # no Beam part yet: the project's ExampleGen and Transform, once
        inputs_dir = Path(output_dir) / "trainer_inputs"
        shutil.rmtree(inputs_dir, ignore_errors=True)
        inputs_dir.mkdir(parents=True)
        inputs = build_trainer_inputs(Path(args.data_dir), inputs_dir)
    batch, steps_pair = ((FAST_TRAINER_BATCH, FAST_TRAINER_STEPS) if args.fast
                         else (TRAINER_BATCH, TRAINER_STEPS))
    runs_found: list[dict] = []
    for workers in args.workers:
        for steps in steps_pair:
            work_dir = Path(output_dir) / "trainer" / f"w{workers}_s{steps}"
            shutil.rmtree(work_dir, ignore_errors=True)
            work_dir.mkdir(parents=True)
            settings = {"epochs": 1, "steps_per_epoch": steps, "batch_size": batch,
                        "test_time_augmentation": contract.TTA_NONE,
                        "distribution_strategy": contract.STRATEGY_MULTI_WORKER}
            record: dict = {"workers": workers, "steps": steps, "global_batch": batch}
            print(f"Trainer: {workers} worker(s), {steps} steps of {batch}", flush=True)
            with common.measured(record):
                cluster = wait(start_cluster(inputs, work_dir, num_workers=workers,
                                             custom_config=settings), TRAINER_TIMEOUT_S)
            if any(w.returncode for w in cluster.workers):
                raise SystemExit(f"error: the {workers}-worker Trainer failed:\n"
                                 f"{cluster.explain()}")
            summary = json.loads((cluster.model_run_uri / contract.TRAINING_SUMMARY_FILE)
                                 .read_text())
            record["train_seconds"] = summary[contract.TRAIN_SECONDS_KEY]
            record["replicas"] = summary["replicas"]
            record["parameters"] = summary["parameters"]
            record["train_examples"] = summary["train_examples"]
            record["worker_seconds"] = [round(w.seconds, 1) for w in cluster.workers]
            runs_found.append(record)
    throughput = {}
    for workers in args.workers:
        low, high = (next(r for r in runs_found if r["workers"] == workers and r["steps"] == s)
                     for s in steps_pair)
        extra_seconds = high["train_seconds"] - low["train_seconds"]
        throughput[str(workers)] = {
            "images_per_s": ((high["steps"] - low["steps"]) * batch / extra_seconds
                             if extra_seconds > 0 else None),
            "images_per_s_including_overheads": high["steps"] * batch / high["train_seconds"]}
    ratio = None
    if "1" in throughput and "2" in throughput and throughput["1"]["images_per_s"] \
            and throughput["2"]["images_per_s"]:
        ratio = throughput["2"]["images_per_s"] / throughput["1"]["images_per_s"]
    return {"date": common.now_utc(), "global_batch": batch, "steps": list(steps_pair),
            "examples_uri": inputs.examples_uri, "runs": runs_found,
            "throughput": throughput, "ratio_2_over_1": ratio}


# ---------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "fast" if args.fast else "full"
    output_dir, results_dir = common.run_dirs(args, "scale_out")
    os.makedirs(output_dir, exist_ok=True)
    os.makedirs(results_dir, exist_ok=True)
    report: dict = {}
    if os.path.exists(os.path.join(results_dir, JSON)):
        report = common.read_json(results_dir, JSON)
    if report.get("mode") != mode:
        report = {}
    if args.part != "render":
        report.update({"mode": mode, "machine": run_benchmark.machine_description(),
                       "data_dir": args.data_dir})
    # A new measurement starts its notes afresh; `render` adds to the measured run's.
    report["notes"] = [*(report.get("notes", []) if args.part == "render" else []), *args.note]
    command = common.invocation("scale_out.py", argv)
    if args.part in ("beam", "all"):
        report["beam"] = {**run_beam(args, output_dir), "command": command}
        common.write_json(report, results_dir, JSON)
    if args.part in ("trainer", "all"):
        report["trainer"] = {**run_trainer(args, output_dir, report.get("beam")),
                             "command": command}
    common.write_json(report, results_dir, JSON)
    common.write_page(page(report), results_dir, PAGE)
    return 0


def page(report: dict) -> str:
    """SCALE_OUT.md's text, from the whole of scale_out.json."""
    doc = Document()
    doc.heading(1, "Scale-out: Beam's portable runner and a multi-worker Trainer (issue #15)")
    doc.para(f"Machine: {common.machine_line(report['machine'])}. Mode: {report['mode']}. Data: "
             f"`{report['data_dir']}`. Load is the 1-minute load average before → after each "
             "measurement; the 2 cores are shared with other work, and hosts of this kind differ "
             "about 2x in speed, so compare the ratios, measured side by side in one command.")
    if report.get("notes"):
        doc.bullets(report["notes"])
    if "beam" in report:
        _beam_section(doc, report["beam"])
    if "trainer" in report:
        _trainer_section(doc, report["trainer"])
    doc.heading(2, CLUSTER_HEADING)
    doc.bullets(CLUSTER_NOTES)
    doc.para(f"Raw figures: `{JSON}`.")
    return doc.to_markdown()


TITLES = {"direct_0": "DirectRunner, one process per core (default)",
          "direct_1": "DirectRunner, 1 worker in-process", "portable": "Portable runner"}
SHORT = {"direct_0": "Direct (per core)", "direct_1": "Direct (1 worker)"}


def _beam_section(doc: Document, beam: dict) -> None:
    paths = beam["paths"]
    names = [n for n in paths if n != "portable"] + ["portable"]
    ratios = beam["ratios"]
    doc.heading(2, "1. The Beam stages: portable runner vs. DirectRunner")
    doc.para(f"Measured {beam['date']}. Command: `{beam['command']}`")
    doc.para("Each path runs the whole pipeline from scratch (`"
             + " ".join(beam["pipeline_args"]) + "`); the wall times are ML Metadata's "
             "execution times (`run_benchmark.component_wall_seconds`). The portable path is "
             "`--beam-runner portable` against Beam's own `local_job_service_main` and an "
             "EXTERNAL `worker_pool_main` on free localhost ports (benchmarks/local_cluster/"
             "beam_services.py), exactly the Beam arguments `--beam-runner flink|spark` compile "
             f"to, endpoints aside; {paths['portable'].get('jobs_done_on_job_service', '?')} "
             "Beam jobs finished on the job service. The local job service runs one SDK "
             "harness per job, hence the 1-worker DirectRunner column. The portable arguments "
             f"carry `--job_server_timeout={beam_lib.PORTABLE_JOB_TIMEOUT_S}` "
             "(`pipeline/beam.py`): Beam 2.59 applies the job-server request timeout (60 s by "
             "default) to the job's state stream, so every Beam job longer than a minute "
             "failed with `Deadline Exceeded` (found here: the full-data Evaluator).")
    no_ratio = ["-"] * len(ratios)
    rows = []
    for node in [*BEAM_NODES, "beam_total"]:
        rows.append(["**Beam stages, total**" if node == "beam_total" else node,
                     *(f"{paths[n]['component_seconds'].get(node, 0):.1f} s" for n in names),
                     *(f"{r[node]:.2f}x" if node in r else "-" for r in ratios.values())])
    rows.append(["Trainer (a few steps; not a Beam stage)",
                 *(f"{paths[n]['component_seconds'].get('Trainer', 0):.1f} s" for n in names),
                 *no_ratio])
    rows.append(["Whole command (wall)", *(f"{paths[n]['seconds']:.0f} s" for n in names),
                 *no_ratio])
    rows.append(["1-min load before → after", *(common.load_text(paths[n]) for n in names),
                 *no_ratio])
    doc.table(["Component", *(TITLES.get(n, n) for n in names),
               *(f"Ratio portable / {SHORT.get(r.split(' / ')[1], r)}" for r in ratios)],
              rows, numeric=[False, *[True] * (len(names) + len(ratios))])
    doc.para("Ratios are portable time / DirectRunner time: above 1, the portable path is "
             "slower. The ExampleValidator runs no Beam job, so it should not depend on the "
             "runner.")


def _trainer_section(doc: Document, trainer: dict) -> None:
    doc.heading(2, "2. The Trainer: 2 workers vs. 1")
    doc.para(f"Measured {trainer['date']}. Command: `{trainer['command']}`")
    doc.para("TFX's Trainer executor (the project's `run_fn`, `distribution_strategy="
             "multi_worker`, test-time augmentation off) in N local worker processes with one "
             "TF_CONFIG cluster on free ports (benchmarks/local_cluster/multi_worker.py), on the "
             "full train split's Transform output. The **global** batch is "
             f"{trainer['global_batch']} (the dataset's batch; the strategy splits it, so each "
             "of 2 workers computes "
             f"{trainer['global_batch'] // 2} images a step). Each cluster size trains for "
             f"{trainer['steps'][0]} and for {trainer['steps'][1]} steps (1 epoch); images/s = "
             "extra steps x global batch / extra training seconds (the chief's "
             "`training_summary.json`), so start-up, the in-memory cache fill, the validation "
             "pass and the export cancel out. A 1-worker cluster is not in multi-worker mode "
             "(no collectives), i.e. the plain one-process Trainer.")
    doc.table(["Workers", "Steps", "Train seconds (chief)", "Worker process seconds",
               "1-min load before → after"],
              [[r["workers"], r["steps"], f"{r['train_seconds']:.1f}",
                ", ".join(f"{s:.0f}" for s in r["worker_seconds"]), common.load_text(r)]
               for r in trainer["runs"]],
              numeric=[True, True, True, False, False])
    doc.table(["Workers", "Training images/s", "Images/s incl. overheads (longer run)"],
              [[workers, "-" if t["images_per_s"] is None else f"{t['images_per_s']:,.0f}",
                f"{t['images_per_s_including_overheads']:,.0f}"]
               for workers, t in trainer["throughput"].items()],
              numeric=[True, True, True])
    ratio = trainer.get("ratio_2_over_1")
    doc.para(f"**2 workers / 1 worker throughput: {'-' if ratio is None else f'{ratio:.2f}x'}** "
             "on this machine.")


CLUSTER_HEADING = "What these would do on a cluster, and why"
CLUSTER_NOTES = (
    "**Beam stages.** On one machine the portable path can only add cost: every stage is "
    "serialised to the job service, TFX stages a package for the workers, and each element "
    "crosses the Fn API's gRPC data plane between the runner and the SDK harness instead of "
    "staying in one process; Beam's local job service also runs one SDK harness per job. What"
    " it buys is where the work can go. On Flink or Spark the same job graph is split into "
    "bundles run by as many task slots / executors (each with its own worker-pool sidecar and"
    " cores) as the cluster has, on several machines; on Dataflow the workers autoscale. "
    "ExampleGen, StatisticsGen and the Evaluator are embarrassingly parallel over records "
    "(per-record parsing, PNG coding, model inference) with small combines at the end, so "
    "they scale close to linearly with workers until I/O or the per-job start-up (seconds to "
    "a minute: container pulls, staging) dominates; on CIFAR-10's 60,000 small images that "
    "start-up is a large share, and the gain shows on data sets 10-100x larger.",
    "**Trainer.** Synchronous data-parallel training: every worker computes the gradients "
    "of its share of the global batch, then all-reduces them (the model's parameters in "
    "float32, about 3.3 MB for 829k, every step) before the next step. On this 2-core machine"
    " both workers share the same two cores, so there is no extra compute at all, only the "
    "all-reduce, the synchronised BatchNorm statistics and two TensorFlow runtimes competing "
    "for the cores: a ratio at or below 1 is the expected result. On a cluster each worker "
    "brings its own cores (or GPU), so the compute per step divides by N while the all-reduce"
    " adds a roughly constant cost per step that depends on the network (a ring all-reduce "
    "moves about 2x the model size per worker); with a model this small and a fast network "
    "the throughput would grow nearly N-fold for a few workers, while the per-worker batch "
    "must stay large enough to keep each device busy (scale the global batch and learning "
    "rate with N).",
)


if __name__ == "__main__":
    sys.exit(main())
