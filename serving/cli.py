"""Command line for the CIFAR-10 model behind TF Serving.

    python -m serving.cli predict images/ cat.png --rest http://localhost:8501
    python -m serving.cli predict images/ --grpc localhost:8500 --label canary --format json

Without --rest or --grpc, $TFSERVING_URL, then $TFSERVING_GRPC, then http://localhost:8501 is
used. Errors print `error: ...` on stderr and exit with status 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from modules import constants
from serving.client import ServingClient, ServingError

DEFAULT_REST_URL = "http://localhost:8501"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.cli",
        description="Ask a TF Serving server for CIFAR-10 predictions.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    predict = commands.add_parser(
        "predict", help="classify image files or folders of .png/.jpg/.jpeg files",
        description="Classify 32x32 RGB PNG/JPEG files; folders stand for the images in them.")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image file or folder")
    server = predict.add_mutually_exclusive_group()
    server.add_argument("--rest", metavar="URL",
                        help=f"REST base URL (default: $TFSERVING_URL or {DEFAULT_REST_URL})")
    server.add_argument("--grpc", metavar="HOST:PORT",
                        help="gRPC target, e.g. localhost:8500 (default: $TFSERVING_GRPC)")
    predict.add_argument("--model", default="cifar10", help="model name (default: cifar10)")
    which = predict.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, metavar="N", help="model version number")
    which.add_argument("--label", metavar="LABEL", help="version label, e.g. stable or canary")
    predict.add_argument("--signature", default=constants.SERVING_SIGNATURE,
                         choices=[constants.SERVING_SIGNATURE, constants.PIXELS_SIGNATURE],
                         help="send encoded images (serving_default) or decoded pixels "
                              "(serving_pixels); default: %(default)s")
    predict.add_argument("--batch-size", type=int, default=64, metavar="N",
                         help="images per request (default: 64)")
    predict.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                         help="timeout of each request (default: 10)")
    predict.add_argument("--retries", type=int, default=3, metavar="N",
                         help="retries on transient failures (default: 3)")
    predict.add_argument("--columnar", action="store_true",
                         help="REST: send the columnar 'inputs' format instead of 'instances'")
    predict.add_argument("--format", choices=("table", "json"), default="table",
                         help="output format (default: table)")
    predict.add_argument("--resize", action="store_true",
                         help="convert images of other sizes or modes to 32x32 RGB first")
    return parser


def format_table(predictions) -> str:
    rows = [(str(p.source), p.class_name, f"{p.confidence:.3f}") for p in predictions]
    header = ("path", "class", "confidence")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    lines = ["  ".join((header[0].ljust(widths[0]), header[1].ljust(widths[1]),
                        header[2].rjust(widths[2])))]
    for r in rows:
        lines.append("  ".join((r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                                r[2].rjust(widths[2]))))
    return "\n".join(lines)


def _server_args(args) -> dict:
    if args.rest:
        return {"rest_url": args.rest}
    if args.grpc:
        return {"grpc_target": args.grpc}
    if os.environ.get("TFSERVING_URL"):
        return {"rest_url": os.environ["TFSERVING_URL"]}
    if os.environ.get("TFSERVING_GRPC"):
        return {"grpc_target": os.environ["TFSERVING_GRPC"]}
    return {"rest_url": DEFAULT_REST_URL}


def run_predict(args) -> int:
    client = ServingClient(model_name=args.model, version=args.version, label=args.label,
                           signature=args.signature, timeout=args.timeout, retries=args.retries,
                           batch_size=args.batch_size, columnar=args.columnar,
                           **_server_args(args))
    with client:
        predictions = client.predict_paths(args.paths, resize=args.resize)
    if args.format == "json":
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    else:
        print(format_table(predictions))
    return 0


def main(argv=None) -> int:
    # TensorFlow is imported only to build gRPC tensors: hide its C++ start-up noise (CUDA
    # probing on CPU machines). Our own retry warnings stay visible.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return int(exc.code or 0)
    try:
        if args.command == "predict":
            return run_predict(args)
        parser.error(f"unknown command {args.command}")
    except (ServingError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
