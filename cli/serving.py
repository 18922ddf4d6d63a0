"""`cifar10-tfx predict` and `cifar10-tfx download-model`: the model behind TF Serving.

    cifar10-tfx predict images/ cat.png --rest http://localhost:8501
    cifar10-tfx predict images/ --grpc localhost:8500 --label canary --format json
    cifar10-tfx predict images/ --saved-model outputs/serving_model --format csv --output p.csv
    cifar10-tfx predict images/ --tflite outputs/tflite_model --format jsonl
    cifar10-tfx download-model gs://BUCKET/serving_model ./models/cifar10

Without --rest, --grpc, --saved-model or --tflite, $TFSERVING_URL, then $TFSERVING_GRPC, then
http://localhost:8501 is used. --saved-model and --tflite run the pushed model here instead
(serving.local_models); all back ends skip bad files the same way and write the same rows.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from cli.core import Choice, Command, Failure, Float, Int, UnknownOptionsCommand, usage_error
from modules import contract, urls

DEFAULT_REST_URL = "http://localhost:8501"


def _one_line(text: str) -> str:
    """The text as it is, or with its control characters escaped (a newline in a file name
    would otherwise start a row or a log line of its own)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def format_table(predictions: Sequence[Any]) -> str:
    """path, class and confidence columns, one row per image."""
    rows = [(_one_line(str(p.source)), p.class_name, f"{p.confidence:.3f}") for p in predictions]
    header = ("path", "class", "confidence")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(3)]
    return "\n".join("  ".join((r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                                r[2].rjust(widths[2]))) for r in [header, *rows])


def server_settings(rest: str | None, grpc: str | None) -> dict[str, str]:
    """Which server to ask: the flags, then $TFSERVING_URL, $TFSERVING_GRPC, then localhost."""
    if rest:
        return {"rest_url": rest}
    if grpc:
        return {"grpc_target": grpc}
    if os.environ.get("TFSERVING_URL"):
        return {"rest_url": os.environ["TFSERVING_URL"]}
    if os.environ.get("TFSERVING_GRPC"):
        return {"grpc_target": os.environ["TFSERVING_GRPC"]}
    return {"rest_url": DEFAULT_REST_URL}


def _exclusive(**given: Any) -> None:
    """argparse's mutually exclusive groups: at most one of these flags."""
    named = [f"--{name.replace('_', '-')}" for name, value in given.items()
             if value is not None]
    if len(named) > 1:
        raise usage_error(f"argument {named[1]}: not allowed with argument {named[0]}")


def _check_output_is_no_input(output: str, paths: Sequence[str]) -> None:
    """--output must not overwrite an image it reads: one of the PATHs, or an image file in one
    of the PATH folders (a CSV there, new or from an earlier call, is fine)."""
    from serving.client import IMAGE_EXTENSIONS

    target = os.path.realpath(output)
    for path in paths:
        given = os.path.realpath(path)
        inside = os.path.isdir(given) and os.path.dirname(target) == given \
            and os.path.splitext(target)[1].lower() in IMAGE_EXTENSIONS
        if target == given or inside:
            raise usage_error(f"argument --output: {output} is {'in ' if inside else ''}"
                              f"{path}, an input; write the predictions elsewhere")


@click.command("predict", cls=UnknownOptionsCommand,
               short_help="classify images with a model behind TF Serving, or a local one",
               help="Classify 32x32 RGB PNG/JPEG/WebP files with the model behind TF Serving, "
                    "or with a pushed SavedModel or .tflite run here; folders stand for the "
                    "image files in them. Files that cannot be classified are named and "
                    "skipped.")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--rest", metavar="URL", show_default=False,
              help=f"REST base URL (default: $TFSERVING_URL or {DEFAULT_REST_URL})")
@click.option("--grpc", metavar="HOST:PORT",
              help="gRPC target, e.g. localhost:8500 (default: $TFSERVING_GRPC)")
@click.option("--saved-model", metavar="PATH",
              help="run this SavedModel here: a version folder, or a model base path (its "
                   "newest version)")
@click.option("--tflite", metavar="PATH",
              help="run this .tflite here: the file, a version folder or a base path (newest)")
@click.option("--model", default=contract.MODEL_NAME, help="model name")
@click.option("--version", type=Int(), metavar="N", help="model version number")
@click.option("--label", metavar="LABEL", help="version label, e.g. stable or canary")
@click.option("--signature", default=contract.SERVING_SIGNATURE,
              type=Choice([contract.SERVING_SIGNATURE, contract.PIXELS_SIGNATURE]),
              help="send encoded images (serving_default) or decoded pixels (serving_pixels)")
@click.option("--batch-size", type=Int(1), default=64, metavar="N", help="images per request")
@click.option("--timeout", type=Float(positive=True), default=10.0, metavar="SECONDS",
              help="timeout of each request")
@click.option("--retries", type=Int(0), default=3, metavar="N",
              help="retries on transient failures")
@click.option("--columnar", is_flag=True,
              help="REST: send the columnar 'inputs' format instead of 'instances'")
@click.option("--format", "output_format",
              type=Choice(("table", "json", *contract.PREDICTION_FORMATS)), default="table",
              help="output format; csv and jsonl: file, class_id, class_name and the ten "
                   "probabilities per row")
@click.option("--output", metavar="FILE", help="write the predictions here (default: stdout)")
@click.option("--resize", is_flag=True,
              help="convert images of other sizes or modes to 32x32 RGB first")
def predict_command(paths: tuple[str, ...], rest: str | None, grpc: str | None,
                    saved_model: str | None, tflite: str | None,
                    model: str, version: int | None, label: str | None, signature: str,
                    batch_size: int, timeout: float, retries: int, columnar: bool,
                    output_format: str, output: str | None, resize: bool) -> int:
    _exclusive(rest=rest, grpc=grpc, saved_model=saved_model, tflite=tflite)
    _exclusive(version=version, label=label)
    if output:
        _check_output_is_no_input(output, paths)
    # A local model is the folder given (a base path: its newest version); TF Serving's
    # version and label would be silently ignored.
    _exclusive(saved_model=saved_model, version=version, label=label)
    _exclusive(tflite=tflite, version=version, label=label)
    # TensorFlow is imported only to build gRPC tensors: hide its C++ start-up noise (CUDA
    # probing on CPU machines). Our own retry warnings stay visible.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    from serving import local_models
    from serving.client import ServingClient, ServingError

    try:
        if saved_model or tflite:
            backend = (local_models.SavedModelBackend(saved_model) if saved_model
                       else local_models.TFLiteBackend(tflite))
            predictions = local_models.predict_files(backend, list(paths), resize=resize,
                                                     batch_size=batch_size)
        else:
            client = ServingClient(model_name=model, version=version, label=label,
                                   signature=signature, timeout=timeout, retries=retries,
                                   batch_size=batch_size, columnar=columnar,
                                   **server_settings(rest, grpc))
            with client:
                predictions = local_models.predict_files(client, list(paths), resize=resize,
                                                         batch_size=batch_size)
    except (ServingError, ValueError, OSError) as error:
        raise Failure(urls.redact_text(str(error))) from None
    for entry in predictions.skipped:
        logging.getLogger("cifar10_tfx.predict").warning("skipped %s", _one_line(str(entry)))
    try:
        with (open(output, "w", newline="") if output
              else contextlib.nullcontext(sys.stdout)) as out:
            if output_format in contract.PREDICTION_FORMATS:
                local_models.write_predictions(predictions, output_format, out)
            elif output_format == "json":
                out.write(json.dumps([p.to_dict() for p in predictions], indent=2) + "\n")
            else:
                out.write(format_table(predictions) + "\n")
    except OSError as error:
        raise Failure(f"cannot write --output {output}: {error.strerror or error}") from None
    return 0


@click.command("download-model", cls=Command,
               short_help="copy a pushed model version to a local model base path",
               help="Copy a pushed model version into a local TF Serving model base path. "
                    "SOURCE_BASE: the pushed base path (local, gs://, s3:// with s3fs or "
                    "tensorflow-io); DEST_BASE: a local model base path, e.g. ./models/cifar10.")
@click.argument("source_base")
@click.argument("dest_base")
@click.option("--version", type=Int(), help="version to copy (default: the highest)")
@click.option("--force", is_flag=True,
              help="replace the version if it already exists in dest_base")
def download_model_command(source_base: str, dest_base: str, version: int | None,
                           force: bool) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up noise
    from serving import download_model

    try:
        path = download_model.download_model(source_base, dest_base, version, force)
    except (download_model.ModelDownloadError, OSError) as error:
        raise Failure(str(error)) from None
    print(path)
    return 0
