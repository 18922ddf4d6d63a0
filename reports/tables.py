"""The one builder of the figures tables several pages show: per class, and the TFLite model.

The run report, the benchmark page and the TFLite converter's results.md all take their tables
from here, so the same figures always read the same way.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from reports.document import Document, Table

PER_CLASS_COLUMNS = ("precision", "recall", "f1")
MACRO_AVERAGE_LABEL = "**macro avg**"
TFLITE_TITLE = "TFLite conversion results"


def percent(value: float | None) -> str:
    """0.9012 -> '90.12%'; None -> '-'."""
    return "-" if value is None else f"{value:.2%}"


def per_class_table(rows: list[dict], baseline: list[dict] | None = None) -> Table:
    """Precision, recall, F1 and support per class with their macro average; a baseline's F1
    beside, when given, for comparison."""
    header = ["Class", "Precision", "Recall", "F1", "Support"]
    if baseline:
        header.append("Baseline F1")
    body = []
    for index, row in enumerate(rows):
        cells = [row["class"], *(f"{row[k]:.3f}" for k in PER_CLASS_COLUMNS), row["support"]]
        if baseline:
            cells.append(f"{baseline[index]['f1']:.3f}")
        body.append(cells)
    macro = [MACRO_AVERAGE_LABEL, *(f"{np.mean([r[k] for r in rows]):.3f}"
                                    for k in PER_CLASS_COLUMNS),
             sum(r["support"] for r in rows)]
    if baseline:
        macro.append(f"{np.mean([r['f1'] for r in baseline]):.3f}")
    body.append(macro)
    return Table(tuple(header), tuple(tuple(r) for r in body),
                 (False, *[True] * (len(header) - 1)))


def _tflite_row(name: str, figures: dict[str, Any], size_key: str = "size_bytes") -> list[str]:
    return [name, f"{figures[size_key] / 1024:,.1f} KB", percent(figures["accuracy"]),
            percent(figures.get("agreement_with_float")), f"{figures['latency_ms']:.3f} ms"]


def tflite_table(metrics: dict[str, Any]) -> Table:
    """Float SavedModel vs. float TFLite vs. the chosen TFLite mode, from the converter's
    metrics.json: size, test accuracy, top-1 agreement with the float model, latency."""
    rows = [_tflite_row("Float SavedModel (weights)", metrics["float_savedmodel"],
                        "weights_bytes")]
    if "tflite_float32" in metrics:
        rows.append(_tflite_row("TFLite float32", metrics["tflite_float32"]))
    rows.append(_tflite_row(f"TFLite {metrics['mode']}", metrics["tflite"]))
    return Table(("Model", "Size", "Test accuracy", "Top-1 agreement with float",
                  "Latency (1 image)"), tuple(tuple(r) for r in rows),
                 (False, True, True, True, True))


def tflite_results_document(metrics: dict[str, Any]) -> Document:
    """The TFLite converter's results page: how it verified the model, the table, the ratios."""
    calibration = metrics.get("calibration_images")
    doc = Document()
    doc.heading(1, TFLITE_TITLE)
    doc.para(f"Mode `{metrics['mode']}`; verified on {metrics['verified_images']} test images with "
             f"the LiteRT interpreter, one image per call on one CPU thread"
             + (f"; calibrated on {calibration} train images" if calibration else "") + ".")
    doc.add(tflite_table(metrics))
    doc.bullets([
        f"Accuracy drop vs. the float SavedModel: {metrics.get('accuracy_drop', 0) * 100:.2f} "
        f"points.",
        f"Size: {metrics['size_ratio_vs_float_weights']:.2f}x smaller than the float32 weights.",
        f"Input `{metrics['tflite']['input_dtype']}` [1, 32, 32, 3] raw pixels, output "
        f"`{metrics['tflite']['output_dtype']}` [1, 10] probabilities; labels in labels.txt."])
    return doc


def tflite_results_markdown(metrics: dict[str, Any]) -> str:
    """results.md of a TFLiteModel artifact, rendered from its metrics.json."""
    return tflite_results_document(metrics).to_markdown()
