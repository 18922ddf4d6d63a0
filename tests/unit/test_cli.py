"""`cifar10-tfx`: one click group, one-line usage errors, and the flag checks `run` and
`compile-kfp` share (issue #16: --beam-workers -2, --trainer-memory 0, a missing
--hyperparameters-dir).

Every bad flag is refused before anything is downloaded, compiled or run, so these are fast.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli import logs
from cli.main import main
from modules import contract
from pipeline import configs

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMANDS = ("run", "compile-kfp", "download", "report", "predict", "download-model")
KFP_BASE = ["compile-kfp", "--pipeline-root", "gs://b/root", "--data-root", "gs://b/data",
            "--image", "registry/cifar10-tfx:1"]


@pytest.fixture(autouse=True)
def _keep_pytest_logging(monkeypatch):
    """The commands set up logging for a terminal; pytest's capture should stay as it is."""
    monkeypatch.setattr(logs, "configure", lambda verbose=False: None)


def _one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"\n  {command} " in out, out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: cifar10-tfx {command} ")


@pytest.mark.parametrize("argv, message", [
    (["nonsense"], "unknown command 'nonsense'"),
    ([], "a command is required"),
    (["run", "--epochs", "three"], "argument --epochs: invalid int value: 'three'"),
    (["run", "--tflite-mode", "int4"], "argument --tflite-mode: invalid choice: 'int4'"),
    (["run", "--runner", "flink"], "unrecognized arguments: --runner flink"),
    (["run", "--epochs"], "argument --epochs: expected one argument"),
    (["run", "--seed", "-1"], "--seed -1: seed must be within [0, 2**32 - 1]"),
    (["predict"], "the following arguments are required: PATH..."),
    (["predict", "a.png", "--version", "1", "--label", "x"],
     "argument --label: not allowed with argument --version"),
    (["predict", "a.png", "--rest", "http://h:8501", "--grpc", "h:8500"],
     "argument --grpc: not allowed with argument --rest"),
    (["predict", "a.png", "--bogus"], "unrecognized arguments: --bogus"),
    (["download", "--timeout", "soon"], "argument --timeout: invalid float value: 'soon'"),
    (["download", "--timeout", "nan"], "argument --timeout: invalid value 'nan': must be a "
     "finite number"),
    (["download", "--size", "-1"], "argument --size: invalid value '-1': must be at least 1"),
    (["predict", "a.png", "--timeout", "inf"], "argument --timeout: invalid value 'inf': must "
     "be a finite number"),
    (["predict", "a.png", "--timeout", "0"], "argument --timeout: invalid value '0': must be "
     "more than 0"),
    (["predict", "a.png", "--batch-size", "0"], "argument --batch-size: invalid value '0': "
     "must be at least 1"),
    (["predict", "a.png", "--retries", "-1"], "argument --retries: invalid value '-1': must be "
     "at least 0"),
    (["predict", "a.png", "--saved-model", "m", "--version", "3"],
     "argument --version: not allowed with argument --saved-model"),
    (["predict", "a.png", "--tflite", "m", "--label", "stable"],
     "argument --label: not allowed with argument --tflite"),
    ([*KFP_BASE, "--trainer-cpu", "inf"], "argument --trainer-cpu: invalid value 'inf': must "
     "be a finite number"),
    ([*KFP_BASE, "--max-num-workers", "-3"], "argument --max-num-workers: invalid value '-3': "
     "must be at least 1"),
])
def test_usage_errors_are_one_line_with_status_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in _one_error_line(capsys)


def test_predict_output_never_overwrites_an_input(tmp_path, capsys):
    """`--output images/a.png` replaced the picture with a CSV."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"an image")
    for given, output, where in ((images, images / "a.png", "in "),
                                 (images / "a.png", images / "a.png", "")):
        assert main(["predict", str(given), "--saved-model", "m", "--output", str(output)]) == 2
        assert (f"argument --output: {output} is {where}{given}, an input; write the "
                f"predictions elsewhere") in _one_error_line(capsys)
    assert (images / "a.png").read_bytes() == b"an image"
    (images / "p.csv").write_text("an earlier call's predictions")  # not an input: allowed
    assert main(["predict", str(images), "--saved-model", str(tmp_path / "none"),
                 "--output", str(images / "p.csv")]) == 1
    assert "no such file or folder" in _one_error_line(capsys)  # it got past the check


# --- issue #16: one set of rules for run and compile-kfp -------------------------------------

@pytest.mark.parametrize("command, output_flag", [(["run"], "--output-dir"),
                                                  (KFP_BASE, "--output")])
def test_negative_beam_workers_is_refused(command, output_flag, capsys, tmp_path):
    output = str(tmp_path / "out")
    assert main([*command, "--beam-workers", "-2", output_flag, output]) == 2
    line = _one_error_line(capsys)
    assert "--beam-workers -2" in line and "beam_workers must be >= 0" in line, line
    assert os.listdir(tmp_path) == []  # nothing downloaded, run or compiled


@pytest.mark.parametrize("command, output_flag", [(["run"], "--output-dir"),
                                                  (KFP_BASE, "--output")])
def test_a_beam_arg_that_beam_would_drop_is_refused(command, output_flag, capsys, tmp_path):
    """Beam's option parser discards a bare word with a log line; the user's setting was lost."""
    output = str(tmp_path / "out")
    assert main([*command, "--beam-arg", "--runner", "--beam-arg", "DirectRunner",
                 "--beam-arg", "disk_size_gb=50", output_flag, output]) == 2
    assert _one_error_line(capsys) == (
        "error: --beam-arg disk_size_gb=50: a Beam argument is a --flag or the value after one "
        "(Beam drops anything else); write --flag=value")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args, stray", [
    (["--runner", "DirectRunner", "x"], "x"), (["--direct_num_workers=2", "b"], "b"),
    (["c"], "c"), (["--direct_num_workers=2", "--runner", "DirectRunner"], None)])
def test_a_stray_beam_arg_is_what_beams_own_parser_discards(args, stray, caplog):
    from apache_beam.options.pipeline_options import PipelineOptions

    assert configs.stray_beam_arg(args) == stray
    with caplog.at_level("WARNING"):
        PipelineOptions(args).get_all_options()
    assert ("Discarding unparseable args" in caplog.text) == (stray is not None)


@pytest.mark.parametrize("command", [["run"], KFP_BASE])
def test_missing_hyperparameters_dir_is_refused(command, capsys, tmp_path):
    missing = tmp_path / "no-such-search"
    assert main([*command, "--hyperparameters-dir", str(missing)]) == 2
    line = _one_error_line(capsys)
    assert f"--hyperparameters-dir {missing}" in line and "is not a folder" in line, line


@pytest.mark.parametrize("command", [["run"], KFP_BASE])
@pytest.mark.parametrize("layout", ["empty", "the Tuner's parent folder", "two files"])
def test_hyperparameters_dir_must_hold_the_one_file(command, layout, capsys, tmp_path):
    """TFX reads the one file of the folder; anything else used to fail in the Trainer."""
    folder = tmp_path / "best_hyperparameters"
    folder.mkdir()
    if layout == "the Tuner's parent folder":
        (folder / "8").mkdir()
        (folder / "8" / contract.BEST_HYPERPARAMETERS_FILE).write_text("{}")
    elif layout == "two files":
        (folder / contract.BEST_HYPERPARAMETERS_FILE).write_text("{}")
        (folder / "notes.txt").write_text("")
    assert main([*command, "--hyperparameters-dir", str(folder)]) == 2
    line = _one_error_line(capsys)
    assert f"--hyperparameters-dir {folder}" in line, line
    assert f"must hold one file, {contract.BEST_HYPERPARAMETERS_FILE}" in line, line


@pytest.mark.parametrize("flag", ["--trainer-memory", "--trainer-cpu"])
@pytest.mark.parametrize("value", ["0", "-4"])
def test_zero_or_negative_trainer_resources_are_refused(flag, value, capsys, tmp_path):
    output = tmp_path / "spec.json"
    assert main([*KFP_BASE, flag, value, "--output", str(output)]) == 2
    line = _one_error_line(capsys)
    assert f"argument {flag}: invalid value '{value}': must be more than 0" in line, line
    assert not output.exists()


def test_the_rules_live_in_pipeline_config(tmp_path):
    with pytest.raises(configs.ConfigError) as error:
        configs.PipelineConfig(beam_workers=-2)
    assert (error.value.setting, error.value.value) == ("beam_workers", -2)
    with pytest.raises(configs.ConfigError) as error:
        configs.PipelineConfig(hyperparameters_dir=str(tmp_path / "missing"))
    assert error.value.setting == "hyperparameters_dir"
    # What a cluster would read is not checked here: a URL, or a folder that exists.
    configs.PipelineConfig(hyperparameters_dir="gs://bucket/tuner/best_hyperparameters")
    best = tmp_path / "best"
    best.mkdir()
    (best / contract.BEST_HYPERPARAMETERS_FILE).write_text("{}")
    configs.PipelineConfig(hyperparameters_dir=str(best), beam_workers=0)


def test_run_with_a_folder_without_the_batches_fails_with_status_1(capsys, tmp_path):
    assert main(["run", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 1
    assert _one_error_line(capsys) == (f"error: {tmp_path} does not hold cifar-10-batches-bin/ "
                                       "(the unpacked official cifar-10-binary.tar.gz).")


def test_download_model_and_report_failures_are_one_line_with_status_1(capsys, tmp_path):
    missing = tmp_path / "no-such-base"
    assert main(["download-model", str(missing), str(tmp_path / "dest")]) == 1
    assert str(missing) in _one_error_line(capsys)
    assert not (tmp_path / "dest").exists()
    assert main(["report", "--output-dir", str(tmp_path)]) == 1
    assert "no ML Metadata database" in _one_error_line(capsys)


# --- the entry points as a user runs them --------------------------------------------------

def _python(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=PROJECT_DIR, capture_output=True,
                          text=True, timeout=120)


def test_local_runner_is_cifar10_tfx_run(tmp_path):
    bad = _python("local_runner.py", "--beam-workers", "-2", "--output-dir", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "error: --beam-workers -2: beam_workers must be >= 0 (0: one per CPU core, "
        "1: in-process)"]
    helped = _python("local_runner.py", "--help")
    assert helped.returncode == 0 and "--data-dir" in helped.stdout
    assert "Usage: local_runner.py [OPTIONS]" in helped.stdout


def test_kubeflow_runner_is_cifar10_tfx_compile_kfp():
    bad = _python("kubeflow_runner.py", *KFP_BASE[1:], "--trainer-memory", "0")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "error: argument --trainer-memory: invalid value '0': must be more than 0 GiB (leave "
        "it out for the cluster's default) (see --help)"]


def test_python_m_cli_is_the_console_script():
    result = _python("-m", "cli", "nonsense")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: unknown command 'nonsense': choose one of " + ", ".join(COMMANDS)
        + " (see cifar10-tfx --help)"]
