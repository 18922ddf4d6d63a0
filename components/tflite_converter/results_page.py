"""The "TFLite conversion results" page, rendered from metrics.json (never typed by hand)."""
from __future__ import annotations

from typing import Any, Dict


def _row(name: str, m: Dict[str, Any], size_key: str = "size_bytes") -> str:
    agreement = m.get("agreement_with_float")
    return (f"| {name} | {m[size_key] / 1024:,.1f} KB | {m['accuracy']:.2%} | "
            f"{'-' if agreement is None else f'{agreement:.2%}'} | {m['latency_ms']:.3f} ms |")


def render(metrics: Dict[str, Any]) -> str:
    """Markdown: float SavedModel vs float TFLite vs the chosen quantized TFLite."""
    saved = metrics["float_savedmodel"]
    lines = [
        "# TFLite conversion results",
        "",
        f"Mode `{metrics['mode']}`; verified on {metrics['verified_images']} test images with the "
        f"LiteRT interpreter, one image per call on one CPU thread"
        + (f"; calibrated on {metrics['calibration_images']} train images" if
           metrics.get("calibration_images") else "") + ".",
        "",
        "| Model | Size | Test accuracy | Top-1 agreement with float | Latency (1 image) |",
        "|---|---:|---:|---:|---:|",
        _row("Float SavedModel (weights)", saved, "weights_bytes"),
        _row("TFLite float32", metrics["tflite_float32"]),
        _row(f"TFLite {metrics['mode']}", metrics["tflite"]),
        "",
        f"- Accuracy drop vs. the float SavedModel: {metrics.get('accuracy_drop', 0) * 100:.2f} "
        f"points.",
        f"- Size: {metrics['size_ratio_vs_float_weights']:.2f}x smaller than the float32 weights.",
        f"- Input `{metrics['tflite']['input_dtype']}` [1, 32, 32, 3] raw pixels, output "
        f"`{metrics['tflite']['output_dtype']}` [1, 10] probabilities; labels in labels.txt.",
        "",
    ]
    return "\n".join(lines)
