"""Times the serving cost of a finished benchmark run again, on its trained network exported anew.

    python benchmarks/serving_costs.py --output-dir benchmarks/runs/full \
        --results benchmarks/results.json

The run's Keras model and Transform graph go through today's modules.export into a scratch
SavedModel, whose signatures run_benchmark.serving_costs times round-robin beside the bare
network; the figures replace the serving costs of the run's JSON (recorded as re-exported, with
the date and the code's commit) and RESULTS.md is rendered again. So a change to how the model is
served is measured on trained weights, without training them again; accuracy and every other
figure stay the run's own.
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
from cli import logs  # noqa: E402


@click.command("serving_costs.py", context_settings=run_benchmark.CONTEXT_SETTINGS,
               help=run_benchmark.description(__doc__))
@click.option("--data-dir", default=os.path.expanduser("~/.cache/cifar10"),
              help="folder holding cifar-10-batches-bin/ (the images timed)")
@click.option("--output-dir", required=True, help="the benchmark run's pipeline outputs")
@click.option("--results", required=True,
              help="its results.json or results_untuned.json, updated in place")
def serving_costs_command(**flags: Any) -> argparse.Namespace:
    """The flags; main() does the work."""
    return argparse.Namespace(**flags)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return run_benchmark.parse(serving_costs_command, argv)


def code_commit() -> str:
    """The commit of the export code measured (with '+changes' when the tree differs)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", PROJECT_DIR, *args], capture_output=True,
                              text=True, check=False).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "modules") else "")


def trained_artifacts(output_dir: str) -> tuple[str, str]:
    """The URIs of the run's newest Model and TransformGraph, or one line saying why not."""
    from modules import contract
    from reports import runs

    try:
        store = runs.open_store(os.path.join(output_dir, contract.METADATA_FILE))
    except FileNotFoundError as error:
        raise SystemExit(f"error: --output-dir {output_dir}: {error}") from None
    model, graph = runs.latest_trained_model(store), runs.latest_artifact(store, "TransformGraph")
    if model is None or graph is None:
        raise SystemExit(f"error: --output-dir {output_dir}: no trained Model and "
                         f"TransformGraph in its ML Metadata; run the pipeline there first.")
    return model.uri, graph.uri


def reexported_costs(model_uri: str, graph_uri: str, images) -> dict[str, dict]:
    """serving_costs of a trained network, exported with today's modules.export."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from modules import export

    keras_model, settings = export.load_keras_model(model_uri)
    with tempfile.TemporaryDirectory() as scratch:
        export.save_serving_model(keras_model, tft.TFTransformOutput(graph_uri), scratch,
                                  export.settings_serving_views(settings))
        signatures = tf.saved_model.load(scratch).signatures
        return run_benchmark.serving_costs(signatures, keras_model, images)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure(verbose=False)
    from modules import contract
    from reports import benchmark_page

    if not os.path.isfile(args.results):
        raise SystemExit(f"error: --results {args.results}: no such file")
    with open(args.results) as f:
        report = json.load(f)
    model_uri, graph_uri = trained_artifacts(os.path.abspath(args.output_dir))
    images, _ = run_benchmark.load_split(args.data_dir, contract.TEST_PATTERN, (0.0, 1.0))
    costs = reexported_costs(model_uri, graph_uri, images)
    model = report["pipeline"]
    model.update(costs[contract.PIXELS_SIGNATURE])  # the page's served speed
    model.update(serving_costs=costs, serving_costs_timing=benchmark_page.ROUND_ROBIN_IMAGES,
                 serving_costs_date=common.now_utc(),
                 serving_costs_export=f"re-exported with modules.export at {code_commit()}",
                 serving_costs_command=common.invocation("serving_costs.py", argv))
    results_dir = os.path.dirname(os.path.abspath(args.results))
    print(f"Wrote {common.write_json(report, results_dir, os.path.basename(args.results))}")
    page = benchmark_page.rewrite(results_dir)
    if page:
        print(f"Wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
