"""The TFLite converter's and interpreter's C++ log lines, which TF_CPP_MIN_LOG_LEVEL does not
reach, are hidden only where that level asks for quiet (cifar10-tfx without --verbose)."""
from __future__ import annotations

import os

import pytest

from components.tflite_converter import conversion


@pytest.mark.parametrize("level", ["3", None])
def test_native_output_is_hidden_only_at_level_3(level, capfd, monkeypatch):
    if level is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    with conversion.native_logs_hidden():
        os.write(1, b"fully_quantize: 0\n")
        os.write(2, b"W0000 tf_tfl_flatbuffer_helpers.cc:390] Ignored output_format.\n")
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    if level == "3":
        assert (out, err) == ("", "after\n")
    else:
        assert "fully_quantize" in out and "Ignored output_format" in err and "after" in err


def test_an_error_inside_still_arrives_and_output_comes_back(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    with pytest.raises(RuntimeError, match="conversion failed"):
        with conversion.native_logs_hidden():
            raise RuntimeError("conversion failed")
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"
