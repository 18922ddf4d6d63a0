"""The PNG plots of the reports (matplotlib, headless)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from modules import contract


def _pyplot():
    """pyplot on the Agg backend: reports are written on machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: np.ndarray, path: str, title: str = "Confusion matrix") -> str:
    """Saves a labelled, row-normalized confusion-matrix heat map as PNG."""
    plt = _pyplot()
    normalized = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0)
    names = contract.CLASS_NAMES[:len(matrix)]
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
    plt = _pyplot()
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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
