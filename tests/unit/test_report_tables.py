"""The one table builder: per-class figures and the TFLite model, as every page shows them."""
from __future__ import annotations

import numpy as np

from reports import metrics, tables

TFLITE_METRICS = {
    "mode": "int8", "verified_images": 300, "calibration_images": 100, "accuracy_drop": 0.004,
    "size_ratio_vs_float_weights": 3.84,
    "float_savedmodel": {"weights_bytes": 2048, "accuracy": 0.9, "latency_ms": 12.5},
    "tflite_float32": {"size_bytes": 2100, "accuracy": 0.9, "agreement_with_float": 1.0,
                       "latency_ms": 12.0},
    "tflite": {"size_bytes": 1024, "accuracy": 0.896, "agreement_with_float": 0.9876,
               "latency_ms": 2.5, "input_dtype": "uint8", "output_dtype": "float32"},
}


def test_per_class_figures_from_a_confusion_matrix():
    matrix = metrics.confusion_matrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], num_classes=2)
    assert matrix.tolist() == [[1, 1], [1, 2]]
    cat, dog = metrics.per_class_metrics(matrix)
    assert cat["class"] == "airplane" and cat["support"] == 2 and dog["support"] == 3
    assert cat["precision"] == 0.5 and dog["recall"] == 2 / 3
    assert np.isclose(dog["f1"], 2 * (2 / 3) * (2 / 3) / (4 / 3))


def test_per_class_table_with_macro_average_and_baseline():
    rows = [{"class": "cat", "precision": 0.5, "recall": 0.25, "f1": 0.3, "support": 4},
            {"class": "dog", "precision": 0.7, "recall": 0.75, "f1": 0.9, "support": 6}]
    markdown = tables.per_class_table(rows).to_markdown()
    assert markdown.splitlines()[:2] == ["| Class | Precision | Recall | F1 | Support |",
                                         "|---|---:|---:|---:|---:|"]
    assert "| cat | 0.500 | 0.250 | 0.300 | 4 |" in markdown
    assert "| **macro avg** | 0.600 | 0.500 | 0.600 | 10 |" in markdown
    baseline = [dict(r, f1=f) for r, f in zip(rows, (0.1, 0.2), strict=True)]
    compared = tables.per_class_table(rows, baseline)
    assert compared.header[-1] == "Baseline F1"
    assert compared.rows[1] == ("dog", "0.700", "0.750", "0.900", "6", "0.200")
    assert compared.rows[-1][-1] == "0.150"


def test_tflite_table_rows_and_units():
    table = tables.tflite_table(TFLITE_METRICS)
    assert [row[0] for row in table.rows] == ["Float SavedModel (weights)", "TFLite float32",
                                              "TFLite int8"]
    assert table.rows[0] == ("Float SavedModel (weights)", "2.0 KB", "90.00%", "-", "12.500 ms")
    assert table.rows[2] == ("TFLite int8", "1.0 KB", "89.60%", "98.76%", "2.500 ms")
    assert table.numeric == (False, True, True, True, True)
    without_float32 = {k: v for k, v in TFLITE_METRICS.items() if k != "tflite_float32"}
    assert len(tables.tflite_table(without_float32).rows) == 2


def test_tflite_results_page():
    page = tables.tflite_results_markdown(TFLITE_METRICS)
    assert page.startswith("# TFLite conversion results\n\nMode `int8`; verified on 300 test")
    assert "calibrated on 100 train images." in page
    assert "| TFLite int8 |" in page and "| TFLite float32 |" in page
    assert "- Accuracy drop vs. the float SavedModel: 0.40 points." in page
    assert "3.84x smaller" in page and page.endswith("labels in labels.txt.\n")
