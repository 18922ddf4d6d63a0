"""Security rules that hold for the whole code base, checked on the source itself."""
from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p for folder in ("pipeline", "components", "modules", "serving", "benchmarks")
    for p in (PROJECT / folder).rglob("*.py")) + [PROJECT / "local_runner.py",
                                                   PROJECT / "kubeflow_runner.py"]
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_that_deserializes_code():
    """The python CIFAR-10 batches are pickles; nothing here may load one (or any pickle)."""
    offenders = {str(p.relative_to(PROJECT)): sorted(_imports(p) & UNSAFE_MODULES)
                 for p in SOURCES if _imports(p) & UNSAFE_MODULES}
    assert not offenders


def test_no_allow_pickle_and_every_extraction_checks_its_members():
    for path in SOURCES:
        assert "allow_pickle=True" not in path.read_text(), path
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "extractall"):
                keywords = {k.arg for k in node.keywords}
                assert "members" in keywords, f"{path}:{node.lineno}: extractall without a " \
                                              f"checked member list"


def test_no_credentials_in_source():
    """Cloud credentials come from the environment (ADC, AWS_*), never from files in the repo."""
    for path in SOURCES:
        text = path.read_text()
        for marker in ("AKIA", "-----BEGIN PRIVATE KEY", "\"private_key\":"):
            assert marker not in text, f"{path} holds what looks like a credential"


def test_pipeline_image_runs_as_non_root():
    lines = [line.split() for line in (PROJECT / "Dockerfile").read_text().splitlines()
             if line.strip().upper().startswith("USER ")]
    assert lines and lines[-1][1] not in ("root", "0", "0:0")


# Issue #20, case 6: credentials in URLs are never printed (modules/urls.py is the one place).

def test_redact_hides_user_info_and_secret_query_values():
    from modules.urls import redact, redact_text

    assert redact("http://user:password@host:8501/v1?token=abc&v=2") == \
        "http://***@host:8501/v1?token=***&v=2"
    assert redact("https://host/x.tar.gz") == "https://host/x.tar.gz"
    assert redact("gs://bucket/models") == "gs://bucket/models"
    assert redact_text("POST http://u:p4ss@h:1/x failed") == "POST http://***@h:1/x failed"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(path: Path) -> Path:
    import io as _io

    from PIL import Image

    buffer = _io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def test_predict_never_prints_the_password_of_its_server_url(tmp_path, monkeypatch, capsys,
                                                             caplog):
    """Flag and $TFSERVING_URL alike: retries, warnings and the final error redact the URL."""
    from cli.main import main

    image = _png(tmp_path / "cat.png")
    url = f"http://alice:s3cret@127.0.0.1:{_closed_port()}"
    argv = ["predict", str(image), "--retries", "1", "--timeout", "2"]
    assert main([*argv, "--rest", url]) == 1
    monkeypatch.setenv("TFSERVING_URL", url)
    assert main(argv) == 1
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all("http://***@127.0.0.1" in line for line in errors), err
    assert "s3cret" not in out + err + caplog.text and "Traceback" not in err
