"""serving.local_models: the SavedModel back end, the shared file loop and the output rows.

The SavedModel here is a small real one with the served model's `serving_default` contract (image
bytes in, probabilities out): a mean-colour classifier, so that its answers can be checked by hand.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from modules import contract
from serving import local_models
from serving.client import InputError, Prediction
from tests.support import serving_test_server as sts


class _MeanColour(tf.Module):
    """Probabilities from the mean red, green and blue of each 32x32 image."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, image_bytes):
        pixels = tf.map_fn(lambda b: tf.cast(tf.io.decode_image(b, channels=3,
                                                                expand_animations=False),
                                             tf.float32),
                           image_bytes, fn_output_signature=tf.TensorSpec([None, None, 3]))
        means = tf.reduce_mean(pixels, axis=[1, 2]) / 255.0  # [N, 3]
        logits = tf.concat([means, tf.zeros([tf.shape(means)[0], 7])], axis=1) * 10.0
        return {contract.PROBABILITIES_OUTPUT: tf.nn.softmax(logits)}


@pytest.fixture(scope="module")
def base_path(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("base")
    module = _MeanColour()
    tf.saved_model.save(module, str(base / "3"),
                        signatures={contract.SERVING_SIGNATURE: module.serve})
    (base / "1").mkdir()  # an older, unfinished version: no saved_model.pb
    return base


def _encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


@pytest.fixture
def folder(tmp_path) -> Path:
    red, green = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)
    red[..., 0], green[..., 1] = 255, 255
    (tmp_path / "a_red.png").write_bytes(_encode(red))
    (tmp_path / "b_green.webp").write_bytes(_encode(green, "WEBP"))
    (tmp_path / "c_large.png").write_bytes(_encode(np.zeros((64, 64, 3), np.uint8)))
    (tmp_path / "d_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "e_readme.txt").write_text("hello")
    return tmp_path


def test_a_base_path_means_its_newest_finished_version(base_path):
    assert local_models.SavedModelBackend(str(base_path)).path == str(base_path / "3")
    with pytest.raises(InputError, match="neither a model"):
        local_models.SavedModelBackend(str(base_path / "1"))
    with pytest.raises(InputError, match=f"^{base_path / '9'}: no such file or folder$"):
        local_models.SavedModelBackend(str(base_path / "9"))


class _OtherModel(tf.Module):
    """Somebody else's SavedModel: numbers in, numbers out."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def serve(self, x):
        return {"y": x * 2.0}


@pytest.mark.parametrize("signatures", ["none", "other"])
def test_another_saved_model_is_one_error_naming_it(tmp_path, signatures):
    """Not a traceback from inside TensorFlow (with the images printed as bytes)."""
    if signatures == "none":  # nothing to pick as serving_default
        tf.saved_model.save(tf.Module(), str(tmp_path / "1"))
    else:
        module = _OtherModel()
        tf.saved_model.save(module, str(tmp_path / "1"),
                            signatures={contract.SERVING_SIGNATURE: module.serve})
    expected = (r"has no 'serving_default' signature \(has \[\]\)" if signatures == "none"
                else r"signature 'serving_default' takes \['x'\] and returns \['y'\]")
    with pytest.raises(InputError, match=f"^{tmp_path / '1'}: SavedModel {expected}"):
        local_models.SavedModelBackend(str(tmp_path))


@pytest.mark.parametrize("content, message", [(b"", "file is empty"),
                                              (b"not a flatbuffer", "not a TFLite model")])
def test_a_tflite_file_that_is_not_a_model_is_one_error_naming_it(tmp_path, content, message):
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(InputError, match=f"^{path}: {message}"):
        local_models.TFLiteBackend(str(path))


def test_good_files_are_answered_and_bad_ones_named(base_path, folder):
    backend = local_models.SavedModelBackend(str(base_path))
    result = local_models.predict_files(backend, [folder], batch_size=2)
    assert [Path(p.source).name for p in result] == ["a_red.png", "b_green.webp"]
    assert [p.class_name for p in result] == ["airplane", "automobile"]  # red -> 0, green -> 1
    assert {Path(s.path).name: s.reason for s in result.skipped}.keys() == {
        "c_large.png", "d_broken.jpg", "e_readme.txt"}
    assert "64x64" in next(s.reason for s in result.skipped if "c_large" in s.path)


def test_resize_takes_the_large_image_in(base_path, folder):
    backend = local_models.SavedModelBackend(str(base_path))
    result = local_models.predict_files(backend, [folder], resize=True, progress=True)
    assert [Path(p.source).name for p in result] == ["a_red.png", "b_green.webp", "c_large.png"]


def test_nothing_to_answer_is_an_error(base_path, tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(InputError, match="no image could be classified"):
        local_models.predict_files(local_models.SavedModelBackend(str(base_path)), [tmp_path])


@pytest.mark.parametrize("output_format", contract.PREDICTION_FORMATS)
def test_both_formats_have_the_same_columns_and_values(tmp_path, output_format):
    probabilities = [0.1] * 10
    predictions = [Prediction(3, "cat", probabilities, "dir/x,1.png")]
    path = tmp_path / f"out.{output_format}"
    with open(path, "w", newline="") as f:
        assert local_models.write_predictions(predictions, output_format, f) == 1
    (row,) = local_models.read_predictions(str(path))
    assert list(row) == list(contract.PREDICTION_COLUMNS)
    assert row["file"] == "dir/x,1.png" and row["class_id"] == 3 and row["class_name"] == "cat"
    assert [row[f"p_{name}"] for name in contract.CLASS_NAMES] == probabilities
    if output_format == "jsonl":
        assert json.loads(path.read_text())["p_truck"] == 0.1


def test_cli_predict_with_the_local_saved_model(base_path, folder, tmp_path, capsys, caplog):
    from cli.main import main

    output = tmp_path / "p.jsonl"
    assert main(["predict", str(folder), "--saved-model", str(base_path), "--format", "jsonl",
                 "--output", str(output)]) == 0
    rows = local_models.read_predictions(str(output))
    assert [(Path(r["file"]).name, r["class_name"]) for r in rows] == [
        ("a_red.png", "airplane"), ("b_green.webp", "automobile")]
    shown = capsys.readouterr().err + caplog.text
    assert all(name in shown for name in ("c_large.png", "d_broken.jpg", "e_readme.txt"))
    assert main(["predict", str(folder), "--saved-model", str(base_path), "--tflite", "x"]) == 2


def test_one_row_and_one_log_line_per_file_whatever_the_file_names(base_path, tmp_path, capsys,
                                                                    caplog):
    from cli.main import main

    folder = tmp_path / "odd"
    folder.mkdir()
    for name in ("plain.png", "two\nlines.png", "tab\there.png"):
        Image.new("RGB", (32, 32), (200, 10, 10)).save(folder / name)
    (folder / "bad\nname.png").write_bytes(b"not an image")
    assert main(["predict", str(folder), "--saved-model", str(base_path)]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    skipped = [line for line in (err + caplog.text).splitlines() if "skipped" in line]
    assert len(skipped) == 1 and f"{folder}/bad\\nname.png" in skipped[0], skipped
    assert len(lines) == 4  # the header and three rows
    assert any(line.startswith(f"{folder}/two\\nlines.png ") for line in lines)
    assert any(line.startswith(f"{folder}/tab\\there.png ") for line in lines)


@pytest.mark.parametrize("damage", ["shard missing", "shard cut off"])
def test_a_saved_model_whose_weights_do_not_read_is_one_error_naming_it(tmp_path, damage):
    """Not TensorFlow's 50-line traceback from inside the loader."""
    sts.build_stand_in_model(str(tmp_path / "1"))
    (shard,) = (tmp_path / "1" / "variables").glob("variables.data-*")
    if damage == "shard missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(InputError, match=f"^{tmp_path / '1'}: SavedModel does not load \\("):
        local_models.SavedModelBackend(str(tmp_path))
