"""The ablation table (benchmarks/ablations.py's figures, on ABLATIONS.md and RESULTS.md), and
how the script keeps rows between runs."""
from __future__ import annotations

import json

import pytest

from benchmarks import ablations as ablations_script
from modules import contract
from reports import benchmark_page
from reports.document import Document

MACHINE = {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "gpu": False, "os": "Linux",
           "python": "3.11.7", "tensorflow": "2.16.2"}


def _variant(name: str, seconds: float, two_views: float, **extra) -> dict:
    return {"variant": name, "lever": f"lever {name}", "parameters": 829_368,
            "train_seconds": seconds, "test_images": 5000, "accuracy_1_view": 0.8,
            "accuracy_2_views": two_views,
            "accuracy_2_views_by_origin": {"exact": {"images": 1017, "accuracy": 0.9},
                                           "jpeg_decoded": {"images": 3983, "accuracy": 0.7},
                                           "exact_after_jpeg": {"images": 1017, "accuracy": 0.88}},
            **extra}


def _page(variants: list[dict], epochs: int = 4) -> str:
    ablations = {"date": "2026-11-29 07:00 UTC", "command": "python benchmarks/ablations.py",
                 "machine": MACHINE, "epochs": epochs, "batch_size": 256, "variants": variants}
    doc = Document()
    benchmark_page.add_ablations(doc, ablations)
    return doc.to_markdown()


SPEED = {benchmark_page.HOST_SPEED_KEY: [300.0, 310.0]}


def test_each_variant_reads_against_the_defaults():
    page = _page([_variant("defaults", 600.0, 0.80, seed=42, **SPEED),
                  _variant("ema", 660.0, 0.805, seed=42, load_before=[1.0, 1, 1],
                           load_after=[2.0, 2, 2], **SPEED)])
    assert "## Ablations on a short budget (issue #17)" in page
    assert "4 epochs at batch 256" in page and "5,000 images" in page
    assert ("| ema | lever ema | 42 | 829,368 | 11.0 min | 1.10x | 80.00% | 80.50% | +0.50 pts | "
            "90.00% | 70.00% | 88.00% | 305 | 1.00 → 2.00 |") in page
    assert "| defaults | lever defaults | 42 | 829,368 | 10.0 min | 1.00x |" in page
    assert "One seed per variant" in page
    assert "marked *" not in page  # both rows on hosts of one speed


def test_a_table_on_the_pipelines_own_budget_says_so():
    page = _page([_variant("defaults", 600.0, 0.80, seed=42)], epochs=contract.DEFAULT_EPOCHS)
    assert "## Ablations on the full budget (issue #17)" in page
    assert f"{contract.DEFAULT_EPOCHS} epochs at batch 256" in page


def test_a_time_ratio_across_hosts_of_other_speeds_is_marked():
    page = _page([_variant("defaults", 600.0, 0.80, seed=42, **SPEED),
                  _variant("relu", 480.0, 0.79, seed=42,
                           **{benchmark_page.HOST_SPEED_KEY: [400.0, 420.0]}),
                  _variant("ema", 660.0, 0.805, seed=42)])  # from before rows were probed
    assert "| relu | lever relu | 42 | 829,368 | 8.0 min | 0.80x * |" in page
    assert "| ema | lever ema | 42 | 829,368 | 11.0 min | 1.10x * |" in page
    assert "| 410 | - |" in page and "A time ratio marked * compares rows" in page


def test_seeds_compare_with_the_same_seed_and_show_their_spread():
    page = _page([_variant("defaults", 600.0, 0.80, seed=42, **SPEED),
                  _variant("defaults", 600.0, 0.81, seed=7, **SPEED),
                  _variant("ema", 600.0, 0.812, seed=7, **SPEED)])
    assert "| ema | lever ema | 7 | 829,368 | 10.0 min | 1.00x | 80.00% | 81.20% | +0.20 pts |" \
        in page  # against the defaults of seed 7, not of seed 42
    assert "defaults 80.00% to 81.00% with 2 seeds (1.00 pts apart, 2 views)" in page
    assert "One seed per variant" not in page


def test_new_rows_join_the_kept_ones_in_the_variants_order(tmp_path):
    kept = {"epochs": 4, "batch_size": 256, "steps_per_epoch": None,
            "variants": [_variant("relu", 1.0, 0.8, seed=42), _variant("defaults", 1.0, 0.8),
                         _variant("retired", 1.0, 0.8, seed=42)]}
    (tmp_path / "ablations.json").write_text(json.dumps(kept))
    args = ablations_script.parse_args(["--results-dir", str(tmp_path), "--seeds", "7"])
    rows = ablations_script.earlier_rows(args)
    assert set(rows) == {("relu", 42), ("defaults", 42)}  # no seed recorded: the pipeline's
    rows["defaults", 7] = _variant("defaults", 1.0, 0.81)
    ordered = ablations_script.table_rows(rows)
    assert [(row["variant"], row["seed"]) for row in ordered] == [
        ("defaults", 7), ("defaults", 42), ("relu", 42)]
    assert ordered[0]["lever"] == ablations_script.VARIANTS["defaults"][0]
    other_budget = ablations_script.parse_args(["--results-dir", str(tmp_path), "--epochs", "2"])
    assert ablations_script.earlier_rows(other_budget) == {}


def test_rows_follow_their_hyperparameters_when_the_defaults_change(tmp_path):
    """A lever adopted as a default: its rows become the defaults' rows, the old defaults'
    rows the reverse lever's, and a lever measured over the old defaults says what it trained."""
    defaults = dict(contract.DEFAULT_HPARAMS)
    other = "relu" if defaults["activation"] == "gelu" else "gelu"
    old_defaults = {**defaults, "activation": other}
    report = {"variants": [
        _variant("defaults", 1.0, 0.80, seed=42, hyperparameters=old_defaults),
        _variant(defaults["activation"], 1.0, 0.81, seed=42, hyperparameters=defaults),
        _variant("ema", 1.0, 0.79, seed=42,
                 hyperparameters={**old_defaults, "ema_momentum": 0.99})]}
    rows = ablations_script.table_rows(ablations_script.kept_rows(report))
    named = {row["variant"]: row for row in rows}
    assert named["defaults"]["accuracy_2_views"] == 0.81
    assert [row["variant"] for row in rows][-1] == "ema (earlier defaults)"
    assert named["ema (earlier defaults)"]["lever"] == (
        f"trained with activation {other} (default {defaults['activation']}), "
        f"ema_momentum 0.99 (default 0); against {other}")
    assert named["ema (earlier defaults)"]["baseline"] == other
    if other == "relu":
        assert named["relu"]["accuracy_2_views"] == 0.80
    # Renamed once, a row keeps its name on the next rendering.
    again = ablations_script.table_rows(ablations_script.kept_rows({"variants": rows}))
    assert [row["variant"] for row in again] == [row["variant"] for row in rows]


def test_rows_from_before_a_lever_existed_trained_without_it():
    """A row recorded before `whitening_bias_share` existed trained the stem's bias frozen: it
    is measured against the frozen-bias row of its seed, not against today's defaults."""
    assert contract.DEFAULT_HPARAMS["whitening_bias_share"] > 0
    later = benchmark_page.PREDATED_LEVERS_OFF
    frozen = {**contract.DEFAULT_HPARAMS, **later}
    predates = {k: v for k, v in contract.DEFAULT_HPARAMS.items() if k not in later}
    report = {"variants": [
        _variant("defaults", 1.0, 0.80, seed=7, hyperparameters=frozen),
        _variant("relu", 1.0, 0.79, seed=7, hyperparameters={**predates, "activation": "relu"})]}
    named = {row["variant"]: row for row in
             ablations_script.table_rows(ablations_script.kept_rows(report))}
    assert set(named) == {"frozen_whitening_bias", "relu (earlier defaults)"}
    assert named["relu (earlier defaults)"]["baseline"] == "frozen_whitening_bias"
    assert "whitening_bias_share 0 (default " in named["relu (earlier defaults)"]["lever"]


@pytest.mark.parametrize("seeds", ["seven", ","])
def test_bad_seeds_are_one_line(seeds, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ablations_script.parse_args(["--seeds", seeds])
    assert exit_info.value.code == 2
    assert "--seeds" in capsys.readouterr().err.strip().splitlines()[-1]
