"""The TFLite converter's and interpreter's C++ log lines, which TF_CPP_MIN_LOG_LEVEL does not
reach, are hidden only where that level asks for quiet (cifar10-tfx without --verbose)."""
from __future__ import annotations

import os
import tempfile

import pytest

from modules import tflite_runtime


@pytest.mark.parametrize("level", ["3", None])
def test_native_output_is_hidden_only_at_level_3(level, capfd, monkeypatch):
    if level is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    with tflite_runtime.native_logs_hidden():
        os.write(1, b"fully_quantize: 0\n")
        os.write(2, b"W0000 tf_tfl_flatbuffer_helpers.cc:390] Ignored output_format.\n")
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    if level == "3":
        assert (out, err) == ("", "after\n")
    else:
        assert "fully_quantize" in out and "Ignored output_format" in err and "after" in err


def test_on_an_error_the_hidden_lines_are_logged_and_output_comes_back(capfd, caplog,
                                                                         monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = []
    mkstemp = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", lambda **kw: made.append(mkstemp(**kw)) or made[-1])
    with pytest.raises(RuntimeError, match="conversion failed"):
        with tflite_runtime.native_logs_hidden():
            os.write(2, b"error: 'tfl.fully_connected' op quantization failed\n")
            raise RuntimeError("conversion failed")
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"
    assert "'tfl.fully_connected' op quantization failed" in caplog.text
    assert len(made) == 1 and made[0][1].startswith(str(tmp_path))
    assert os.listdir(tmp_path) == []  # the temporary file is gone


def test_closed_output_descriptors_are_left_alone(monkeypatch):
    """No stdout to hide (a daemon with descriptor 1 closed): the call runs as it is."""
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    real_dup = os.dup

    def closed(descriptor):
        if descriptor == 1:
            raise OSError(9, "Bad file descriptor")
        return real_dup(descriptor)

    monkeypatch.setattr(os, "dup", closed)
    ran = []
    with tflite_runtime.native_logs_hidden():
        ran.append(True)
    assert ran == [True]
