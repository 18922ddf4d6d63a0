"""Benchmarks the default pipeline on CIFAR-10 against a baseline in the original project's style.

    python benchmarks/run_benchmark.py --data-dir ~/.cache/cifar10         # full: RESULTS.md
    python benchmarks/run_benchmark.py --data-dir ~/.cache/cifar10 --untuned  # the defaults
    python benchmarks/run_benchmark.py --data-dir ~/.cache/cifar10 --candidate NAME -- FLAGS
    python benchmarks/run_benchmark.py --data-dir SMALL_FIXTURE --fast      # CI: proves it works

Runs local_runner.py (cached components are reused; their wall times are read from ML Metadata),
then measures the pushed SavedModel and its TFLite twin on test_batch.bin, trains the baseline on
the same train split with the same epochs and batch size, and writes RESULTS.md, results.json
and plots. --untuned runs the pipeline without its Tuner, the defaults' reference that RESULTS.md
sets beside the tuned run (run both on one machine: its speed is part of the comparison);
--candidate records a full run with other local_runner.py flags (a lever from the ablations) for
RESULTS.md's table of full-budget candidates.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
import numpy as np

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_DIR)

from cli import logs  # noqa: E402
from reports.benchmark_page import CANDIDATES_DIR, UNTUNED_JSON  # noqa: E402

FAST_PIPELINE_ARGS = ["--epochs", "2", "--batch-size", "64", "--beam-workers", "1",
                      "--accuracy-threshold", "0", "--tflite-max-accuracy-drop", "0.5",
                      "--tflite-calibration-samples", "100"]
F = TypeVar("F", bound=Callable[..., Any])
# What every benchmark script's command shares: -h as well as --help, and lines of 100.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
PIPELINE_ARGS_HELP = "PIPELINE_ARGS: extra local_runner.py flags (after --)."


def description(doc: str, *more: str) -> str:
    """A script's --help text: its docstring's first paragraph, then `more` paragraphs."""
    return "\n\n".join([doc.split("\n\n")[0], *more])


def run_options(output_help: str, results_help: str) -> Callable[[F], F]:
    """The flags every benchmark script takes (this one, batch_inference.py, scale_out.py): the
    data, where the pipeline runs and the results go, and --fast for CI."""
    options = [
        click.option("--data-dir", default=os.path.expanduser("~/.cache/cifar10"),
                     help="folder holding cifar-10-batches-bin/"),
        click.option("--output-dir", help=output_help),
        click.option("--results-dir", help=results_help),
        click.option("--fast", is_flag=True, help="tiny budget, for CI on a small fixture"),
    ]

    def decorate(function: F) -> F:
        for option in reversed(options):  # click lists options in the order they decorate
            function = option(function)
        return function

    return decorate


def parse(command: click.Command, argv: Sequence[str] | None) -> argparse.Namespace:
    """A benchmark script's flags, parsed by its click command, whose callback returns them:
    --help prints and exits 0; a bad value exits 2 with click's usage error, whose last line
    names the flag."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        flags = command.main(args, prog_name=command.name, standalone_mode=False)
    except click.ClickException as error:
        error.show()
        raise SystemExit(error.exit_code) from None
    if not isinstance(flags, argparse.Namespace):  # --help was printed: its exit code
        raise SystemExit(flags)
    return flags


def _candidate_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value):
        raise click.BadParameter(f"{value!r}: use lower-case letters, digits, - and _")
    return value


@click.command("run_benchmark.py", context_settings=CONTEXT_SETTINGS,
               help=description(__doc__, PIPELINE_ARGS_HELP))
@run_options("pipeline outputs (default benchmarks/runs/full|fast, "
             "full_untuned|fast_untuned with --untuned)",
             "where RESULTS.md goes (default benchmarks/ for a full run, the output dir "
             "for --fast; with --untuned, where the tuned run's page is)")
@click.option("--skip-baseline", is_flag=True)
@click.option("--untuned", is_flag=True,
              help="the reference for the Tuner: the pipeline with --no-tune (the "
                   f"defaults), recorded as {UNTUNED_JSON} beside the tuned run's "
                   "RESULTS.md, which then compares with it (no baseline)")
@click.option("--candidate", metavar="NAME", callback=_candidate_name,
              help="a full run with the local_runner.py flags after -- (no baseline), "
                   f"recorded as {CANDIDATES_DIR}/NAME.json beside the tuned run's "
                   "RESULTS.md, whose table of candidates then shows it")
@click.argument("pipeline_args", nargs=-1)
def benchmark_command(**flags: Any) -> argparse.Namespace:
    """The flags, checked together; main() does the work."""
    if flags["candidate"] and flags["untuned"]:
        raise click.UsageError("--candidate and --untuned: choose one")
    return argparse.Namespace(**{**flags, "pipeline_args": list(flags["pipeline_args"])})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return parse(benchmark_command, argv)


def load_split(data_dir: str, pattern: str, fraction) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split, sliced exactly as the ExampleGen slices the files."""
    images, labels, _ = load_split_with_origin(data_dir, pattern, fraction)
    return images, labels


def load_split_with_origin(data_dir: str, pattern: str,
                           fraction) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """load_split, plus which images hold original pixels: on the offline copy (files of fewer
    than the official 10,000 records each) the first contract.OFFLINE_COPY_EXACT_PER_FILE of
    each file; None (all original) on the official data."""
    import glob

    from components.cifar10_example_gen import executor
    from modules import cifar10_binary, contract

    images, labels, exact = [], [], []
    paths = sorted(glob.glob(os.path.join(data_dir, pattern)))
    offline = any(cifar10_binary.check_structure(p) < contract.OFFICIAL_TEST_IMAGES
                  for p in paths)
    for path in paths:
        start, end = executor.slice_bounds(cifar10_binary.check_structure(path), fraction)
        for record in cifar10_binary.read_records(path):
            if start <= record.index < end:
                images.append(record.image)
                labels.append(record.label)
                exact.append(record.index < contract.OFFLINE_COPY_EXACT_PER_FILE)
    return np.stack(images), np.asarray(labels), np.asarray(exact) if offline else None


def accuracy_by_origin(predictions: np.ndarray, labels: np.ndarray,
                       exact: np.ndarray | None) -> dict:
    """Accuracy on the original images and on the JPEG-decoded ones, apart (offline copy)."""
    if exact is None:
        return {}
    correct = predictions == labels

    def part(mask: np.ndarray) -> dict:
        return {"images": int(mask.sum()),
                "accuracy": float(correct[mask].mean()) if mask.any() else None}

    return {"exact": part(exact), "jpeg_decoded": part(~exact)}


# The offline copy's JPEG setting (its README): quality 75. Pillow encodes it with 4:2:0 chroma, as
# the copy's files are; its round trip of an original image lands 0.7/255 per pixel from the
# copy's own decode of that image (measured on 200 test images), against 5.8/255 from the original.
COPY_JPEG_QUALITY = 75


def jpeg_round_trip(images: np.ndarray, quality: int = COPY_JPEG_QUALITY) -> np.ndarray:
    """uint8 images [N, 32, 32, 3], each encoded as a JPEG (Pillow) and decoded again."""
    import io

    from PIL import Image

    def round_trip(image: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        return np.asarray(Image.open(buffer).convert("RGB"))

    return np.stack([round_trip(image) for image in images])


def exact_after_jpeg(predict, images: np.ndarray, labels: np.ndarray,
                     exact: np.ndarray | None) -> dict:
    """Accuracy on the original-pixel images once more after a JPEG round trip like the offline
    copy's. The same images both ways: beside their accuracy as they are, this is what the copy's
    JPEG costs the model, free of which images happen to be the exact ones."""
    if exact is None or not exact.any():
        return {}
    predictions = predicted_classes(predict, jpeg_round_trip(images[exact]))
    return {"exact_after_jpeg": {"images": int(exact.sum()),
                                 "accuracy": float((predictions == labels[exact]).mean())}}


def predicted_classes(predict, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The class id a batch predictor (uint8 -> probabilities) gives each image."""
    return np.concatenate([predict(images[i:i + batch_size]).argmax(axis=1)
                           for i in range(0, len(images), batch_size)])


def measure_predictor(predict, images: np.ndarray, labels: np.ndarray,
                      exact: np.ndarray | None = None) -> dict:
    """Accuracy (and by origin, given `exact`), confusion matrix and per-class metrics of a
    batch predictor (uint8 -> probs); its speed is `speed`'s."""
    from reports import metrics

    predictions = predicted_classes(predict, images)
    matrix = metrics.confusion_matrix(labels, predictions)
    return {
        "accuracy": float((predictions == labels).mean()),
        "accuracy_by_origin": {**accuracy_by_origin(predictions, labels, exact),
                               **exact_after_jpeg(predict, images, labels, exact)},
        "confusion_matrix": matrix.tolist(),
        "per_class": metrics.per_class_metrics(matrix),
    }


def timing_batch(images: np.ndarray) -> np.ndarray:
    """256 images to time a batch with (repeated when the test set is smaller)."""
    return images[:256] if len(images) >= 256 else np.resize(images, (256, *images.shape[1:]))


# Calls timed per measured function; serving_costs takes them in turn across its functions.
BATCH1_CALLS, BATCH256_CALLS = 100, 10


def speeds(calls: dict[str, tuple[Callable, Sequence]]) -> dict[str, dict]:
    """Batch-1 latency and batch-256 throughput of each `call` on its list or array of 256
    `inputs` (the same images for every call): medians of BATCH1_CALLS and BATCH256_CALLS calls
    taken round-robin, one call of each in turn. A change in the shared host's load then falls on
    all of them alike, so the ratios between them hold steadier than timings taken one function
    after the other. Batch-1 calls take the images in turn, so a level whose cost depends on the
    image (flip_if_unsure) is timed on a spread of them; their mean is recorded beside the
    median."""
    for call, inputs in calls.values():  # warm-up: tracing and first allocations
        call(inputs[:1])
        call(inputs)

    def timings(rounds: int, batch: int) -> dict[str, list[float]]:
        seconds: dict[str, list[float]] = {name: [] for name in calls}
        for round_index in range(rounds):
            for name, (call, inputs) in calls.items():
                first = round_index * batch % len(inputs)
                start = time.perf_counter()
                call(inputs[first:first + batch])
                seconds[name].append(time.perf_counter() - start)
        return seconds

    latency, full_batch = timings(BATCH1_CALLS, 1), timings(BATCH256_CALLS, 256)
    return {name: {"latency_ms_batch1": float(np.median(latency[name])) * 1000.0,
                   "latency_ms_batch1_mean": float(np.mean(latency[name])) * 1000.0,
                   "throughput_images_per_s_batch256": 256.0 / float(np.median(full_batch[name]))}
            for name in calls}


def speed(call: Callable, inputs: Sequence) -> dict:
    """speeds() of one function."""
    return speeds({"": (call, inputs)})[""]


def serving_costs(signatures, keras_model, images: np.ndarray) -> dict[str, dict]:
    """The speed of each signature of the pushed SavedModel (`signatures`, loaded once), on the
    input it takes (PNG bytes, uint8 pixels, serialized tf.Examples holding PNGs), and of a plain
    single-view forward pass of the same network on pixels: the reference the test-time
    augmentation's cost is measured by."""
    import tensorflow as tf

    from components.cifar10_example_gen import executor
    from modules import contract
    from reports.benchmark_page import SINGLE_VIEW

    batch = timing_batch(images)
    examples = [executor.to_example(0, image) for image in batch]
    image_bytes = [tf.train.Example.FromString(e).features.feature[contract.IMAGE_KEY]
                   .bytes_list.value[0] for e in examples]

    def signature(name: str):
        return lambda inputs: signatures[name](**{
            contract.SIGNATURE_INPUTS[name]: tf.constant(inputs)})[
            contract.PROBABILITIES_OUTPUT].numpy()

    inputs = {contract.PIXELS_SIGNATURE: batch, contract.SERVING_SIGNATURE: image_bytes,
              contract.EXAMPLES_SIGNATURE: examples}
    return speeds({SINGLE_VIEW: (single_view(keras_model), batch),
                   **{name: (signature(name), inputs[name])
                      for name in contract.SIGNATURE_INPUTS}})


def single_view(keras_model) -> Callable[[np.ndarray], np.ndarray]:
    """A plain forward pass of the network on one view of uint8 pixels: the reference the cost of
    test-time views is measured by."""
    import tensorflow as tf

    from modules import preprocessing

    forward = tf.function(lambda pixels: keras_model(preprocessing.scale_pixels(pixels),
                                                     training=False))
    return lambda pixels: forward(tf.constant(pixels)).numpy()


def test_time_levels(keras_model, graph_uri: str, eval_images: np.ndarray,
                     eval_labels: np.ndarray, images: np.ndarray, labels: np.ndarray,
                     exact: np.ndarray | None) -> dict[str, dict]:
    """Every test-time level on the run's trained network, each exported anew by modules.export
    (flip_if_unsure with its threshold set on the `eval` images, as the Trainer sets it): accuracy
    on the test images (by origin), the share of them that took a second view, and the
    serving_pixels speed beside a single view, timed round-robin. Same weights for every level, so
    the levels differ by their views alone."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from modules import contract, export, preprocessing
    from reports.benchmark_page import SINGLE_VIEW

    transform_output = tft.TFTransformOutput(graph_uri)
    eval_batches = [(preprocessing.scale_pixels(tf.constant(eval_images[i:i + 256])),
                     eval_labels[i:i + 256]) for i in range(0, len(eval_images), 256)]
    forward = single_view(keras_model)
    single = np.concatenate([forward(images[i:i + 256]) for i in range(0, len(images), 256)])
    levels: dict[str, dict] = {}
    calls = {SINGLE_VIEW: (forward, timing_batch(images))}
    with tempfile.TemporaryDirectory(prefix="levels-") as scratch:
        for level in contract.TEST_TIME_AUGMENTATIONS:
            views = export.calibrated_views(keras_model, level, eval_batches)
            folder = os.path.join(scratch, level)
            export.save_serving_model(keras_model, transform_output, folder, views)
            signature = tf.saved_model.load(folder).signatures[contract.PIXELS_SIGNATURE]

            def predict(batch, signature=signature):
                return signature(pixels=tf.constant(batch))[contract.PROBABILITIES_OUTPUT].numpy()

            predictions = predicted_classes(predict, images)
            second_views = (float(np.mean(export.unsure(single, views.unsure_below)))
                            if views.unsure_below is not None else None)
            levels[level] = {**views.settings(),
                             "accuracy": float(np.mean(predictions == labels)),
                             **accuracy_by_origin(predictions, labels, exact),
                             "second_view_share": second_views}
            calls[level] = (predict, timing_batch(images))
        timed = speeds(calls)
    for name, speed_of in timed.items():
        levels.setdefault(name, {}).update(speed_of)
    return levels


def run_pipeline(args, output_dir: str) -> tuple[list[str], float]:
    command = [sys.executable, os.path.join(PROJECT_DIR, "local_runner.py"),
               "--data-dir", args.data_dir, "--output-dir", output_dir,
               *(FAST_PIPELINE_ARGS if args.fast else []), *args.pipeline_args]
    print("$", shlex.join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return command, time.perf_counter() - start


def pipeline_measurements(output_dir: str, images, labels, exact=None,
                          eval_split: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    import tensorflow as tf

    from modules import contract, export
    from reports import benchmark_page, runs

    metadata_path = os.path.join(output_dir, contract.METADATA_FILE)
    outcome = runs.latest_outcome(metadata_path)
    if not outcome.pushed:
        raise SystemExit("error: the pipeline pushed no model; nothing to benchmark.")
    store = runs.open_store(metadata_path)
    spans = runs.training_run_spans(store)
    model_uri = runs.latest_trained_model(store).uri
    with open(os.path.join(runs.latest_artifact(store, "ModelRun").uri,
                           contract.TRAINING_SUMMARY_FILE)) as f:
        summary = json.load(f)
    keras_model, settings = export.load_keras_model(model_uri)
    signatures = tf.saved_model.load(outcome.serving_path).signatures

    def predict(batch):
        return signatures[contract.PIXELS_SIGNATURE](pixels=tf.constant(batch))[
            contract.PROBABILITIES_OUTPUT].numpy()

    costs = serving_costs(signatures, keras_model, images)
    measured = {**measure_predictor(predict, images, labels, exact),
                **costs[contract.PIXELS_SIGNATURE]}  # the page's served speed, timed once
    with open(os.path.join(outcome.tflite_path, contract.TFLITE_METRICS_FILE)) as f:
        tflite = json.load(f)
    levels = {} if eval_split is None else test_time_levels(
        keras_model, runs.latest_artifact(store, "TransformGraph").uri, *eval_split, images,
        labels, exact)
    return {
        **measured,
        "parameters": int(keras_model.count_params()),
        "hyperparameters": summary["hyperparameters"],  # what the Trainer trained (tuned or not)
        **export.settings_serving_views(settings).settings(),
        "test_time_levels": levels,
        "serving_costs": costs,
        "serving_costs_timing": benchmark_page.ROUND_ROBIN_IMAGES,  # as speeds() times them
        "evaluator_test_accuracy": outcome.test_accuracy,
        "pushed_version": outcome.pushed_version,
        "component_seconds": component_seconds(spans),
        "trainer_seconds": spans[contract.TRAINER_NODE][1] - spans[contract.TRAINER_NODE][0],
        "pipeline_seconds": max(e for _, e in spans.values()) - min(s for s, _ in spans.values()),
        "tflite": tflite,
    }


def component_seconds(spans: dict) -> dict[str, float]:
    """node id -> wall seconds, from `runs.training_run_spans` (ML Metadata execution times)."""
    return {node: end - start for node, (start, end) in spans.items()}


def component_wall_seconds(metadata_path: str, latest_run: bool = False) -> dict[str, float]:
    """Each component's wall time, read from ML Metadata: in the run that last trained a model
    (what this page reports), or with `latest_run` in the newest run, where cache hits are left
    out (they did no work). Shared with the scale-out and batch-inference benchmarks."""
    from reports import runs

    store = runs.open_store(metadata_path)
    if not latest_run:
        return component_seconds(runs.training_run_spans(store))
    return component_seconds({
        node: (e.create_time_since_epoch / 1000.0, e.last_update_time_since_epoch / 1000.0)
        for node, e in runs.run_execution_list(store) if runs.state_name(e) == "complete"})


def baseline_measurements(data_dir: str, epochs: int, batch_size: int, images, labels,
                          exact=None) -> dict:
    from benchmarks import baseline
    from components.cifar10_example_gen import executor
    from modules import contract
    from pipeline import configs

    slices = executor.split_slices(configs.PipelineConfig.eval_fraction)
    train = load_split(data_dir, contract.TRAIN_PATTERN, slices["train"])
    evaluation = load_split(data_dir, contract.TRAIN_PATTERN, slices["eval"])
    model, seconds = baseline.train_baseline(*train, *evaluation, epochs, batch_size)
    import tensorflow as tf

    # Traced like the SavedModel's signature, so latencies compare graph with graph.
    call = tf.function(lambda pixels: model(tf.cast(pixels, tf.float32) / 255.0, training=False))

    def predict(batch):
        return call(tf.constant(batch)).numpy()

    return {**measure_predictor(predict, images, labels, exact),
            **speed(predict, timing_batch(images)),
            "parameters": int(model.count_params()),
            "trainer_seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure(verbose=False)
    from modules import contract
    from pipeline import configs
    from reports import benchmark_page

    mode = "fast" if args.fast else "full"
    if args.untuned:
        args.pipeline_args = [*args.pipeline_args, "--no-tune"]
    reference = "untuned" if args.untuned else args.candidate  # beside the tuned run's page
    args.skip_baseline = args.skip_baseline or bool(reference)
    tuned_output_dir = os.path.join(PROJECT_DIR, "benchmarks", "runs", mode)
    output_dir = os.path.abspath(args.output_dir or (
        f"{tuned_output_dir}_{reference}" if reference else tuned_output_dir))
    results_dir = os.path.abspath(args.results_dir or (
        (tuned_output_dir if reference else output_dir) if args.fast
        else os.path.join(PROJECT_DIR, "benchmarks")))
    os.makedirs(results_dir, exist_ok=True)

    speed_before = host_speed()
    command, invocation_seconds = run_pipeline(args, output_dir)
    speed_after = host_speed()
    images, labels, exact = load_split_with_origin(args.data_dir, contract.TEST_PATTERN,
                                                   (0.0, 1.0))
    config = configs.PipelineConfig()
    eval_fraction = float(flag_value(command, "--eval-fraction", config.eval_fraction))
    eval_split = load_split(args.data_dir, contract.TRAIN_PATTERN, (1.0 - eval_fraction, 1.0))
    report = {
        "mode": mode,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([sys.executable.split("/")[-1], *sys.argv]),
        "pipeline_command": shlex.join(command[1:]),
        "machine": {**machine_description(),
                    benchmark_page.HOST_SPEED_KEY: [round(speed_before, 1),
                                                    round(speed_after, 1)]},
        "test_images": int(len(images)),
        "pipeline_invocation_seconds": invocation_seconds,
        "pipeline": pipeline_measurements(output_dir, images, labels, exact, eval_split),
    }
    epochs = int(flag_value(command, "--epochs", config.epochs))
    batch_size = int(flag_value(command, "--batch-size", config.batch_size))
    report["budget"] = {"epochs": epochs, "batch_size": batch_size}
    if not args.skip_baseline:
        report["baseline"] = baseline_measurements(args.data_dir, epochs, batch_size, images,
                                                   labels, exact)
    if args.untuned:
        write_untuned(report, results_dir)
        return 0
    if args.candidate:
        write_candidate(args.candidate, report, results_dir)
        return 0
    benchmark_page.write(report, results_dir)
    print(f"Wrote {os.path.join(results_dir, benchmark_page.RESULTS_MD)}")
    return 0


def write_untuned(untuned: dict, results_dir: str) -> None:
    """The --untuned run's figures beside the tuned run's, whose RESULTS.md is rendered again
    to compare with them when its results.json is there."""
    from reports import benchmark_page

    write_beside_page(untuned, results_dir, benchmark_page.UNTUNED_JSON)


def write_candidate(name: str, candidate: dict, results_dir: str) -> None:
    """A --candidate run's figures in the tuned run's candidates folder; its page is rendered
    again to list them."""
    from reports import benchmark_page

    folder = os.path.join(results_dir, benchmark_page.CANDIDATES_DIR)
    os.makedirs(folder, exist_ok=True)
    write_beside_page(candidate, folder, f"{name}.json", results_dir)


def write_beside_page(run: dict, folder: str, name: str, results_dir: str | None = None) -> None:
    """`run` as folder/name, then the tuned run's RESULTS.md in results_dir (default `folder`)
    rendered again with it, when that run's results.json is there."""
    from benchmarks import common
    from reports import benchmark_page

    results_dir = results_dir or folder
    print(f"Wrote {common.write_json(run, folder, name)}")
    page = benchmark_page.rewrite(results_dir)
    print(f"Wrote {page}" if page else
          f"No {benchmark_page.RESULTS_JSON} in {results_dir} yet: the tuned run's page will "
          f"compare with this one when it is written there.")


def machine_description() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gib = None
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        memory_gib = round(kib / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    import tensorflow as tf

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory_gib,
            "os": platform.platform(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "gpu": bool(tf.config.list_physical_devices("GPU"))}


# The host-speed probe: training steps of a fixed network (today's default block widths and
# activation at the time it was written), so that its figure means the same in every run.
SPEED_PROBE_HPARAMS = {"base_filters": 64, "stage2_width": 2.0, "activation": "gelu",
                       "compute_dtype": "float32"}
SPEED_PROBE_BATCH, SPEED_PROBE_STEPS = 256, 8


def host_speed() -> float:
    """Images per second this host trains the probe network at (median of SPEED_PROBE_STEPS
    steps on random pixels, after two warm-up steps). Hosts of one description differ about 2x
    in speed; this number tells them apart, and a run's Trainer time compares with another's only
    when their hosts' numbers agree."""
    import keras

    from modules import contract
    from modules import model as model_lib

    keras.utils.set_random_seed(0)
    model = model_lib.compile_model(model_lib.build_model(SPEED_PROBE_HPARAMS),
                                    SPEED_PROBE_HPARAMS, 100, SPEED_PROBE_BATCH)
    rng = np.random.default_rng(0)
    images = rng.random((SPEED_PROBE_BATCH, *contract.IMAGE_SHAPE), dtype=np.float32)
    labels = np.eye(contract.NUM_CLASSES, dtype=np.float32)[
        rng.integers(0, contract.NUM_CLASSES, SPEED_PROBE_BATCH)]
    seconds = []
    for step in range(2 + SPEED_PROBE_STEPS):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        if step >= 2:
            seconds.append(time.perf_counter() - start)
    return SPEED_PROBE_BATCH / float(np.median(seconds))


def flag_value(command: list[str], name: str, default):
    """The value local_runner.py will use: the last occurrence of the flag."""
    positions = [i for i, part in enumerate(command[:-1]) if part == name]
    return command[positions[-1] + 1] if positions else default


if __name__ == "__main__":
    sys.exit(main())
