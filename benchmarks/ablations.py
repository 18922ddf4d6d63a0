"""Issue #17's ablations: each model lever on its own, on a short fixed budget, with run_fn itself.

    python benchmarks/ablations.py --data-dir ~/.cache/cifar10 --run-dir RUN --epochs 4
    python benchmarks/ablations.py --render-only                 # rewrite ABLATIONS.md from JSON

RUN is the output dir of any earlier local run on the same data (`make run`, run_benchmark.py,
scale_out.py): its newest Examples and TransformGraph artifacts are the input, so every variant
trains on exactly the pipeline's `train` split through the pipeline's Transform graph. Each
variant is a fresh process that calls modules.training.run_fn with the variant's hyperparameters
(the levers are hyperparameters: modules.contract.DEFAULT_HPARAMS) and the same epochs, batch
size and seed, so only the lever differs; `--seeds` repeats each variant with other seeds, which
measures the noise between two runs of the same variant. The exported SavedModel is then scored
on every image of `test_batch.bin` through its `serving_pixels` signature with 2 views (the image
and its mirror), and the Keras model alone with 1 view. A short budget ranks levers cheaply; it is
not the full 18-epoch figure (benchmarks/RESULTS.md). A lever worth the time is measured on that
full budget too, in a results dir of its own: `--epochs 18 --results-dir
benchmarks/ablations_full_budget` (its page says "on the full budget"). The machine and its load
go beside the figures: the cores are shared. Rows already measured for the same budget are kept: a
stopped run resumes, and a run with new variants or seeds adds rows.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import click

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_DIR)

from benchmarks import common, run_benchmark  # noqa: E402
from modules import contract  # noqa: E402
from reports import benchmark_page  # noqa: E402
from reports.document import Document  # noqa: E402

PAGE = "ABLATIONS.md"
JSON = benchmark_page.ABLATIONS_JSON
# name -> (what it changes, its hyperparameters over modules.contract.DEFAULT_HPARAMS)
VARIANTS: dict[str, tuple[str, dict]] = {
    "defaults": ("today's defaults", {}),
    "ema": ("exponential moving average of the weights (0.99 per step), BatchNorm recalibrated",
            {"ema_momentum": 0.99}),
    "lookahead": ("lookahead: every 5,120 images (airbench's 5 steps of 1,024) the weights and "
                  "BatchNorm statistics pulled toward a slow copy, more as training ends; the "
                  "slow copy exported", {"lookahead_images": 5120}),
    "lookahead_1280": ("lookahead as above, a pull every 1,280 images (5 steps of 256)",
                       {"lookahead_images": 1280}),
    "frozen_whitening_bias": ("the whitening stem's bias frozen like its filters, instead of "
                              "trained in the first 30% of the steps (airbench: 3 of ~10 "
                              "epochs)", {"whitening_bias_share": 0.0}),
    "alternating_flip": ("each image mirrored in every other epoch instead of at random",
                         {"alternating_flip": True}),
    "wide_stage2": ("widths 64/160/192 instead of 64/128/192", {"stage2_width": 2.5}),
    "ema+flip+wide": ("the weight average, alternating flips and widths 64/160/192 together",
                      {"ema_momentum": 0.99, "alternating_flip": True, "stage2_width": 2.5}),
    "ema+wide": ("the weight average and widths 64/160/192 together (each gained a little on "
                 "the short budget, within the noise)",
                 {"ema_momentum": 0.99, "stage2_width": 2.5}),
    "relu": ("ReLU instead of GELU in the blocks (the default until GELU won)",
             {"activation": "relu"}),
    "linear_decay": ("linear decay to 2% of the peak rate instead of cosine",
                     {"lr_schedule": "linear"}),
    "translate_4": ("training images shifted by up to 4 pixels each way (the classic CIFAR-10 "
                    "crop) instead of 2", {"translate_pixels": 4}),
    "cutout": ("an 8x8 square of each training image covered with the mean colour (cutout)",
               {"cutout_size": 8}),
    "bfloat16": ("mixed precision: the blocks and head compute in bfloat16 (float32 weights), "
                 "exported in float32", {"compute_dtype": "bfloat16"}),
}
SERVED_TTA = "flip"  # the serving budget: at most 2 views
# Marks a row trained over defaults that have changed since: it measured no variant of today's.
EARLIER_DEFAULTS = " (earlier defaults)"


def _seeds(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    """--seeds as a list of integers."""
    try:
        seeds = [int(seed) for seed in value.split(",") if seed.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not seeds:
        raise click.BadParameter("give at least one seed")
    return seeds


@click.command("ablations.py", context_settings=run_benchmark.CONTEXT_SETTINGS,
               help=run_benchmark.description(__doc__))
@click.option("--data-dir", default=os.path.expanduser("~/.cache/cifar10"),
              help="the CIFAR-10 folder the run was made from (test_batch.bin is scored)")
@click.option("--run-dir", help="output dir of an earlier local run on that data")
@click.option("--epochs", type=int, default=4, help="the fixed budget of every variant")
@click.option("--batch-size", type=int, default=256)
@click.option("--steps-per-epoch", type=int,
              help="cap each epoch (a smoke test; default: the whole train split)")
@click.option("--variants", default=",".join(VARIANTS),
              help=f"comma-separated, from: {', '.join(VARIANTS)}")
@click.option("--seeds", default=str(contract.DEFAULT_SEED), callback=_seeds,
              help="comma-separated training seeds; each variant runs once per seed "
                   f"(default {contract.DEFAULT_SEED}, the pipeline's)")
@click.option("--results-dir", default=os.path.join(PROJECT_DIR, "benchmarks"),
              help="where ABLATIONS.md and ablations.json go (default benchmarks/)")
@click.option("--render-only", is_flag=True,
              help="only rewrite the page from the results dir's JSON")
@click.option("--fresh", is_flag=True,
              help="retrain every variant; by default those the results dir's JSON holds "
                   "for the same budget are kept (a stopped run resumes)")
@click.option("--variant", hidden=True)  # the child process: train one variant
@click.option("--inputs", hidden=True)
def ablations_command(**flags: Any) -> argparse.Namespace:
    """The flags; main() does the work."""
    return argparse.Namespace(**flags)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return run_benchmark.parse(ablations_command, argv)


def row_key(record: dict) -> tuple[str, int]:
    """A row of the table: one variant trained with one seed (rows from before seeds were
    recorded used the pipeline's)."""
    return record["variant"], int(record.get("seed", contract.DEFAULT_SEED))


def variant_hyperparameters(name: str) -> dict:
    return {**contract.DEFAULT_HPARAMS, **VARIANTS[name][1]}


def current_name(record: dict) -> str:
    """The variant a row measured by today's definitions: the one whose hyperparameters it
    trained with (so when a lever becomes a default, its rows become the defaults' rows). A row
    that matches none was trained over earlier defaults and keeps its name, marked as such."""
    trained = record.get("hyperparameters")
    if trained is None:  # rows from before the hyperparameters were recorded
        return record["variant"]
    earlier = record["variant"].removesuffix(EARLIER_DEFAULTS) + EARLIER_DEFAULTS
    return variant_of(trained_values(record)) or earlier


def trained_values(record: dict) -> dict:
    """The hyperparameters a row trained with, the levers it predates included."""
    return benchmark_page.trained_values(record["hyperparameters"])


def variant_of(hyperparameters: dict) -> str | None:
    """The variant that trains these values today (None: none does)."""
    for name in VARIANTS:
        wanted = variant_hyperparameters(name)
        if all(hyperparameters[key] == value for key, value in wanted.items()
               if key in hyperparameters):
            return name
    return None


def kept_rows(report: dict) -> dict[tuple[str, int], dict]:
    """The results JSON's rows under today's names; rows of retired variants that cannot be
    placed (no hyperparameters recorded) are left out."""
    rows = {}
    for row in report.get("variants", []):
        name = current_name(row)
        if name in VARIANTS or name.endswith(EARLIER_DEFAULTS):
            rows[row_key({**row, "variant": name})] = {**row, "variant": name}
    return rows


def run_inputs(run_dir: str) -> dict[str, str]:
    """The newest Examples and TransformGraph of a local run, as run_fn's input paths."""
    from modules import contract, data
    from reports import runs

    store = runs.open_store(os.path.join(run_dir, contract.METADATA_FILE))
    examples = runs.latest_artifact(store, "Examples")
    graph = runs.latest_artifact(store, "TransformGraph")
    if examples is None or graph is None:
        raise SystemExit(f"error: --run-dir {run_dir}: no Examples or TransformGraph artifact; "
                         f"run the pipeline there first.")

    def split(name: str) -> str:
        return data.split_pattern(os.path.join(examples.uri, f"Split-{name}"))

    return {"train": split(contract.TRAIN_SPLIT), "eval": split(contract.EVAL_SPLIT),
            "transform_graph": graph.uri}


def train_variant(name: str, seed: int, inputs: dict[str, str], budget: dict, data_dir: str,
                  work_dir: str) -> dict:
    """run_fn on one variant, then its scores; in a fresh process (fresh TF state and seeds)."""
    import keras_tuner
    import tensorflow as tf
    from tfx.components.trainer.fn_args_utils import FnArgs

    from modules import export, preprocessing, training

    hp = keras_tuner.HyperParameters()
    for key, value in VARIANTS[name][1].items():
        hp.Fixed(key, value)
    model_uri = os.path.join(work_dir, "model")
    fn_args = FnArgs(
        train_files=[inputs["train"]], eval_files=[inputs["eval"]],
        transform_graph_path=inputs["transform_graph"],
        serving_model_dir=export.serving_model_dir(model_uri),
        model_run_dir=os.path.join(work_dir, "model_run"),
        hyperparameters=hp.get_config(),
        custom_config={**budget, "seed": seed, "test_time_augmentation": SERVED_TTA})
    training.run_fn(fn_args)
    with open(os.path.join(fn_args.model_run_dir, contract.TRAINING_SUMMARY_FILE)) as f:
        summary = json.load(f)

    images, labels, exact = run_benchmark.load_split_with_origin(
        data_dir, contract.TEST_PATTERN, (0.0, 1.0))
    signature = tf.saved_model.load(fn_args.serving_model_dir).signatures[
        contract.PIXELS_SIGNATURE]
    keras_model, _ = export.load_keras_model(model_uri)
    def serve(batch):
        return signature(pixels=tf.constant(batch))[contract.PROBABILITIES_OUTPUT].numpy()

    served = run_benchmark.predicted_classes(serve, images)
    single = run_benchmark.predicted_classes(
        lambda batch: keras_model(preprocessing.scale_pixels(tf.constant(batch)),
                                  training=False).numpy(), images)
    return {"variant": name, "seed": summary["seed"], "hyperparameters": summary["hyperparameters"],
            "parameters": summary["parameters"],
            "train_seconds": summary[contract.TRAIN_SECONDS_KEY],
            "test_images": int(len(labels)),
            "accuracy_1_view": float((single == labels).mean()),
            "accuracy_2_views": float((served == labels).mean()),
            "accuracy_2_views_by_origin": {
                **run_benchmark.accuracy_by_origin(served, labels, exact),
                **run_benchmark.exact_after_jpeg(serve, images, labels, exact)}}


def earlier_rows(args: argparse.Namespace) -> dict[tuple[str, int], dict]:
    """The rows the results dir's JSON already holds for the same budget (none if --fresh)."""
    if args.fresh or not os.path.exists(os.path.join(args.results_dir, JSON)):
        return {}
    report = common.read_json(args.results_dir, JSON)
    budget = (args.epochs, args.batch_size, args.steps_per_epoch)
    if (report.get("epochs"), report.get("batch_size"), report.get("steps_per_epoch")) != budget:
        return {}
    return kept_rows(report)


def run_variant(args: argparse.Namespace, name: str, seed: int, inputs: dict[str, str]) -> dict:
    """One variant with one seed in a child process, timed with the load and the host-speed
    probe around it (hosts of one description differ ~2x: rows' times compare only when their
    probes agree)."""
    record: dict = {"date": common.now_utc(), "lever": VARIANTS[name][0]}
    speed_before = run_benchmark.host_speed()
    with tempfile.TemporaryDirectory(prefix=f"ablation-{name}-{seed}-") as work_dir, \
            common.measured(record):
        result_path = os.path.join(work_dir, "result.json")
        command = [sys.executable, os.path.abspath(__file__), "--variant", name,
                   "--seeds", str(seed),
                   "--inputs", json.dumps(inputs), "--epochs", str(args.epochs),
                   "--batch-size", str(args.batch_size), "--data-dir", args.data_dir,
                   *(["--steps-per-epoch", str(args.steps_per_epoch)]
                     if args.steps_per_epoch else []),
                   "--results-dir", work_dir]
        print(f"== {name}, seed {seed}: {VARIANTS[name][0]}", flush=True)
        subprocess.run(command, check=True)
        with open(result_path) as f:
            record.update(json.load(f))
    record[benchmark_page.HOST_SPEED_KEY] = [round(speed_before, 1),
                                             round(run_benchmark.host_speed(), 1)]
    return record


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.variant:
        budget = {"epochs": args.epochs, "batch_size": args.batch_size,
                  "steps_per_epoch": args.steps_per_epoch}
        result = train_variant(args.variant, args.seeds[0], json.loads(args.inputs), budget,
                               args.data_dir, args.results_dir)
        common.write_json(result, args.results_dir, "result.json")
        return 0
    if args.render_only:  # also renames rows whose variant a change of the defaults renamed
        report = common.read_json(args.results_dir, JSON)
        report["variants"] = table_rows(kept_rows(report))
        common.write_json(report, args.results_dir, JSON)
        write_pages(report, args.results_dir)
        return 0
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise SystemExit(f"error: --variants: unknown {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(VARIANTS)}.")
    if not args.run_dir:
        raise SystemExit("error: --run-dir is required: the output dir of an earlier local run.")
    inputs = run_inputs(args.run_dir)
    os.makedirs(args.results_dir, exist_ok=True)
    report = {"date": common.now_utc(), "command": common.invocation("ablations.py", argv),
              "machine": run_benchmark.machine_description(), "epochs": args.epochs,
              "batch_size": args.batch_size, "steps_per_epoch": args.steps_per_epoch,
              "variants": []}
    rows = earlier_rows(args)
    for name in names:
        for seed in args.seeds:
            if (name, seed) in rows:
                print(f"== {name}, seed {seed}: kept from "
                      f"{rows[name, seed].get('date', 'an earlier run')}")
            else:
                rows[name, seed] = run_variant(args, name, seed, inputs)
            report["variants"] = table_rows(rows)
            common.write_json(report, args.results_dir, JSON)  # what finished survives a stop
    write_pages(report, args.results_dir)
    return 0


def table_rows(rows: dict[tuple[str, int], dict]) -> list[dict]:
    """Every row, variants in VARIANTS' order (rows over earlier defaults last) and each
    variant's seeds in order; each row's lever text is today's, or for a row over earlier
    defaults the values it trained with that differ from today's."""
    order = list(VARIANTS)

    def position(key: tuple[str, int]) -> tuple:
        name, seed = key
        return (order.index(name), "", seed) if name in VARIANTS else (len(order), name, seed)

    def described(key: tuple[str, int]) -> dict:
        row = {**rows[key], "seed": key[1]}
        if row["variant"] in VARIANTS:
            return {**row, "lever": VARIANTS[row["variant"]][0]}
        row["baseline"] = earlier_baseline(row, rows)
        changes = benchmark_page.changes_from_defaults(row["hyperparameters"])
        return {**row, "lever": f"trained with {changes}; against {row['baseline']}"}

    return [described(key) for key in sorted(rows, key=position)]


def earlier_baseline(row: dict, rows: dict[tuple[str, int], dict]) -> str:
    """For a row over earlier defaults: the row of its seed trained with the same values but its
    own lever undone, which the lever is measured against (the defaults when there is none)."""
    lever = VARIANTS.get(row["variant"].removesuffix(EARLIER_DEFAULTS), ("", {}))[1]
    undone = {**trained_values(row), **{key: contract.DEFAULT_HPARAMS[key] for key in lever}}
    for (name, seed), other in rows.items():
        if seed == row["seed"] and "hyperparameters" in other:
            values = trained_values(other)
            if all(values[key] == undone[key] for key in values.keys() & undone.keys()):
                return name
    return "defaults"


def write_pages(report: dict, results_dir: str) -> None:
    """ABLATIONS.md, and RESULTS.md again (with the table) where results.json is beside it."""
    common.write_page(page(report), results_dir, PAGE)
    results_page = benchmark_page.rewrite(results_dir)
    if results_page:
        print(f"Wrote {results_page}")


def page(report: dict) -> str:
    """ABLATIONS.md's text, from ablations.json (the same table RESULTS.md shows)."""
    doc = Document()
    doc.heading(1, "Model ablations")
    benchmark_page.add_ablations(doc, report)
    doc.para(f"Raw figures: `{JSON}`. Written by `benchmarks/ablations.py`, which also adds this "
             f"table to `{benchmark_page.RESULTS_MD}` when `{benchmark_page.RESULTS_JSON}` is "
             f"beside it.")
    return doc.to_markdown()


if __name__ == "__main__":
    sys.exit(main())
