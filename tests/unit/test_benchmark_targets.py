"""The benchmark page's targets: each measured one says whether it is met, the others say so;
and the tuned run beside the untuned one (run_benchmark.py --untuned)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks import run_benchmark
from modules import contract
from reports import benchmark_page

PROJECT_DIR = Path(__file__).resolve().parents[2]


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
        "Tuner wall time vs. the Trainer's": "yes",
        "Trainer wall time vs. the defaults' (--untuned run)": "not measured"}
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


def _recorded_report() -> dict:
    """The committed full run's results.json: a report with every field the page reads."""
    with open(PROJECT_DIR / "benchmarks" / benchmark_page.RESULTS_JSON) as f:
        return json.load(f)


def _runs() -> tuple[dict, dict]:
    """(tuned, untuned) reports that differ in values, accuracy and Trainer time."""
    untuned = _recorded_report()
    untuned["date"], untuned["command"] = "2026-01-01 00:00 UTC", "run_benchmark.py --untuned"
    untuned["pipeline"].update(accuracy=0.5, trainer_seconds=1200.0, hyperparameters={
        **untuned["pipeline"]["hyperparameters"], "learning_rate": 0.25, "stage2_width": 2.0})
    tuned = _recorded_report()
    tuned["pipeline"].update(accuracy=0.75, trainer_seconds=1500.0, hyperparameters={
        **tuned["pipeline"]["hyperparameters"], "learning_rate": 0.5, "stage2_width": 2.5})
    return tuned, untuned


TRAINER_TARGET = "| Trainer wall time vs. the defaults' (--untuned run) |"


def test_the_untuned_run_is_set_beside_the_tuned_one(tmp_path, capsys):
    tuned, untuned = _runs()
    run_benchmark.write_untuned(untuned, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [benchmark_page.UNTUNED_JSON]  # no tuned run yet
    assert "will compare with this one" in capsys.readouterr().out

    benchmark_page.write(tuned, str(tmp_path))
    page = (tmp_path / benchmark_page.RESULTS_MD).read_text()
    section = page[page.index("## Tuned vs. the defaults"):]
    default_rate = contract.DEFAULT_HPARAMS["learning_rate"]
    assert f"learning_rate 0.5 (default {default_rate:g}), stage2_width 2.5 (default 2)" in section
    assert "| Served test accuracy | 75.00% | 50.00% | +25.00 points |" in section
    assert "| Trainer wall time | 25.0 min | 20.0 min | 1.25x |" in section
    assert "on a machine of the same description" in section
    assert "learning_rate 0.25 (default " in section and ": not today's defaults)" in section
    assert f"{TRAINER_TARGET} 1.25x | <= 1.1x | **no** |" in page

    run_benchmark.write_untuned(untuned, str(tmp_path))  # a later reference renders the page
    assert (tmp_path / benchmark_page.RESULTS_MD).read_text() == page


def test_the_page_says_when_the_reference_trained_todays_defaults(tmp_path):
    tuned, untuned = _runs()
    untuned["pipeline"]["hyperparameters"] = dict(contract.DEFAULT_HPARAMS)
    run_benchmark.write_untuned(untuned, str(tmp_path))
    benchmark_page.write(tuned, str(tmp_path))
    page = (tmp_path / benchmark_page.RESULTS_MD).read_text()
    assert "(it trained exactly today's defaults)" in page
    # A reference from before a lever existed trained it off, whatever today's default is.
    lever = "whitening_bias_share"
    assert contract.DEFAULT_HPARAMS[lever] != benchmark_page.PREDATED_LEVERS_OFF[lever]
    del untuned["pipeline"]["hyperparameters"][lever]
    run_benchmark.write_untuned(untuned, str(tmp_path))
    page = (tmp_path / benchmark_page.RESULTS_MD).read_text()
    today = contract.DEFAULT_HPARAMS[lever]
    assert f"(it trained {lever} 0 (default {today:g}): not today's defaults)" in page


def test_times_from_another_kind_of_machine_are_not_compared(tmp_path):
    tuned, untuned = _runs()
    untuned["machine"]["cores"] = tuned["machine"]["cores"] * 2
    run_benchmark.write_untuned(untuned, str(tmp_path))
    benchmark_page.write(tuned, str(tmp_path))
    page = (tmp_path / benchmark_page.RESULTS_MD).read_text()
    assert "so its times do not compare with this run's" in page
    assert f"{TRAINER_TARGET} - | <= 1.1x | not measured |" in page


def test_a_run_without_the_reference_has_no_comparison(tmp_path):
    benchmark_page.write(_recorded_report(), str(tmp_path))
    page = (tmp_path / benchmark_page.RESULTS_MD).read_text()
    assert "## Tuned vs. the defaults" not in page
    assert f"{TRAINER_TARGET} - | <= 1.1x | not measured |" in page


def test_candidates_are_listed_beside_both_runs(tmp_path):
    tuned, untuned = _runs()
    candidate = _recorded_report()
    candidate["date"] = "2026-01-02 00:00 UTC"
    candidate["pipeline_command"] = ("local_runner.py --data-dir /data --output-dir=/out "
                                     "--hyperparameters-dir /hp --epochs 18")
    candidate["pipeline"].update(accuracy=0.8, trainer_seconds=1260.0)
    benchmark_page.write(tuned, str(tmp_path))
    run_benchmark.write_untuned(untuned, str(tmp_path))
    run_benchmark.write_candidate("gelu", candidate, str(tmp_path))
    assert (tmp_path / benchmark_page.CANDIDATES_DIR / "gelu.json").is_file()
    page = (tmp_path / benchmark_page.RESULTS_MD).read_text()
    section = page[page.index("## Full-budget candidates"):]
    rows = {row.split(" | ")[0].lstrip("| "): row for row in section.splitlines()
            if row.startswith("| ") and " | " in row}
    assert set(rows) >= {"default DAG (this page)", "defaults (--untuned)", "gelu"}
    assert "| `--hyperparameters-dir /hp --epochs 18` |" in rows["gelu"]
    assert "| 80.00% |" in rows["gelu"] and "| 21.0 min | 1.05x |" in rows["gelu"]
    assert "| 25.0 min | 1.25x |" in rows["default DAG (this page)"]


def test_a_candidate_needs_a_plain_name(capsys):
    for argv in (["--candidate", "../gelu"], ["--candidate", "gelu", "--untuned"]):
        with pytest.raises(SystemExit):
            run_benchmark.parse_args(argv)
        assert "--candidate" in capsys.readouterr().err


def test_retiming_a_folder_without_a_run_is_one_line(tmp_path):
    from benchmarks import serving_costs
    results = tmp_path / "results.json"
    results.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        serving_costs.main(["--output-dir", str(tmp_path), "--results", str(results)])
    message = str(exit_info.value)
    assert message.startswith(f"error: --output-dir {tmp_path}: No ML Metadata database")
    assert "\n" not in message


@pytest.mark.parametrize("speeds, reason", [
    ((None, None), None),  # runs from before the probe: by description alone
    (([500.0, 520.0], [480.0, 470.0]), None),  # within the tolerance
    (([1500.0, 1480.0], [500.0, 510.0]), "trained the probe at 505 images/s, this one at 1,490"),
    (([500.0, 500.0], None), "whose speed was not measured"),
    ((None, [500.0, 500.0]), "trained the probe at 500 images/s, this run's host not measured"),
])
def test_trainer_times_compare_only_on_hosts_of_one_speed(speeds, reason):
    # Hosts of one description differ ~2x: the probe's figures must agree too.
    tuned, untuned = _runs()
    for run, figures in zip((tuned, untuned), speeds, strict=True):
        run["machine"].pop(benchmark_page.HOST_SPEED_KEY, None)
        if figures is not None:
            run["machine"][benchmark_page.HOST_SPEED_KEY] = figures
    found = benchmark_page.incomparable_times(tuned, untuned)
    assert found is None if reason is None else reason in found

