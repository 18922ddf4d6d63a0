"""The benchmark page's targets: each measured one says whether it is met, the others say so."""
from __future__ import annotations

from modules import contract
from reports import benchmark_page


def report(tta: str, costs: dict | None, component_seconds: dict) -> dict:
    pipeline = {"accuracy": 0.9, "parameters": 829_368, "test_time_augmentation": tta,
                "tflite": {"accuracy_drop": 0.002, "size_ratio_vs_float_weights": 3.84},
                "component_seconds": component_seconds}
    if costs is not None:
        pipeline["serving_costs"] = costs
    return {"pipeline": pipeline}


def speed(latency_ms: float, throughput: float) -> dict:
    return {"latency_ms_batch1": latency_ms, "throughput_images_per_s_batch256": throughput}


def met(rows: list[list[str]]) -> dict[str, str]:
    return {label: verdict for label, _, _, verdict in rows}


def test_serving_cost_is_read_against_a_single_view_of_the_same_network():
    costs = {benchmark_page.SINGLE_VIEW: speed(2.0, 3000.0),
             contract.PIXELS_SIGNATURE: speed(2.4, 1600.0)}
    rows = benchmark_page._target_rows(report(  # noqa: SLF001
        contract.TTA_FLIP, costs, {contract.TUNER_NODE: 300.0, contract.TRAINER_NODE: 3000.0}))
    assert met(rows) == {
        "Test accuracy of the pushed SavedModel": "**no**",
        "Parameters": "yes",
        "Views averaged per image (test-time augmentation)": "yes",
        "Served throughput at batch 256 vs. a single view": "yes",
        "Served latency at batch 1 vs. a single view": "yes",
        "int8 TFLite accuracy drop": "yes",
        "int8 TFLite vs. float weights size": "yes",
        "Tuner wall time vs. the Trainer's": "yes"}
    assert [row[1] for row in rows][3:5] == ["0.53x", "1.20x"]


def test_a_run_from_before_the_measures_says_not_measured():
    rows = benchmark_page._target_rows(report(  # noqa: SLF001
        contract.TTA_FLIP_TRANSLATE, None, {contract.TRAINER_NODE: 3000.0}))
    verdicts = met(rows)
    assert verdicts["Views averaged per image (test-time augmentation)"] == "**no**"
    for label in ("Served throughput at batch 256 vs. a single view",
                  "Served latency at batch 1 vs. a single view",
                  "Tuner wall time vs. the Trainer's"):
        assert verdicts[label] == "not measured"
