"""Runs the CIFAR-10 pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

    python local_runner.py --data-dir ~/.cache/cifar10          # data already unpacked there
    python local_runner.py                                       # downloads the official archive

Re-running reuses every cached component whose inputs did not change (ML Metadata), so a killed
run picks up where it stopped. Ends by printing where the model went and its test accuracy.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Optional, Sequence

from pipeline import configs, flags, logs

_default = flags.default


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-bin/ (or that folder "
                   "itself); if omitted, the official archive is downloaded to --download-dir")
    p.add_argument("--download-dir", default=_default("data_root"))
    p.add_argument("--output-dir", default=_default("output_dir"),
                   help="pipeline root, metadata.sqlite and pushed models go here")
    p.add_argument("--serving-dir", help="TF Serving model base path (default <output-dir>/serving_model)")
    p.add_argument("--tflite-dir", help="where .tflite versions go (default <output-dir>/tflite_model)")
    flags.add_training_flags(p)
    p.add_argument("--beam-workers", type=int, default=_default("beam_workers"),
                   help="DirectRunner worker processes (0: one per core, 1: in-process)")
    p.add_argument("--beam-arg", action="append", default=[],
                   help="a Beam pipeline argument, repeatable (e.g. --beam-arg=--runner=FlinkRunner)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow, TFX and Beam logs")
    return p.parse_args(argv)


def resolve_data_dir(data_dir: Optional[str], download_dir: str) -> str:
    """The folder that holds cifar-10-batches-bin/, downloading the official archive if needed."""
    if data_dir:
        data_dir = os.path.abspath(os.path.expanduser(data_dir))
        if os.path.basename(data_dir.rstrip("/")) == configs.BATCHES_DIR:
            data_dir = os.path.dirname(data_dir.rstrip("/"))
        if not os.path.isdir(os.path.join(data_dir, configs.BATCHES_DIR)):
            raise SystemExit(f"error: {data_dir} does not hold {configs.BATCHES_DIR}/ (the unpacked "
                             f"official cifar-10-binary.tar.gz).")
        print(f"Using the CIFAR-10 data in {data_dir} (--data-dir); nothing is downloaded.")
        return data_dir
    from pipeline import download

    try:
        batches = download.download_cifar10(os.path.expanduser(download_dir))
    except download.DownloadError as error:
        raise SystemExit(f"error: {error}") from None
    return os.path.dirname(batches)


def config_from_args(args: argparse.Namespace, data_root: str) -> configs.PipelineConfig:
    try:
        return configs.PipelineConfig(
            data_root=data_root,
            output_dir=os.path.abspath(args.output_dir),
            serving_dir=args.serving_dir and os.path.abspath(args.serving_dir),
            tflite_dir=args.tflite_dir and os.path.abspath(args.tflite_dir),
            beam_workers=args.beam_workers, beam_args=tuple(args.beam_arg),
            **flags.training_settings(args))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def run(config: configs.PipelineConfig, verbose: bool = False) -> int:
    """Runs the DAG and prints the outcome; returns a process exit code."""
    from tfx import v1 as tfx

    from pipeline import pipeline, results

    os.makedirs(config.output_dir, exist_ok=True)
    dag = pipeline.create_pipeline(
        config, tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path))
    try:
        tfx.orchestration.LocalDagRunner().run(dag)
    except Exception as error:  # a component failed: say which and why, without the traceback
        if verbose:
            traceback.print_exc()
        print(f"\nerror: the pipeline stopped: {error}", file=sys.stderr)
        print(f"Nothing was pushed by this run. Logs and artifacts: {config.pipeline_root}",
              file=sys.stderr)
        return 1
    outcome = results.latest_outcome(config.metadata_path)
    accuracy = "n/a" if outcome.test_accuracy is None else f"{outcome.test_accuracy:.2%}"
    print(f"\nTest accuracy: {accuracy} (threshold {config.accuracy_threshold:.0%})")
    if outcome.pushed:
        print(f"Blessed and pushed version {outcome.pushed_version}:")
        print(f"  SavedModel (TF Serving base path {config.serving_dir}): {outcome.serving_path}")
        if outcome.tflite_path:
            print(f"  TFLite: {outcome.tflite_path}")
    else:
        print(f"Not blessed: nothing was pushed. Evaluation: {outcome.evaluation_uri}")
    print(f"ML Metadata: {config.metadata_path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logs.configure(verbose=args.verbose)
    data_root = resolve_data_dir(args.data_dir, args.download_dir)
    return run(config_from_args(args, data_root), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
