"""The ablation table (benchmarks/ablations.py's figures, on ABLATIONS.md and RESULTS.md)."""
from __future__ import annotations

from reports import benchmark_page
from reports.document import Document


def _variant(name: str, seconds: float, two_views: float, **extra) -> dict:
    return {"variant": name, "lever": f"lever {name}", "parameters": 829_368,
            "train_seconds": seconds, "test_images": 5000, "accuracy_1_view": 0.8,
            "accuracy_2_views": two_views,
            "accuracy_2_views_by_origin": {"exact": {"images": 1017, "accuracy": 0.9},
                                           "jpeg_decoded": {"images": 3983, "accuracy": 0.7}},
            **extra}


def test_each_variant_reads_against_the_defaults():
    ablations = {"date": "2026-11-29 07:00 UTC", "command": "python benchmarks/ablations.py",
                 "machine": {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "gpu": False,
                             "os": "Linux", "python": "3.11.7", "tensorflow": "2.16.2"},
                 "epochs": 4, "batch_size": 256,
                 "variants": [_variant("defaults", 600.0, 0.80),
                              _variant("ema", 660.0, 0.805, load_before=[1.0, 1, 1],
                                       load_after=[2.0, 2, 2])]}
    doc = Document()
    benchmark_page.add_ablations(doc, ablations)
    page = doc.to_markdown()
    assert "## Ablations on a short budget (issue #17)" in page
    assert "4 epochs at batch 256" in page and "5,000 images" in page
    assert ("| ema | lever ema | 829,368 | 11.0 min | 1.10x | 80.00% | 80.50% | +0.50 pts | "
            "90.00% | 70.00% | 1.00 → 2.00 |") in page
    assert "| defaults | lever defaults | 829,368 | 10.0 min | 1.00x |" in page
