"""Issue #18 end to end on the trained fixture: the pushed version's model card, and
`cifar10-tfx predict` on the pushed SavedModel and .tflite without TF Serving."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cli.main import main
from components.tflite_converter.conversion import TFLiteClassifier
from modules import cifar10_binary, contract
from reports import metrics, model_card, run_report, runs
from serving import local_models
from tests.support.pipeline_runs import run_pipeline

pytestmark = pytest.mark.e2e


def _card_dir(run) -> tuple[str, Path]:
    (version,) = run.versions(run.serving_dir)
    return version, run.serving_dir / contract.MODEL_CARDS_DIR / version


def test_pushed_version_has_a_card_with_the_evaluations_figures(trained_pipeline):
    version, card = _card_dir(trained_pipeline)
    assert {p.name for p in card.iterdir()} == {contract.MODEL_CARD_MARKDOWN,
                                                contract.MODEL_CARD_HTML, contract.MODEL_CARD_JSON}
    facts = json.loads((card / contract.MODEL_CARD_JSON).read_text())
    assert facts["version"] == int(version) and not facts["missing"], facts["missing"]

    outcome = runs.latest_outcome(str(trained_pipeline.metadata_path))
    result = metrics.load_evaluation(outcome.evaluation_uri)  # the one TFMA reader
    assert facts["evaluation"]["accuracy"] == pytest.approx(metrics.overall_metrics(result)[
        metrics.ACCURACY], abs=1e-12)
    matrix = metrics.confusion_from_plots(result)
    assert facts["evaluation"]["confusion_matrix"] == matrix.tolist()
    assert facts["evaluation"]["per_class"] == pytest.approx(metrics.per_class_metrics(matrix))

    text = (card / contract.MODEL_CARD_MARKDOWN).read_text()
    assert f"**{facts['evaluation']['accuracy']:.2%}**" in text
    for row in facts["evaluation"]["per_class"]:
        assert f"| {row['class']} | {row['precision']:.3f} | {row['recall']:.3f} | " \
               f"{row['f1']:.3f} |" in text
    assert "Weakest classes" in text and "offline copy" in text  # the fixture is a small subset
    assert facts["blessing"]["blessed"] is True and facts["blessing"]["thresholds"]
    assert facts["tflite"]["mode"] == contract.TFLITE_INT8
    summary = facts["training"]["summary"]
    assert summary[contract.TRAIN_SECONDS_KEY] > 0 and summary[contract.MACHINE_KEY]["cpu_cores"]
    assert [s["split"] for s in facts["data"]["splits"]] == ["train", "eval", "test"]
    assert model_card.subset_caveat(facts["data"]["splits"])
    assert "<table>" in (card / contract.MODEL_CARD_HTML).read_text()


def test_run_report_links_the_card(trained_pipeline, tmp_path):
    _, card = _card_dir(trained_pipeline)
    paths = run_report.write_report(str(trained_pipeline.output_dir), to=str(tmp_path / "r"))
    assert str(card / contract.MODEL_CARD_MARKDOWN) in Path(paths["markdown"]).read_text()


# ---- cifar10-tfx predict with the local back ends ------------------------------------------------

GOOD = 6


def _png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(pixels).save(out, format=fmt, **options)
    return out.getvalue()


@pytest.fixture(scope="module")
def mixed_folder(small_cifar10, tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Test images as PNG and WebP, plus a wrong size, a corrupt PNG and a text file."""
    folder = tmp_path_factory.mktemp("mixed")
    path = small_cifar10 / contract.BATCHES_DIR / contract.TEST_BATCH_FILE
    records = list(cifar10_binary.read_records(str(path)))[:GOOD]
    good = {}
    for index, record in enumerate(records):
        name = f"img{index}.webp" if index == 0 else f"img{index}.png"
        (folder / name).write_bytes(_png(record.image, "WEBP" if index == 0 else "PNG"))
        good[name] = record.image
    (folder / "big.png").write_bytes(_png(np.zeros((40, 40, 3), np.uint8)))
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image")
    return folder, good


def _reference(serving_dir: Path, version: str, images: list[np.ndarray]) -> np.ndarray:
    model = tf.saved_model.load(str(serving_dir / version))
    out = model.signatures[contract.PIXELS_SIGNATURE](pixels=tf.constant(np.stack(images)))
    return out[contract.PROBABILITIES_OUTPUT].numpy()


@pytest.mark.parametrize("output_format", contract.PREDICTION_FORMATS)
def test_predict_with_the_local_saved_model(trained_pipeline, mixed_folder, tmp_path,
                                            output_format, capsys, caplog):
    folder, good = mixed_folder
    output = tmp_path / f"predictions.{output_format}"
    # The base path: the newest version is used.
    assert main(["predict", str(folder), "--saved-model", str(trained_pipeline.serving_dir),
                 "--format", output_format, "--output", str(output)]) == 0
    rows = local_models.read_predictions(str(output))
    assert [Path(r["file"]).name for r in rows] == sorted(good)
    assert list(rows[0]) == list(contract.PREDICTION_COLUMNS)
    (version,) = trained_pipeline.versions(trained_pipeline.serving_dir)
    expected = _reference(trained_pipeline.serving_dir, version, [good[n] for n in sorted(good)])
    got = np.array([[r[c] for c in contract.PREDICTION_COLUMNS[3:]] for r in rows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [r["class_id"] for r in rows] == list(expected.argmax(axis=1))
    assert [r["class_name"] for r in rows] == [contract.CLASS_NAMES[i]
                                               for i in expected.argmax(axis=1)]
    shown = capsys.readouterr().err + caplog.text  # the warnings go to pytest's log capture
    for bad in ("big.png", "broken.png", "notes.txt"):
        assert bad in shown  # each skipped file named, with its reason


def test_predict_with_the_pushed_tflite(trained_pipeline, mixed_folder, tmp_path):
    folder, good = mixed_folder
    (version,) = trained_pipeline.versions(trained_pipeline.tflite_dir)
    tflite = trained_pipeline.tflite_dir / version / contract.TFLITE_FILE
    output = tmp_path / "predictions.csv"
    assert main(["predict", str(folder), "--tflite", str(tflite), "--format", "csv",
                 "--output", str(output)]) == 0
    rows = local_models.read_predictions(str(output))
    assert [Path(r["file"]).name for r in rows] == sorted(good)
    classifier = TFLiteClassifier(tflite.read_bytes())  # the converter's own verified runner
    expected = np.stack([classifier.probabilities(good[n]) for n in sorted(good)])
    got = np.array([[r[c] for c in contract.PREDICTION_COLUMNS[3:]] for r in rows])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # A base path works too, and gives the same rows.
    again = tmp_path / "again.csv"
    assert main(["predict", str(folder), "--tflite", str(trained_pipeline.tflite_dir),
                 "--format", "csv", "--output", str(again)]) == 0
    assert again.read_text() == output.read_text()


# ---- The batch-inference stage (--predict-dir) -------------------------------------------------

def test_predict_dir_stage_answers_as_the_pushed_model(trained_pipeline, small_cifar10,
                                                       mixed_folder, tmp_path):
    """A run with --predict-dir on a copy of the trained run (the cache skips the training)."""
    folder, good = mixed_folder
    output_dir = tmp_path / "run"
    shutil.copytree(trained_pipeline.output_dir, output_dir)
    run = run_pipeline(small_cifar10, output_dir, "--predict-dir", str(folder))
    assert run.process.returncode == 0, run.explain()

    view = runs.RunView(runs.open_store(str(run.metadata_path)))
    written = view.output(contract.BATCH_PREDICTIONS_NODE, "predictions")
    assert runs.custom_value(written, contract.PREDICTIONS_COUNT_PROPERTY) == len(good)
    examples = view.output(contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE, "examples")
    refused = json.loads((Path(examples.uri) / contract.REFUSED_IMAGES_FILE).read_text())
    assert {Path(r["file"]).name for r in refused} == {"big.png", "broken.png", "notes.txt"}

    version = run.versions(run.serving_dir)[-1]
    expected = _reference(run.serving_dir, version, [good[n] for n in sorted(good)])
    for name in (contract.PREDICTIONS_CSV, contract.PREDICTIONS_JSONL):
        rows = local_models.read_predictions(str(Path(written.uri) / name))
        assert [Path(r["file"]).name for r in rows] == sorted(good)
        got = np.array([[r[c] for c in contract.PREDICTION_COLUMNS[3:]] for r in rows])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert [r["class_id"] for r in rows] == list(expected.argmax(axis=1))
    report = run_report.write_report(str(output_dir), to=str(tmp_path / "report"))
    assert f"{len(good):,} image(s) classified, 3 refused" in Path(report["markdown"]).read_text()
