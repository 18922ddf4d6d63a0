"""The benchmark page: results.json (a dict) rendered as RESULTS.md with its plots."""
from __future__ import annotations

import json
import os
import shlex

import numpy as np

from modules import contract
from reports import plots, tables
from reports.document import Document

RESULTS_JSON = "results.json"
RESULTS_MD = "RESULTS.md"
ABLATIONS_JSON = "ablations.json"  # benchmarks/ablations.py's figures; RESULTS.md shows them too
# run_benchmark.py --untuned: the pipeline without its Tuner, set beside the tuned run.
UNTUNED_JSON = "results_untuned.json"
# run_benchmark.py --candidate NAME: a full pipeline run with one change, as candidates/NAME.json.
CANDIDATES_DIR = "candidates"
CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class_f1.png"

TTA_DESCRIPTIONS = {  # how the timed signature treats each image, by test-time augmentation level
    contract.TTA_NONE: "",
    contract.TTA_FLIP: " (which averages each image with its mirror image)",
    contract.TTA_FLIP_TRANSLATE: " (which averages 6 views of each image: it, shifted one pixel "
                                 "down-right and up-left, and their mirror images)",
    contract.TTA_FLIP_IF_UNSURE: " (which averages an image with its mirror image only when its "
                                 "top probability is below the threshold the Trainer set on eval)",
}

# The offline copy's test images by origin (run_benchmark's accuracy_by_origin keys).
ORIGIN_NAMES = {"exact": "original pixels", "jpeg_decoded": "pixels decoded from JPEG"}
# ... and run_benchmark's exact_after_jpeg: the original-pixel images again, JPEG round-tripped
# as the copy's other images were, so that the two rows compare the same images.
EXACT_AFTER_JPEG = "exact_after_jpeg"
ACCURACY_PARTS = {**ORIGIN_NAMES,
                  EXACT_AFTER_JPEG: "original pixels after a JPEG round trip (quality 75)"}
SINGLE_VIEW = "single view"  # serving_costs' key for the bare network's forward pass
# Levers added after runs were first recorded: a record without one trained it off.
PREDATED_LEVERS_OFF = {"lookahead_images": 0, "whitening_bias_share": 0.0, "cutout_size": 0,
                       "compute_dtype": "float32", "translate_pixels": 2}
ROUND_ROBIN = "round-robin"  # serving_costs_timing of runs that timed the rows in turn
# ... and whose batch-1 calls took the images in turn (before: one image throughout).
ROUND_ROBIN_IMAGES = "round-robin, images in turn"
SIGNATURE_INPUT_NAMES = {  # what each timed signature is given, for the serving-cost table
    SINGLE_VIEW: "uint8 pixels, the Keras model alone, no test-time views",
    contract.PIXELS_SIGNATURE: "uint8 pixels",
    contract.SERVING_SIGNATURE: "PNG bytes",
    contract.EXAMPLES_SIGNATURE: "serialized tf.Examples holding PNGs",
}


def _served_vs_single_view(report: dict, measure: str) -> float | None:
    """The pushed model's pixels signature over a plain single-view forward of the same network
    (None for runs from before serving_costs were measured)."""
    costs = report["pipeline"].get("serving_costs")
    if not costs:
        return None
    return costs[contract.PIXELS_SIGNATURE][measure] / costs[SINGLE_VIEW][measure]


def _serving_costs_provenance(model: dict) -> str:
    """When and on what the serving costs were timed, if not in the run itself."""
    if "serving_costs_export" in model:  # benchmarks/serving_costs.py
        return (f" Timed {model['serving_costs_date']} on this run's trained network "
                f"{model['serving_costs_export']}, after the run "
                f"(`{model['serving_costs_command']}`); accuracy is the pushed model's.")
    if "serving_costs_date" in model:
        return f" Timed {model['serving_costs_date']} on this run's pushed model, after the run."
    return ""


def _tuner_share(report: dict) -> float | None:
    seconds = report["pipeline"]["component_seconds"]
    if contract.TUNER_NODE not in seconds:
        return None
    return seconds[contract.TUNER_NODE] / seconds[contract.TRAINER_NODE]


MACHINE_KEYS = ("cpu", "cores", "memory_gib", "gpu")  # what two runs' times need in common


# run_benchmark.host_speed, before and after the run: hosts of one description differ ~2x.
HOST_SPEED_KEY = "train_images_per_s"
HOST_SPEED_TOLERANCE = 1.15  # two runs' times compare when their hosts' figures are this close


def host_speed(machine: dict) -> float | None:
    """The mean of a run's host-speed figures (None for runs from before they were taken)."""
    figures = machine.get(HOST_SPEED_KEY)
    return sum(figures) / len(figures) if figures else None


def speeds_agree(speed: float, reference_speed: float) -> bool:
    """Whether two hosts' probe figures are close enough for their wall times to compare."""
    return max(speed / reference_speed, reference_speed / speed) <= HOST_SPEED_TOLERANCE


def incomparable_times(report: dict, untuned: dict) -> str | None:
    """Why the two runs' times do not compare (None when they do): another kind of machine, a
    host of another speed (or one not measured, where the other was), another mode (fast/full)
    or another training budget."""
    if any(report["machine"].get(key) != untuned["machine"].get(key) for key in MACHINE_KEYS):
        return f"on another machine ({machine_text(untuned['machine'])})"
    speed, reference_speed = host_speed(report["machine"]), host_speed(untuned["machine"])
    if speed is not None or reference_speed is not None:  # older runs: by description alone
        if speed is None or reference_speed is None:
            return ("on a host whose speed was not measured" if reference_speed is None else
                    f"on a host that trained the probe at {reference_speed:,.0f} images/s, "
                    "this run's host not measured")
        if not speeds_agree(speed, reference_speed):
            return (f"on a host that trained the probe at {reference_speed:,.0f} images/s, "
                    f"this one at {speed:,.0f}")
    if report.get("mode") != untuned.get("mode"):
        return f"a {untuned.get('mode')} run, this one is {report.get('mode')}"
    if report.get("budget") != untuned.get("budget"):
        return f"another budget ({untuned.get('budget')})"
    return None


def _trainer_vs_untuned(report: dict, untuned: dict | None) -> float | None:
    """The default DAG's Trainer (tuned values) over the defaults' Trainer (--untuned run), when
    the two runs' times compare."""
    if not untuned or incomparable_times(report, untuned):
        return None
    return report["pipeline"]["trainer_seconds"] / untuned["pipeline"]["trainer_seconds"]


def _points(value: float) -> str:
    return f"{value * 100:.2f} points"


def _times(value: float) -> str:
    return f"{value:.2f}x"


# (label, value getter of (report, untuned report or None), test, shown goal, formatter)
TARGETS = [  # issue #17's targets
    ("Test accuracy of the pushed SavedModel", lambda r, _: r["pipeline"]["accuracy"],
     lambda v: v >= 0.92, ">= 92% (aim 93%)", "{:.2%}".format),
    ("Parameters", lambda r, _: r["pipeline"]["parameters"], lambda v: v <= 1_000_000, "<= 1.0M",
     "{:,}".format),
    ("Views averaged per image (test-time augmentation)",
     lambda r, _: contract.TTA_VIEWS[r["pipeline"]["test_time_augmentation"]], lambda v: v <= 2,
     "<= 2", str),
    ("Served throughput at batch 256 vs. a single view",
     lambda r, _: _served_vs_single_view(r, "throughput_images_per_s_batch256"),
     lambda v: v >= 0.5, ">= 0.5x", _times),
    ("Served latency at batch 1 vs. a single view",
     lambda r, _: _served_vs_single_view(r, "latency_ms_batch1"), lambda v: v <= 1.3, "<= 1.3x",
     _times),
    ("int8 TFLite accuracy drop", lambda r, _: r["pipeline"]["tflite"]["accuracy_drop"],
     lambda v: v <= 0.003, "<= 0.3 points", _points),
    ("int8 TFLite vs. float weights size",
     lambda r, _: r["pipeline"]["tflite"]["size_ratio_vs_float_weights"], lambda v: v >= 3.8,
     ">= 3.8x smaller", _times),
    ("Tuner wall time vs. the Trainer's", lambda r, _: _tuner_share(r), lambda v: v <= 0.2,
     "<= 0.20x", _times),
    ("Trainer wall time vs. the defaults' (--untuned run)", _trainer_vs_untuned,
     lambda v: v <= 1.1, "<= 1.1x", _times),
]


def _target_rows(report: dict, untuned: dict | None = None) -> list[list[str]]:
    rows = []
    for label, get, test, goal, formatter in TARGETS:
        value = get(report, untuned)
        rows.append([label, "-" if value is None else formatter(value), goal,
                     "not measured" if value is None else "yes" if test(value) else "**no**"])
    return rows


def _serving_cost_rows(model: dict) -> list[list[str]]:
    costs = model["serving_costs"]
    single = costs[SINGLE_VIEW]["throughput_images_per_s_batch256"]
    return [[f"`{name}`" if name != SINGLE_VIEW else name, SIGNATURE_INPUT_NAMES[name],
             f"{cost['latency_ms_batch1']:.2f} ms",
             f"{cost['throughput_images_per_s_batch256']:,.0f} img/s",
             _times(cost["throughput_images_per_s_batch256"] / single)]
            for name, cost in costs.items()]


def add_test_time_levels(doc: Document, levels: dict[str, dict]) -> None:
    """Every test-time level on the run's network (run_benchmark.test_time_levels)."""
    single = levels[SINGLE_VIEW]
    doc.heading(2, "Test-time levels")
    doc.para("This run's trained network exported again at every level of "
             "`--test-time-augmentation`, the same weights for all: accuracy on the test images, "
             "the views per image (for the gated level, 1 plus the share of them that took a "
             "second view), and the `serving_pixels` signature's "
             "speed beside a plain single-view forward pass, timed in turn as above (latency: "
             "median and mean of 100 calls of 1 image, the first 100 test images in turn). "
             f"`{contract.TTA_FLIP_IF_UNSURE}` mirrors an image only when its top probability "
             "on the first view is below a threshold the Trainer sets on the `eval` split: the "
             f"lowest from which on it scores there as `{contract.TTA_FLIP}` does, with at least "
             f"{contract.TTA_MIN_SECOND_VIEW_SHARE:.0%} of the images taking the mirror.")
    rows = []
    for name, level in levels.items():
        if name == SINGLE_VIEW:
            continue
        share = level.get("second_view_share")
        origin = [_percent(level.get(key, {}).get("accuracy")) for key in ORIGIN_NAMES]
        rows.append([
            f"`{name}`",
            "-" if level.get("unsure_below") is None else f"{level['unsure_below']:.3f}",
            f"{contract.TTA_VIEWS[name]}" if share is None else f"{1.0 + share:.2f}",
            _percent(level["accuracy"]), *origin,
            f"{level['latency_ms_batch1']:.2f} / {level['latency_ms_batch1_mean']:.2f} ms",
            _times(level["latency_ms_batch1"] / single["latency_ms_batch1"]),
            f"{level['throughput_images_per_s_batch256']:,.0f} img/s",
            _times(level["throughput_images_per_s_batch256"]
                   / single["throughput_images_per_s_batch256"])])
    rows.append([SINGLE_VIEW, "-", "-", "-", "-", "-",
                 f"{single['latency_ms_batch1']:.2f} / {single['latency_ms_batch1_mean']:.2f} ms",
                 "1.00x", f"{single['throughput_images_per_s_batch256']:,.0f} img/s", "1.00x"])
    doc.table(["Level", "Threshold", "Views per image", "Accuracy", "Exact", "JPEG",
               "Latency, batch 1", "vs. single view", "Throughput, batch 256",
               "vs. single view"], rows,
              numeric=[False, True, True, True, True, True, True, True, True, True])


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def machine_text(machine: dict) -> str:
    """benchmarks.run_benchmark.machine_description's dict as one phrase of a page."""
    speed = host_speed(machine)
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
            f"{'a GPU' if machine['gpu'] else 'no GPU'}"
            + ("" if speed is None else
               f", training the host-speed probe at {speed:,.0f} images/s")
            + f" ({machine['os']}, Python {machine['python']}, TensorFlow "
              f"{machine['tensorflow']})")


def _ratio(model: float, base: float) -> str:
    return _times(model / base)


def _origin_rows(model: dict, base: dict | None) -> list[tuple]:
    """Accuracy on the offline copy's original images and on its JPEG-decoded ones, apart."""
    rows = []
    for origin, name in ACCURACY_PARTS.items():
        part = model.get("accuracy_by_origin", {}).get(origin)
        if not part or part["accuracy"] is None:
            continue
        theirs = (base or {}).get("accuracy_by_origin", {}).get(origin)
        rows.append((f"Test accuracy, {part['images']:,} images with {name}",
                     f"{part['accuracy']:.2%}",
                     theirs and theirs["accuracy"] is not None and f"{theirs['accuracy']:.2%}",
                     None))
    return rows


def _comparison_rows(report: dict) -> list[list[str]]:
    """The pipeline model beside the baseline: accuracy, size, training time, speed."""
    model, base = report["pipeline"], report.get("baseline")
    throughput = "throughput_images_per_s_batch256"
    rows = [
        ("Test accuracy", f"{model['accuracy']:.2%}", base and f"{base['accuracy']:.2%}",
         base and f"{(1 - base['accuracy']) / max(1 - model['accuracy'], 1e-9):.2f}x fewer "
                  f"errors"),
        *_origin_rows(model, base),
        ("Parameters", f"{model['parameters']:,}", base and f"{base['parameters']:,}",
         base and _ratio(model["parameters"], base["parameters"])),
        ("Training wall time", _minutes(model["trainer_seconds"]),
         base and _minutes(base["trainer_seconds"]),
         base and _ratio(model["trainer_seconds"], base["trainer_seconds"])),
        ("SavedModel latency, batch 1", f"{model['latency_ms_batch1']:.2f} ms",
         base and f"{base['latency_ms_batch1']:.2f} ms",
         base and _ratio(model["latency_ms_batch1"], base["latency_ms_batch1"])),
        ("Throughput, batch 256", f"{model[throughput]:,.0f} img/s",
         base and f"{base[throughput]:,.0f} img/s",
         base and _ratio(model[throughput], base[throughput])),
    ]
    return [[label, mine, theirs or "-", ratio or "-"] for label, mine, theirs, ratio in rows]


def build(report: dict, images: dict[str, str], untuned: dict | None = None) -> Document:
    """The page as a Document: targets, the baseline comparison, the tuned run beside the
    `untuned` one when given, per class, TFLite, timings."""
    model = report["pipeline"]
    tflite = model["tflite"]
    machine = report["machine"]
    doc = Document()
    doc.heading(1, f"Benchmark results ({report['mode']} run)")
    doc.para(f"Measured {report['date']} on {machine_text(machine)}.")
    doc.para(f"Command: `{report['command']}`  \n"
             f"Pipeline: `{report['pipeline_command']}`  \n"
             f"Test set: {report['test_images']:,} images of `{contract.TEST_BATCH_FILE}`; budget "
             f"{report['budget']['epochs']} epochs at batch {report['budget']['batch_size']}"
             + (" for both models" if "baseline" in report else "") +
             f". SavedModel timings through the `{contract.PIXELS_SIGNATURE}` signature"
             + TTA_DESCRIPTIONS[model["test_time_augmentation"]] + ".")
    doc.heading(2, "Targets")
    doc.table(["Target", "Measured", "Goal", "Met"], _target_rows(report, untuned),
              numeric=[False, True, True, False])
    doc.para(("Served accuracy is the pushed SavedModel's; its serving speeds are the same "
              "network's, exported again (Serving cost, below). "
              if "serving_costs_export" in model else
              "Served figures are the pushed SavedModel's. ")
             + "The Trainer's time against the "
             "defaults' needs a run without the Tuner on the same kind of machine, as fast a "
             "host and the same budget ("
             + ("`run_benchmark.py --untuned`, below" if untuned else
                f"`run_benchmark.py --untuned`, which writes `{UNTUNED_JSON}` beside this page")
             + "); each ablation lever's is in the ablations, on a short budget.")
    doc.heading(2, "Pipeline model vs. baseline")
    doc.table(["", "Pipeline model", "Baseline (original style)", "Ratio"],
              _comparison_rows(report), numeric=[False, True, True, True])
    if "baseline" not in report:
        doc.para("The baseline was not trained in this run (`--skip-baseline`).")
    if untuned:
        add_tuning_comparison(doc, report, untuned)
    if "serving_costs" in model:
        doc.heading(2, "Serving cost")
        timing = model.get("serving_costs_timing")
        doc.para("Each signature of the pushed SavedModel on the input it takes, beside a plain "
                 "forward pass of the same network on one view: median of 100 calls of 1 image "
                 + ("(the first 100 test images in turn) " if timing == ROUND_ROBIN_IMAGES
                    else "")
                 + "and of 10 calls of 256 images, in this process, "
                 + ("taken in turn across the rows (so that a change in the host's load falls "
                    "on all of them alike)." if timing in (ROUND_ROBIN, ROUND_ROBIN_IMAGES)
                    else "one row after the other.")
                 + _serving_costs_provenance(model))
        doc.table(["Signature", "Input", "Latency, batch 1", "Throughput, batch 256",
                   "vs. single view"], _serving_cost_rows(model),
                  numeric=[False, False, True, True, True])
    if model.get("test_time_levels"):
        add_test_time_levels(doc, model["test_time_levels"])
    doc.heading(2, "Per-class metrics (pipeline model, test set)")
    doc.add(tables.per_class_table(model["per_class"],
                                   report.get("baseline", {}).get("per_class")))
    doc.image(images["confusion"], "confusion matrix")
    if "f1" in images:
        doc.image(images["f1"], "per-class F1")
    doc.heading(2, "TFLite")
    doc.add(tables.tflite_table(tflite))
    doc.para(f"Verified by the TFLiteConverter component on {tflite['verified_images']:,} test "
             f"images with the LiteRT interpreter, one image per call on one CPU thread.")
    doc.heading(2, "Where the pipeline's time went")
    doc.table(["Component", "Wall time"],
              [[node, f"{seconds:,.0f} s"] for node, seconds in
               sorted(model["component_seconds"].items(), key=lambda kv: -kv[1])],
              numeric=[False, True])
    return doc


def _hyperparameter_changes(report: dict) -> str:
    """What the Tuner changed from its first trial, the defaults: "name value (default
    value)"; runs from before the benchmark recorded the values say so."""
    tuned = report["pipeline"].get("hyperparameters")
    if contract.TUNER_NODE not in report["pipeline"]["component_seconds"]:
        return "no Tuner in this run"
    if tuned is None:
        return "not recorded"
    return changes_from_defaults(tuned) or "none: the search kept the defaults"


def _untuned_values(trained: dict | None) -> str:
    """Whether the reference run trained today's defaults (defaults change; runs stay)."""
    if trained is None:
        return "its values not recorded"
    changed = changes_from_defaults(trained)
    return ("it trained exactly today's defaults" if not changed else
            f"it trained {changed}: not today's defaults")


def changes_from_defaults(trained: dict) -> str:
    """What a run trained that today's defaults do not ("" when nothing): defaults change, runs
    stay, so an older run says what it trained instead."""
    return ", ".join(changed_values(trained_values(trained), contract.DEFAULT_HPARAMS))


def trained_values(recorded: dict) -> dict:
    """A run's recorded hyperparameters with the levers it predates, which it trained off."""
    return {**PREDATED_LEVERS_OFF, **recorded}


def changed_values(values: dict, defaults: dict) -> list[str]:
    """"name value (default value)" for each value that differs from the defaults."""
    return [f"{name} {_short(values[name])} (default {_short(defaults.get(name))})"
            for name in sorted(values) if values[name] != defaults.get(name)]


def _accuracy_row(label: str, tuned: float, default: float | None) -> tuple[str, ...]:
    if default is None:
        return label, f"{tuned:.2%}", "-", "-"
    return label, f"{tuned:.2%}", f"{default:.2%}", f"{100 * (tuned - default):+.2f} points"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def add_tuning_comparison(doc: Document, report: dict, untuned: dict) -> None:
    """The default DAG (its Trainer trains the Tuner's values) beside the same pipeline without
    its Tuner (run_benchmark.py --untuned): what the search bought and what it cost."""
    tuned_model, default_model = report["pipeline"], untuned["pipeline"]
    reason = incomparable_times(report, untuned)
    doc.heading(2, "Tuned vs. the defaults (issue #17)")
    doc.para("The default DAG's Trainer trains the Tuner's best values; the reference is the same "
             f"pipeline without its Tuner (`--untuned`, i.e. `--no-tune`), measured "
             f"{untuned['date']} with `{untuned['command']}` "
             f"({_untuned_values(default_model.get('hyperparameters'))}), "
             + (f"{reason}, so its times do not compare with this run's." if reason else
                "on a machine of the same description (CPU, cores, memory, GPU)"
                + (", a host of the same speed (the probe's figures within "
                   f"{HOST_SPEED_TOLERANCE - 1:.0%})" if host_speed(untuned["machine"]) else "")
                + " and the same budget."))
    seconds = tuned_model["component_seconds"]
    tuned_int8, default_int8 = (model["tflite"]["tflite"]["accuracy"]
                                for model in (tuned_model, default_model))
    rows = [
        ("Values the Tuner changed", _hyperparameter_changes(report), "-", "-"),
        _accuracy_row("Served test accuracy", tuned_model["accuracy"],
                      default_model["accuracy"]),
        *(_accuracy_row(f"- on the {part['images']:,} images with {ACCURACY_PARTS[origin]}",
                        part["accuracy"],
                        default_model.get("accuracy_by_origin", {}).get(origin, {}).get(
                            "accuracy"))
          for origin, part in tuned_model.get("accuracy_by_origin", {}).items()
          if origin in ACCURACY_PARTS and part["accuracy"] is not None),
        _accuracy_row("int8 TFLite test accuracy", tuned_int8, default_int8),
        ("Trainer wall time", _minutes(tuned_model["trainer_seconds"]),
         _minutes(default_model["trainer_seconds"]),
         _ratio(tuned_model["trainer_seconds"], default_model["trainer_seconds"])),
        ("Tuner wall time", _minutes(seconds[contract.TUNER_NODE])
         if contract.TUNER_NODE in seconds else "-", "-", "-"),
        ("Pipeline wall time", _minutes(tuned_model["pipeline_seconds"]),
         _minutes(default_model["pipeline_seconds"]),
         _ratio(tuned_model["pipeline_seconds"], default_model["pipeline_seconds"])),
    ]
    doc.table(["", "Tuned (default DAG)", "Defaults (--untuned)", "Difference"],
              [list(row) for row in rows], numeric=[False, True, True, True])
    doc.para("One run of each: an accuracy difference within the seed-to-seed spread of one "
             "setting (measured by benchmarks/ablations.py) may be noise.")


# local_runner.py flags every benchmark run sets itself: not what tells candidates apart.
_RUN_FLAGS = ("--data-dir", "--output-dir")


def pipeline_flags(run: dict) -> str:
    """The local_runner.py flags a run chose, beyond where its data and outputs are."""
    words, flags = shlex.split(run.get("pipeline_command", ""))[1:], []
    while words:
        word = words.pop(0)
        if word in _RUN_FLAGS and words:
            words.pop(0)
        elif not word.startswith(_RUN_FLAGS):
            flags.append(word)
    return " ".join(flags) or "(none)"


def add_candidates(doc: Document, report: dict, untuned: dict | None,
                   candidates: dict[str, dict]) -> None:
    """Full pipeline runs of levers the ablations found (run_benchmark.py --candidate), beside
    the default DAG and the defaults without the Tuner: the final word on a lever is its full
    run, not its short-budget ablation."""
    doc.heading(2, "Full-budget candidates (issue #17)")
    doc.para("Each candidate is the whole pipeline on the full budget with one change "
             "(`run_benchmark.py --candidate NAME -- FLAGS`, recorded in "
             f"`{CANDIDATES_DIR}/NAME.json`), beside this page's run and the defaults without "
             "the Tuner. One run each. The Trainer is compared with the defaults' only when run "
             "on a machine of the same description, host speed and budget; *throughput* and "
             "*latency* are "
             "`serving_pixels` over a single view of the same network (batch 256 and batch 1).")
    runs = [("default DAG (this page)", report),
            *([("defaults (--untuned)", untuned)] if untuned else []), *candidates.items()]
    rows = []
    for name, run in runs:
        model = run["pipeline"]
        parts = model.get("accuracy_by_origin", {})
        trainer_vs = ("-" if untuned is None or incomparable_times(run, untuned) else
                      _ratio(model["trainer_seconds"], untuned["pipeline"]["trainer_seconds"]))
        throughput, latency = (
            _served_vs_single_view(run, measure)
            for measure in ("throughput_images_per_s_batch256", "latency_ms_batch1"))
        trained = model.get("hyperparameters")
        rows.append([name, f"`{pipeline_flags(run)}`",
                     "not recorded" if trained is None else
                     changes_from_defaults(trained) or "the defaults",
                     f"`{model['test_time_augmentation']}`",
                     f"{model['parameters']:,}",
                     _percent(model["accuracy"]),
                     *(_percent(parts.get(origin, {}).get("accuracy"))
                       for origin in ACCURACY_PARTS),
                     _percent(model["tflite"]["tflite"]["accuracy"]),
                     _minutes(model["trainer_seconds"]), trainer_vs,
                     "-" if throughput is None else _times(throughput),
                     "-" if latency is None else _times(latency), run["date"]])
    doc.table(["Run", "Pipeline flags", "Trained with", "Served level", "Parameters", "Served",
               "Exact", "JPEG", "Exact as JPEG", "int8", "Trainer", "vs. defaults", "Throughput",
               "Latency", "Date"], rows, numeric=[False, False, False, False, *[True] * 10, False])


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.2%}"


def load_text(record: dict) -> str:
    """'before → after' of the 1-minute load of a measured record (benchmarks.common.measured);
    '-' when not measured."""
    return (f"{record['load_before'][0]:.2f} → {record['load_after'][0]:.2f}"
            if "load_before" in record else "-")


def add_ablations(doc: Document, ablations: dict) -> None:
    """benchmarks/ablations.py's table: each lever's parameters, time and accuracy beside the
    defaults trained with the same seed, on one fixed budget (short, or the pipeline's full one);
    then how far apart two seeds of one variant land (the noise a lever must beat)."""
    variants = ablations["variants"]
    by_key = {(v["variant"], v.get("seed")): v for v in variants}
    first_defaults = next((v for v in variants if v["variant"] == "defaults"), None)
    budget = "the full" if ablations["epochs"] >= contract.DEFAULT_EPOCHS else "a short"
    doc.heading(2, f"Ablations on {budget} budget (issue #17)")
    doc.para(f"Completed {ablations['date']} on {machine_text(ablations['machine'])} with "
             f"`{ablations['command']}`, which keeps the rows earlier runs measured for the same "
             f"budget (each row's own date and load are in `{ABLATIONS_JSON}`): "
             f"{ablations['epochs']} epochs at batch "
             f"{ablations['batch_size']} for every variant, same data; accuracy on the "
             f"{variants[0]['test_images'] if variants else 0:,} images of "
             f"`{contract.TEST_BATCH_FILE}`. Each variant is `modules.training.run_fn` with its "
             f"levers set and the row's seed; *2 views* is the exported SavedModel (the image and "
             f"its mirror), *1 view* the Keras model alone; *exact* and *JPEG* split the 2-view "
             f"accuracy by the image's origin in the offline copy, and *exact as JPEG* scores "
             f"the exact ones again after a JPEG round trip like the copy's (quality 75): the "
             f"same images both ways, so the gap is what the copy's JPEG costs. Time is "
             f"run_fn's own (training and export); *vs. defaults* compares with the defaults "
             f"of the same seed (a row trained over earlier defaults, with the row named after "
             f"*against*).")
    rows, other_hosts = [], False
    for v in variants:
        base = by_key.get((v.get("baseline", "defaults"), v.get("seed")), first_defaults)
        origin = v["accuracy_2_views_by_origin"]
        speed = host_speed(v)
        time_ratio = "-"
        if base:
            base_speed = host_speed(base)
            same_speed = speed is not None and base_speed is not None and speeds_agree(
                speed, base_speed)
            other_hosts = other_hosts or not same_speed
            time_ratio = (f"{v['train_seconds'] / base['train_seconds']:.2f}x"
                          + ("" if same_speed else " *"))
        rows.append([
            v["variant"], v.get("lever", "-"), str(v.get("seed", "-")), f"{v['parameters']:,}",
            f"{v['train_seconds'] / 60:.1f} min", time_ratio,
            f"{v['accuracy_1_view']:.2%}", f"{v['accuracy_2_views']:.2%}",
            (f"{100 * (v['accuracy_2_views'] - base['accuracy_2_views']):+.2f} pts"
             if base else "-"),
            *(_percent(origin.get(part, {}).get("accuracy")) for part in ACCURACY_PARTS),
            f"{speed:,.0f}" if speed is not None else "-", load_text(v)])
    doc.table(["Variant", "Lever", "Seed", "Parameters", "Time", "vs. defaults", "1 view",
               "2 views", "2 views vs. defaults", "Exact", "JPEG", "Exact as JPEG", "Host speed",
               "1-min load"], rows, numeric=[False, False, *[True] * 11, False])
    doc.para("*Host speed*: images/s at which the host trained the host-speed probe "
             "(`benchmarks/run_benchmark.py`'s, before and after the row's training, averaged); "
             "hosts of one description differ about 2x." + (
                 f" A time ratio marked * compares rows whose hosts were not both probed or whose "
                 f"probes differ by more than {HOST_SPEED_TOLERANCE - 1:.0%}: it mixes the host's "
                 f"speed with the lever's." if other_hosts else ""))
    spreads = seed_spreads(variants)
    if spreads:
        doc.para("Seed to seed, same variant (the noise a lever's gain must beat): " + "; ".join(
            f"{name} {low:.2%} to {high:.2%} with {count} seeds ({100 * (high - low):.2f} pts "
            f"apart, 2 views)" for name, (count, low, high) in spreads.items()) + ".")
    else:
        doc.para("One seed per variant: differences of a few tenths of a point may be noise.")


def seed_spreads(variants: list[dict]) -> dict[str, tuple[int, float, float]]:
    """variant -> (seeds, lowest, highest 2-view accuracy), for variants run with 2+ seeds."""
    accuracies: dict[str, list[float]] = {}
    for v in variants:
        accuracies.setdefault(v["variant"], []).append(v["accuracy_2_views"])
    return {name: (len(values), min(values), max(values))
            for name, values in accuracies.items() if len(values) > 1}


def render(report: dict, images: dict[str, str], ablations: dict | None = None,
           untuned: dict | None = None, candidates: dict[str, dict] | None = None) -> str:
    """RESULTS.md's text; with benchmarks/ablations.py's figures, the --untuned run's and the
    --candidate runs' when given."""
    doc = build(report, images, untuned)
    if candidates:
        add_candidates(doc, report, untuned, candidates)
    if ablations:
        add_ablations(doc, ablations)
    return doc.to_markdown()


def candidates_beside(results_dir: str) -> dict[str, dict]:
    """name -> report of each --candidate run recorded in results_dir, by name."""
    folder = os.path.join(results_dir, CANDIDATES_DIR)
    if not os.path.isdir(folder):
        return {}
    return {name.removesuffix(".json"): json_beside(folder, name)
            for name in sorted(os.listdir(folder)) if name.endswith(".json")}


def json_beside(results_dir: str, name: str) -> dict | None:
    """A JSON file of results_dir, None when it is not there."""
    path = os.path.join(results_dir, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def rewrite(results_dir: str) -> str | None:
    """RESULTS.md rendered again from the results.json in results_dir (after the figures beside
    it changed); its path, or None when there is no results.json there."""
    report = json_beside(results_dir, RESULTS_JSON)
    if report is None:
        return None
    write(report, results_dir)
    return os.path.join(results_dir, RESULTS_MD)


def write(report: dict, results_dir: str) -> None:
    """results.json, confusion_matrix.png, per_class_f1.png and RESULTS.md in results_dir."""
    os.makedirs(results_dir, exist_ok=True)
    images = {"confusion": CONFUSION_PNG, "f1": PER_CLASS_PNG}
    plots.plot_confusion_matrix(np.array(report["pipeline"]["confusion_matrix"]),
                                os.path.join(results_dir, CONFUSION_PNG),
                                "Pipeline model on the test set")
    f1 = {"pipeline model": [r["f1"] for r in report["pipeline"]["per_class"]]}
    if "baseline" in report:
        f1["baseline"] = [r["f1"] for r in report["baseline"]["per_class"]]
    plots.plot_bars(f1, contract.CLASS_NAMES, os.path.join(results_dir, PER_CLASS_PNG),
                    "Per-class F1 on the test set", "F1")
    with open(os.path.join(results_dir, RESULTS_JSON), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    with open(os.path.join(results_dir, RESULTS_MD), "w") as f:
        f.write(render(report, images, json_beside(results_dir, ABLATIONS_JSON),
                       json_beside(results_dir, UNTUNED_JSON), candidates_beside(results_dir)))
