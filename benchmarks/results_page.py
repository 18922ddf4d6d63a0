"""Renders benchmark results (a dict, also saved as results.json) into RESULTS.md with plots."""
from __future__ import annotations

import json
import os

import numpy as np

from modules import constants
from pipeline import reporting

TTA_DESCRIPTIONS = {  # how the timed signature treats each image, by test-time augmentation level
    constants.TTA_NONE: "",
    constants.TTA_FLIP: " (which averages each image with its mirror image)",
    constants.TTA_FLIP_TRANSLATE: " (which averages 6 views of each image: it, shifted one pixel "
                                  "down-right and up-left, and their mirror images)",
}

TARGETS = [  # (label, value getter, test, shown target)
    ("Test accuracy of the pushed SavedModel", lambda r: r["pipeline"]["accuracy"],
     lambda v: v >= 0.90, ">= 90% (aim 93%)"),
    ("Parameters", lambda r: r["pipeline"]["parameters"], lambda v: v <= 1_000_000, "<= 1.0M"),
    ("Trainer wall time", lambda r: r["pipeline"]["trainer_seconds"], lambda v: v <= 45 * 60,
     "<= 45 min"),
    ("Whole pipeline wall time", lambda r: r["pipeline"]["pipeline_seconds"],
     lambda v: v <= 60 * 60, "<= 60 min"),
    ("int8 TFLite accuracy drop", lambda r: r["pipeline"]["tflite"]["accuracy_drop"],
     lambda v: v <= 0.01, "<= 1 point"),
    ("int8 TFLite vs float weights size", lambda r: r["pipeline"]["tflite"][
        "size_ratio_vs_float_weights"], lambda v: v >= 3.5, ">= 3.5x smaller"),
]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _format(label: str, value) -> str:
    if "accuracy drop" in label:
        return f"{value * 100:.2f} points"
    if "accuracy" in label.lower():
        return f"{value:.2%}"
    if "time" in label:
        return _minutes(value)
    if "size" in label:
        return f"{value:.2f}x"
    return f"{value:,}"


def _comparison(report: dict) -> list[str]:
    model, base = report["pipeline"], report.get("baseline")
    rows = [
        ("Test accuracy", f"{model['accuracy']:.2%}", base and f"{base['accuracy']:.2%}",
         base and f"{(1 - base['accuracy']) / max(1 - model['accuracy'], 1e-9):.2f}x fewer errors"),
        ("Parameters", f"{model['parameters']:,}", base and f"{base['parameters']:,}",
         base and f"{model['parameters'] / base['parameters']:.2f}x"),
        ("Training wall time", _minutes(model["trainer_seconds"]),
         base and _minutes(base["trainer_seconds"]),
         base and f"{model['trainer_seconds'] / base['trainer_seconds']:.2f}x"),
        ("SavedModel latency, batch 1", f"{model['latency_ms_batch1']:.2f} ms",
         base and f"{base['latency_ms_batch1']:.2f} ms",
         base and f"{model['latency_ms_batch1'] / base['latency_ms_batch1']:.2f}x"),
        ("Throughput, batch 256", f"{model['throughput_images_per_s_batch256']:,.0f} img/s",
         base and f"{base['throughput_images_per_s_batch256']:,.0f} img/s",
         base and f"{model['throughput_images_per_s_batch256'] / base['throughput_images_per_s_batch256']:.2f}x"),
    ]
    lines = ["| | Pipeline model | Baseline (original style) | Ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c or '-'} | {d or '-'} |" for a, b, c, d in rows]
    return lines


def render(report: dict, images: dict) -> str:
    model = report["pipeline"]
    tflite = model["tflite"]
    machine = report["machine"]
    lines = [
        f"# Benchmark results ({report['mode']} run)",
        "",
        f"Measured {report['date']} on {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, {'a GPU' if machine['gpu'] else 'no GPU'} "
        f"({machine['os']}, Python {machine['python']}, TensorFlow {machine['tensorflow']}).",
        "",
        f"Command: `{report['command']}`  ",
        f"Pipeline: `{report['pipeline_command']}`  ",
        f"Test set: {report['test_images']:,} images of `test_batch.bin`; budget "
        f"{report['budget']['epochs']} epochs at batch {report['budget']['batch_size']} for both "
        f"models. SavedModel timings through the `serving_pixels` signature"
        + TTA_DESCRIPTIONS[model["test_time_augmentation"]]
        + ".",
        "",
        "## Targets",
        "",
        "| Target | Measured | Goal | Met |",
        "|---|---:|---:|:---:|",
    ]
    for label, get, test, goal in TARGETS:
        value = get(report)
        lines.append(f"| {label} | {_format(label, value)} | {goal} | "
                     f"{'yes' if test(value) else '**no**'} |")
    lines += ["", "## Pipeline model vs. baseline", "", *_comparison(report), "",
              "## Per-class metrics (pipeline model, test set)", "",
              reporting.per_class_markdown(model["per_class"],
                                           report.get("baseline", {}).get("per_class")),
              "", f"![confusion matrix]({images['confusion']})", ""]
    if "f1" in images:
        lines += [f"![per-class F1]({images['f1']})", ""]
    lines += [
        "## TFLite", "",
        "| Model | Size | Test accuracy | Agreement with float | Latency (1 image, 1 thread) |",
        "|---|---:|---:|---:|---:|",
        f"| Float SavedModel (float32 weights) | {tflite['float_savedmodel']['weights_bytes'] / 1024:,.0f} KB | "
        f"{tflite['float_savedmodel']['accuracy']:.2%} | - | {tflite['float_savedmodel']['latency_ms']:.2f} ms |",
    ]
    for name, key in (("TFLite float32", "tflite_float32"), (f"TFLite {tflite['mode']}", "tflite")):
        m = tflite[key]
        lines.append(f"| {name} | {m['size_bytes'] / 1024:,.0f} KB | {m['accuracy']:.2%} | "
                     f"{m['agreement_with_float']:.2%} | {m['latency_ms']:.2f} ms |")
    lines += ["", f"Verified by the TFLiteConverter component on {tflite['verified_images']:,} "
              f"test images with the LiteRT interpreter.", "",
              "## Where the pipeline's time went", "", "| Component | Wall time |", "|---|---:|"]
    for node, seconds in sorted(model["component_seconds"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {node} | {seconds:,.0f} s |")
    lines.append("")
    return "\n".join(lines)


def write(report: dict, results_dir: str) -> None:
    """results.json, confusion_matrix.png, per_class_f1.png and RESULTS.md in results_dir."""
    images = {"confusion": "confusion_matrix.png"}
    reporting.plot_confusion_matrix(np.array(report["pipeline"]["confusion_matrix"]),
                                    os.path.join(results_dir, images["confusion"]),
                                    "Pipeline model on the test set")
    if "baseline" in report:
        images["f1"] = "per_class_f1.png"
        reporting.plot_bars(
            {"pipeline model": [r["f1"] for r in report["pipeline"]["per_class"]],
             "baseline": [r["f1"] for r in report["baseline"]["per_class"]]},
            constants.CLASS_NAMES, os.path.join(results_dir, images["f1"]),
            "Per-class F1 on the test set", "F1")
    with open(os.path.join(results_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    with open(os.path.join(results_dir, "RESULTS.md"), "w") as f:
        f.write(render(report, images))
