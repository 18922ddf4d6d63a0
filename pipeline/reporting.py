"""Tables and plots people read: per-class precision/recall/F1, confusion matrices, machine facts.

Shared by the benchmark (benchmarks/run_benchmark.py) and the run report (pipeline/report.py).
"""
from __future__ import annotations

import os
import platform
from typing import Sequence

import numpy as np

from modules import constants


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int],
                     num_classes: int = constants.NUM_CLASSES) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray) -> list[dict]:
    """Precision, recall, F1 and support for each class, from a confusion matrix."""
    rows = []
    for index, name in enumerate(constants.CLASS_NAMES[:len(matrix)]):
        true_positive = matrix[index, index]
        predicted = matrix[:, index].sum()
        actual = matrix[index, :].sum()
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": float(precision), "recall": float(recall),
                     "f1": float(f1), "support": int(actual)})
    return rows


def per_class_markdown(rows: list[dict], baseline: list[dict] | None = None) -> str:
    """A Markdown table; with a baseline, its F1 is shown beside for comparison."""
    header = "| Class | Precision | Recall | F1 | Support |"
    rule = "|---|---:|---:|---:|---:|"
    if baseline:
        header += " Baseline F1 |"
        rule += "---:|"
    lines = [header, rule]
    for i, row in enumerate(rows):
        line = (f"| {row['class']} | {row['precision']:.3f} | {row['recall']:.3f} | "
                f"{row['f1']:.3f} | {row['support']} |")
        if baseline:
            line += f" {baseline[i]['f1']:.3f} |"
        lines.append(line)
    macro = {k: float(np.mean([r[k] for r in rows])) for k in ("precision", "recall", "f1")}
    line = (f"| **macro avg** | {macro['precision']:.3f} | {macro['recall']:.3f} | "
            f"{macro['f1']:.3f} | {sum(r['support'] for r in rows)} |")
    if baseline:
        line += f" {np.mean([r['f1'] for r in baseline]):.3f} |"
    lines.append(line)
    return "\n".join(lines)


def plot_confusion_matrix(matrix: np.ndarray, path: str, title: str = "Confusion matrix") -> str:
    """Saves a labelled, row-normalized confusion-matrix heat map as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    normalized = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0)
    names = constants.CLASS_NAMES[:len(matrix)]
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if normalized[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bars(groups: dict[str, Sequence[float]], labels: Sequence[str], path: str, title: str,
              ylabel: str) -> str:
    """Grouped bar chart (e.g. per-class F1 of the pipeline model vs. the baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(groups), 1)
    for k, (name, values) in enumerate(groups.items()):
        ax.bar(np.arange(len(labels)) + k * width, values, width, label=name)
    ax.set_xticks(np.arange(len(labels)) + width * (len(groups) - 1) / 2, labels, rotation=30,
                  ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
