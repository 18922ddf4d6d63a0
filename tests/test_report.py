"""The run report (`python -m pipeline.report`, `cifar10-tfx report`) and the `cifar10-tfx` CLI."""
from __future__ import annotations

import re

import pytest

from modules import constants
from pipeline import cli, report, results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NODES = ("Cifar10ExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
         "Trainer", "latest_blessed_model_resolver", "previous_statistics_resolver", "Evaluator",
         "TFLiteConverter", "Pusher")


# ---- Fast checks: no pipeline run ----------------------------------------------------------------

def test_missing_database_is_one_clear_line(tmp_path, capsys):
    assert report.main(["--output-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("error: no ML Metadata database at ")
    assert str(tmp_path / "metadata.sqlite") in err
    assert not (tmp_path / "reports").exists()


def test_cli_delegates_and_lists_its_commands(tmp_path, capsys):
    assert cli.main(["report", "--output-dir", str(tmp_path)]) == 1
    assert "no ML Metadata database" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "download", "report", "predict", "download-model", "compile-kfp"):
        assert re.search(rf"^  {re.escape(command)} ", out, re.MULTILINE), out
    assert cli.main([]) == 2
    assert cli.main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert cli.main(["run", "--help"]) == 0  # argparse's exit is turned into a return code
    assert "--data-dir" in capsys.readouterr().out


def test_documents_render_as_markdown_and_escaped_html(tmp_path):
    doc = report.Document()
    doc.heading(2, "Blessing")
    doc.para("Verdict: **BLESSED** at `a<b>`")
    doc.table(["Class", "F1"], [["cat|dog", "0.5"]], numeric=[False, True])
    (tmp_path / "x.png").write_bytes(PNG_MAGIC + b"rest")
    doc.image("x.png", "plot")
    markdown = report.to_markdown(doc)
    assert "## Blessing" in markdown and "| cat\\|dog | 0.5 |" in markdown
    assert "![plot](x.png)" in markdown
    page = report.to_html(doc, str(tmp_path), "t")
    assert "<strong>BLESSED</strong>" in page and "<code>a&lt;b&gt;</code>" in page
    assert '<td class="n">0.5</td>' in page
    assert 'src="data:image/png;base64,' in page


def test_tuning_trials_table():
    trials = [{"trial_id": "03", "score": 0.61234, "learning_rate": 0.1, "dropout": 0.2},
              {"trial_id": "01", "score": 0.5, "learning_rate": 0.05, "dropout": 0.0}]
    header, rows = report.trials_table(trials)
    assert header == ["Trial", "Score", "dropout", "learning_rate"]
    assert rows[0] == ["03", "0.6123", "0.2", "0.1"]


class _Artifact:
    def __init__(self, uri):
        self.uri = str(uri)


class _StubRun:
    """Stands in for report.RunView: outputs by (node, key)."""

    def __init__(self, outputs: dict):
        self.outputs = outputs

    def execution(self, node):
        return object() if any(n == node for n, _ in self.outputs) else None

    def output(self, node, key):
        return self.outputs.get((node, key))


def test_tuner_section_shows_the_trials_and_the_best_values(tmp_path):
    import json

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "tuner_results.json").write_text(json.dumps(
        [{"trial_id": "2", "score": 0.55, "dropout": 0.1, "learning_rate": 0.2},
         {"trial_id": "0", "score": 0.41, "dropout": 0.3, "learning_rate": 0.05}]))
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "best_hyperparameters.txt").write_text(json.dumps(
        {"space": [], "values": {"dropout": 0.1, "learning_rate": 0.2}}))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "training_summary.json").write_text(json.dumps(
        {"hyperparameters": {"dropout": 0.1, "learning_rate": 0.2}, "parameters": 1234,
         "epochs": 3, "steps_per_epoch": 10, "train_examples": 640}))
    view = _StubRun({("Tuner", "tuner_results"): _Artifact(tmp_path / "results"),
                     ("Tuner", "best_hyperparameters"): _Artifact(tmp_path / "best"),
                     ("Trainer", "model_run"): _Artifact(tmp_path / "run")})
    doc = report.Document()
    report.section_hyperparameters(doc, view)
    markdown = report.to_markdown(doc)
    assert "The Tuner ran in this run (2 completed trial(s)" in markdown
    assert "| 2 | 0.5500 | 0.1 | 0.2 |" in markdown and "| 0 | 0.4100 | 0.3 | 0.05 |" in markdown
    assert "Best hyperparameters found:" in markdown
    assert "1,234 parameters, 3 epoch(s) of 10 steps on 640 train examples" in markdown


def test_thresholds_are_read_from_either_json_spelling():
    snake = {"metrics_specs": [{"metrics": [{"class_name": "SparseCategoricalAccuracy",
                                             "threshold": {
                                                 "value_threshold": {"lower_bound": 0.8},
                                                 "change_threshold": {
                                                     "absolute": -1e-10,
                                                     "direction": "HIGHER_IS_BETTER"}}}]}]}
    camel = {"metricsSpecs": [{"metrics": [{
        "className": "SparseCategoricalAccuracy",
        "threshold": {"valueThreshold": {"lowerBound": 0.8}}}]}]}
    (configured,) = report.thresholds_from_config(snake)
    assert configured["metric"] == "sparse_categorical_accuracy"
    assert configured["lower_bound"] == pytest.approx(0.8)
    assert report._change_rule(configured) == "no worse than the baseline"
    (applied,) = report.thresholds_from_config(camel)
    assert applied["change_absolute"] is None and report._change_rule(applied) == "-"


# ---- The report of a real run --------------------------------------------------------------------

@pytest.fixture(scope="module")
def written_report(trained_pipeline, tmp_path_factory):
    """The report of trained_pipeline's own run (the first run in its store: other test files
    add later runs to the same output folder)."""
    store = results.open_store(str(trained_pipeline.metadata_path))
    run_id = results.pipeline_runs(store)[0].name
    folder = tmp_path_factory.mktemp("report")
    code = report.main(["--output-dir", str(trained_pipeline.output_dir), "--run", run_id,
                        "--to", str(folder)])
    assert code == 0
    return {"folder": folder, "run_id": run_id, "markdown": (folder / "report.md").read_text(),
            "html": (folder / "report.html").read_text()}



@pytest.mark.e2e
def test_report_files_and_valid_pngs(written_report):
    folder = written_report["folder"]
    for name in (report.REPORT_MD, report.REPORT_HTML, report.CONFUSION_PNG,
                 report.PER_CLASS_PNG, report.LABELS_PNG):
        assert (folder / name).is_file(), name
    import tensorflow as tf

    data = (folder / report.CONFUSION_PNG).read_bytes()
    assert data.startswith(PNG_MAGIC)
    image = tf.io.decode_png(data)
    assert image.shape[0] > 200 and image.shape[1] > 200


@pytest.mark.e2e
def test_report_lists_every_component_with_status_and_wall_time(written_report):
    markdown = written_report["markdown"]
    assert written_report["run_id"] in markdown
    for node in NODES:
        assert re.search(rf"^\| {node} \| complete \| [\d.]+ (s|min \d+ s) \| ", markdown,
                         re.MULTILINE), node


@pytest.mark.e2e
def test_report_data_statistics_per_split(written_report, small_cifar10):
    markdown = written_report["markdown"]
    # The fixture: 300 records per batch file; eval is the last tenth of each training file.
    for split, count in (("train", "1,350"), ("eval", "150"), ("test", "300")):
        assert re.search(rf"^\| {split} \| {count} \| ", markdown, re.MULTILINE), split
    assert str(small_cifar10) in markdown  # lineage back to the data folder
    assert "Input fingerprint" in markdown
    assert "no anomalies" in markdown


@pytest.mark.e2e
def test_report_hyperparameters_and_per_class_metrics(written_report):
    markdown = written_report["markdown"]
    assert "No tuning in this run" in markdown
    assert re.search(r"^\| learning_rate \| ", markdown, re.MULTILINE)
    for name in constants.CLASS_NAMES:
        assert re.search(rf"^\| {name} \| \d\.\d{{3}} \| \d\.\d{{3}} \| \d\.\d{{3}} \| \d+ \|",
                         markdown, re.MULTILINE), name
    assert "**macro avg**" in markdown
    assert "![Confusion matrix](confusion_matrix.png)" in markdown


@pytest.mark.e2e
def test_report_blessing_and_pushed_version(written_report, trained_pipeline):
    markdown = written_report["markdown"]
    assert "Verdict: **BLESSED**" in markdown
    assert re.search(r"^\| sparse_categorical_accuracy \| >= 15\.00% \| .* \| pass \|", markdown,
                     re.MULTILINE)
    version = trained_pipeline.versions(trained_pipeline.serving_dir)[0]
    assert f"Version **{version}**" in markdown
    assert str(trained_pipeline.serving_dir / version) in markdown
    assert str(trained_pipeline.tflite_dir / version) in markdown
    assert "### TFLite model" in markdown and "### Lineage" in markdown


@pytest.mark.e2e
def test_html_is_self_contained(written_report):
    page = written_report["html"]
    assert page.count('src="data:image/png;base64,') == 3
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    assert "<link" not in page and "<script" not in page
    assert "<strong>BLESSED</strong>" in page


@pytest.mark.e2e
def test_unknown_run_id_is_one_clear_line(trained_pipeline, tmp_path, capsys):
    code = report.main(["--output-dir", str(trained_pipeline.output_dir), "--run", "no-such-run",
                        "--to", str(tmp_path / "r")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: no pipeline run 'no-such-run'")
    assert not (tmp_path / "r").exists()
