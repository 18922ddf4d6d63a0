"""The run report (`cifar10-tfx report`) and the `cifar10-tfx` CLI.

The renderers and sections without a pipeline run: tests/unit/test_report_*.py.
"""
from __future__ import annotations

import re

import pytest

from cli.main import main as cifar10_tfx
from modules import contract
from reports import run_report, runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NODES = ("Cifar10ExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
         "Tuner", "Trainer", "ServedModelBaseline", "previous_statistics_resolver",
         "Evaluator",
         "TFLiteConverter", "Pusher")


# ---- Fast checks: no pipeline run ----------------------------------------------------------------

def test_missing_database_is_one_clear_line(tmp_path, capsys):
    assert cifar10_tfx(["report", "--output-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("error: no ML Metadata database at ")
    assert str(tmp_path / "metadata.sqlite") in err
    assert not (tmp_path / "reports").exists()


def test_cli_delegates_and_lists_its_commands(tmp_path, capsys):
    assert cifar10_tfx(["report", "--output-dir", str(tmp_path)]) == 1
    assert "no ML Metadata database" in capsys.readouterr().err
    assert cifar10_tfx(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "download", "report", "predict", "download-model", "compile-kfp"):
        assert re.search(rf"^  {re.escape(command)} ", out, re.MULTILINE), out
    assert cifar10_tfx([]) == 2
    assert cifar10_tfx(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert cifar10_tfx(["run", "--help"]) == 0  # argparse's exit is turned into a return code
    assert "--data-dir" in capsys.readouterr().out


# ---- The report of a real run --------------------------------------------------------------------

@pytest.fixture(scope="module")
def written_report(trained_pipeline, tmp_path_factory):
    """The report of trained_pipeline's own run (the first run in its store: other test files
    add later runs to the same output folder)."""
    store = runs.open_store(str(trained_pipeline.metadata_path))
    run_id = runs.pipeline_runs(store)[0].name
    folder = tmp_path_factory.mktemp("report")
    code = cifar10_tfx(["report", "--output-dir", str(trained_pipeline.output_dir), "--run", run_id,
                            "--to", str(folder)])
    assert code == 0
    return {"folder": folder, "run_id": run_id, "markdown": (folder / "report.md").read_text(),
            "html": (folder / "report.html").read_text()}



@pytest.mark.e2e
def test_report_files_and_valid_pngs(written_report):
    folder = written_report["folder"]
    for name in (run_report.REPORT_MD, run_report.REPORT_HTML, run_report.CONFUSION_PNG,
                 run_report.PER_CLASS_PNG, run_report.LABELS_PNG):
        assert (folder / name).is_file(), name
    import tensorflow as tf

    data = (folder / run_report.CONFUSION_PNG).read_bytes()
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
    assert "The Tuner ran (2 completed trial(s)" in markdown  # the default DAG
    assert "(defaults) |" in markdown and "of the Trainer's" in markdown
    assert re.search(r"^\| learning_rate \| ", markdown, re.MULTILINE)
    for name in contract.CLASS_NAMES:
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
    assert not re.search(r"""src=["'](?!data:)""", page)  # every image is embedded
    # The only link out is to the pushed version's model card (a page of its own, not a resource).
    links = re.findall(r"""href=["']([^"']+)""", page)
    assert all(link.endswith(contract.MODEL_CARD_HTML) or link.endswith(
        contract.MODEL_CARD_MARKDOWN) for link in links), links
    assert "<link" not in page and "<script" not in page
    assert "<strong>BLESSED</strong>" in page


@pytest.mark.e2e
def test_unknown_run_id_is_one_clear_line(trained_pipeline, tmp_path, capsys):
    code = cifar10_tfx(["report", "--output-dir", str(trained_pipeline.output_dir),
                            "--run", "no-such-run", "--to", str(tmp_path / "r")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: no pipeline run 'no-such-run'")
    assert not (tmp_path / "r").exists()
