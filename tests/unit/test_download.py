"""dataset.download and `cifar10-tfx download`, against a real HTTP server on 127.0.0.1 (no mocks
of urllib).

The server serves a small archive shaped like the official one; switches on it simulate the
failures the downloader must survive: ignored Range headers, dropped connections, wrong bytes.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass, field

import pytest

from cli.main import main as cifar10_tfx
from dataset import download as dl
from dataset.download import DownloadError, download_cifar10

RECORDS_PER_FILE = 3


def main(argv: list[str]) -> int:
    """`cifar10-tfx download ARGV...`, in-process; returns the exit code."""
    return cifar10_tfx(["download", *argv])


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """Build a .tar.gz in memory from (TarInfo, data) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def _record_bytes(n: int) -> bytes:
    """n CIFAR-10 binary records: a label byte 0-9, then 3072 random pixel bytes."""
    return b"".join(bytes([os.urandom(1)[0] % 10]) + os.urandom(3072) for _ in range(n))


@pytest.fixture(scope="module")
def good_archive() -> tuple[bytes, dict[str, bytes]]:
    """A small archive shaped like the official one, and its file contents."""
    files = {name: _record_bytes(RECORDS_PER_FILE) for name in dl.EXPECTED_FILES}
    members = [_dir("cifar-10-batches-bin")]
    members += [_file(f"cifar-10-batches-bin/{n}", d) for n, d in files.items()]
    members.append(_file("cifar-10-batches-bin/batches.meta.txt", b"airplane\nautomobile\n"))
    return _tar_gz(members), files


@dataclass
class ServerState:
    payload: bytes = b""
    ignore_range: bool = False
    cut_after: int | None = None  # one shot: close the connection after this many body bytes
    requests: list[dict[str, str | None]] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        range_header = self.headers.get("Range")
        state.requests.append({"path": self.path, "range": range_header})
        data = state.payload
        start = 0
        if range_header and not state.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.cut_after is not None:
            body, state.cut_after = body[:state.cut_after], None
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()


@pytest.fixture
def server(good_archive):
    """A threaded HTTP server on a free 127.0.0.1 port; yields (state, url)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = ServerState(payload=good_archive[0])  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}/cifar-10-binary.tar.gz"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _get(dest, state: ServerState, url: str, **kwargs) -> str:
    """Download what the server serves, checking against its own md5/size unless overridden."""
    kwargs.setdefault("expected_md5", _md5(state.payload))
    kwargs.setdefault("expected_size", len(state.payload))
    return download_cifar10(str(dest), url=url, timeout=5, **kwargs)


def _assert_good(folder: str, files: dict[str, bytes]) -> None:
    assert os.path.basename(folder) == "cifar-10-batches-bin"
    for name, data in files.items():
        with open(os.path.join(folder, name), "rb") as f:
            assert f.read() == data
    assert os.path.isfile(os.path.join(folder, "batches.meta.txt"))


def _leftovers(dest) -> list[str]:
    """Temporary unpack folders left in dest (there should be none)."""
    return [n for n in os.listdir(dest) if n.startswith(".cifar10-unpack-")]


def test_happy_path_and_idempotent(tmp_path, server, good_archive, caplog):
    state, url = server
    dest = tmp_path / "data"
    with caplog.at_level("INFO", logger="cifar10_tfx.download"):
        folder = _get(dest, state, url)
    _assert_good(folder, good_archive[1])
    assert folder == str(dest / "cifar-10-batches-bin")
    assert (dest / "cifar-10-binary.tar.gz").is_file()
    assert not (dest / "cifar-10-binary.tar.gz.part").exists()
    assert len(state.requests) == 1 and state.requests[0]["range"] is None
    assert any("100%" in r.getMessage() and "MB/s" in r.getMessage() for r in caplog.records)
    assert not _leftovers(dest)

    assert _get(dest, state, url) == folder
    assert len(state.requests) == 1  # no second request


def test_wrong_checksum(tmp_path, server, good_archive):
    state, url = server
    good = good_archive[0]
    state.payload = good[:-1] + bytes([good[-1] ^ 0xFF])  # same size, different bytes
    dest = tmp_path / "data"
    with pytest.raises(DownloadError) as err:
        _get(dest, state, url, expected_md5=_md5(good), expected_size=len(good))
    msg = str(err.value)
    assert _md5(good) in msg and _md5(state.payload) in msg
    assert "cifar-10-binary.tar.gz" in msg and "retry" in msg
    assert not dest.exists()  # the bad archive removed, and the folder this call made


def test_interrupted_download_resumes(tmp_path, server, good_archive):
    state, url = server
    total = len(state.payload)
    cut = total // 3
    state.cut_after = cut
    dest = tmp_path / "data"
    with pytest.raises(DownloadError) as err:
        _get(dest, state, url)
    msg = str(err.value)
    assert f"{cut:,} of {total:,} bytes" in msg and "resume" in msg
    assert (dest / "cifar-10-binary.tar.gz.part").stat().st_size == cut

    folder = _get(dest, state, url)
    assert state.requests[-1]["range"] == f"bytes={cut}-"
    _assert_good(folder, good_archive[1])
    assert dl._md5_of(str(dest / "cifar-10-binary.tar.gz")) == _md5(state.payload)
    assert not (dest / "cifar-10-binary.tar.gz.part").exists()


def test_server_ignoring_range_restarts_from_zero(tmp_path, server, good_archive):
    state, url = server
    state.cut_after = len(state.payload) // 2
    dest = tmp_path / "data"
    with pytest.raises(DownloadError):
        _get(dest, state, url)
    state.ignore_range = True
    folder = _get(dest, state, url)
    assert state.requests[-1]["range"] is not None  # asked to resume, got a full 200
    _assert_good(folder, good_archive[1])
    assert dl._md5_of(str(dest / "cifar-10-binary.tar.gz")) == _md5(state.payload)


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _fifo(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.FIFOTYPE
    return info, None


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "fifo"])
def test_unsafe_members_are_refused(tmp_path, server, kind):
    state, url = server
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = {
        "dotdot": ("../evil.bin", _file("../evil.bin", b"x")),
        "absolute": (str(outside / "abs.bin"), _file(str(outside / "abs.bin"), b"x")),
        "symlink": ("cifar-10-batches-bin/link",
                    _link("cifar-10-batches-bin/link", "/etc/passwd", tarfile.SYMTYPE)),
        "hardlink": ("cifar-10-batches-bin/hard",
                     _link("cifar-10-batches-bin/hard", "../../etc/passwd", tarfile.LNKTYPE)),
        "fifo": ("cifar-10-batches-bin/pipe", _fifo("cifar-10-batches-bin/pipe")),
    }
    member_name, member = evil[kind]
    state.payload = _tar_gz([_dir("cifar-10-batches-bin"),
                             _file("cifar-10-batches-bin/data_batch_1.bin", _record_bytes(1)),
                             member])
    dest = outside / "dest"
    with pytest.raises(DownloadError) as err:
        _get(dest, state, url)
    assert member_name in str(err.value)
    assert sorted(os.listdir(outside)) == ["dest"]  # nothing written beside dest
    assert sorted(os.listdir(dest)) == ["cifar-10-binary.tar.gz"]  # no unpacked or temp folder


def test_bad_archive_at_final_name_is_downloaded_again(tmp_path, server, good_archive):
    """Documented choice: a wrong-checksum file at the final name is deleted and re-fetched."""
    state, url = server
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "cifar-10-binary.tar.gz").write_bytes(state.payload[: len(state.payload) // 2])
    folder = _get(dest, state, url)
    assert len(state.requests) == 1 and state.requests[0]["range"] is None
    _assert_good(folder, good_archive[1])


def test_verified_archive_present_is_unpacked_without_network(tmp_path, server, good_archive):
    state, url = server
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "cifar-10-binary.tar.gz").write_bytes(state.payload)
    _assert_good(_get(dest, state, url), good_archive[1])
    assert state.requests == []


def test_corrupt_archive_with_matching_md5_is_a_clear_error(tmp_path, server):
    state, url = server
    state.payload = state.payload[: len(state.payload) // 2]  # md5 "matches", but truncated gz
    dest = tmp_path / "data"
    with pytest.raises(DownloadError) as err:
        _get(dest, state, url)
    assert "cifar-10-binary.tar.gz" in str(err.value) and "corrupt" in str(err.value)
    assert not _leftovers(dest) and not (dest / "cifar-10-batches-bin").exists()


def test_foreign_folder_is_moved_aside_not_deleted(tmp_path, server, good_archive):
    state, url = server
    dest = tmp_path / "data"
    (dest / "cifar-10-batches-bin").mkdir(parents=True)
    (dest / "cifar-10-batches-bin" / "mine.txt").write_text("keep me")
    _assert_good(_get(dest, state, url), good_archive[1])
    aside = [n for n in os.listdir(dest) if n.startswith("cifar-10-batches-bin.old-")]
    assert len(aside) == 1 and (dest / aside[0] / "mine.txt").read_text() == "keep me"


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/x.tar.gz"


def test_main_unreachable_url(tmp_path, capsys):
    rc = main(["--dest", str(tmp_path / "d"), "--url", _closed_port_url(), "--timeout", "5"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and "--data-dir" in err and "could not be reached" in err
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []  # the --dest it made, empty, is gone again
    (tmp_path / "mine").mkdir()  # a folder that was there stays
    assert main(["--dest", str(tmp_path / "mine"), "--url", _closed_port_url()]) == 1
    assert os.listdir(tmp_path) == ["mine"]


def test_main_success_prints_folder(tmp_path, server, capsys):
    state, url = server
    dest = tmp_path / "d"
    rc = main(["--dest", str(dest), "--url", url, "--md5", _md5(state.payload), "--quiet"])
    out, _ = capsys.readouterr()
    assert rc == 0 and out.strip() == str(dest / "cifar-10-batches-bin")


def test_module_runs_as_script(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "download", "--dest", str(tmp_path / "d"),
         "--url", _closed_port_url(), "--timeout", "5"],
        capture_output=True, text=True, timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.returncode == 1
    assert "--data-dir" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("downloading http://127.0.0.1:")


def test_quiet_failure_is_the_error_line_alone(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "download", "--dest", str(tmp_path / "d"),
         "--url", _closed_port_url(), "--timeout", "5", "--quiet"],
        capture_output=True, text=True, timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: could not reach http://127.0.0.1:")


# Issues #16 and #20: the downloader's own faults, each one line naming what is wrong.

def _one_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _tree(folder) -> dict[str, bytes | str]:
    """Every entry under folder: file contents, or the target of a link."""
    found: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[key] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    found[key] = f.read()
    return found


def test_custom_unreachable_url_is_named_not_the_official_site(tmp_path, capsys):
    url = _closed_port_url()
    assert main(["--dest", str(tmp_path / "d"), "--url", url, "--timeout", "5"]) == 1
    line = _one_line(capsys)
    assert f"could not reach {url}" in line and "official" not in line


def test_url_without_scheme_is_a_usage_error_before_anything_is_created(tmp_path, capsys):
    dest = tmp_path / "d"
    assert main(["--dest", str(dest), "--url", "example.com/cifar.tar.gz"]) == 2
    line = _one_line(capsys)
    assert line.startswith("error: argument --url: invalid URL 'example.com/cifar.tar.gz'")
    assert "https://example.com/cifar.tar.gz" in line and not dest.exists()


def test_credentials_in_the_url_are_never_printed(tmp_path, server, capsys, caplog):
    state, url = server
    secret_url = url.replace("http://", "http://alice:s3cret@") + "?token=t0ken&v=1"
    with caplog.at_level("INFO", logger="cifar10_tfx.download"):
        assert main(["--dest", str(tmp_path / "ok"), "--url", secret_url,
                     "--md5", _md5(state.payload)]) == 0
    closed = _closed_port_url().replace("http://", "http://alice:s3cret@")
    assert main(["--dest", str(tmp_path / "d"), "--url", closed, "--timeout", "5"]) == 1
    assert main(["--dest", str(tmp_path / "d"), "--url", "alice:s3cret@example.com/x"]) == 2
    out, err = capsys.readouterr()
    printed = out + err + caplog.text
    assert "downloading http://***@127.0.0.1" in caplog.text and "token=***" in caplog.text
    assert "could not reach http://***@127.0.0.1" in err
    assert "s3cret" not in printed and "t0ken" not in printed


@pytest.mark.parametrize("name", ["cifar-10-binary.tar.gz.part", "cifar-10-binary.tar.gz"])
def test_planted_symlink_is_refused_and_its_target_untouched(tmp_path, server, capsys, name):
    state, url = server
    dest, victim = tmp_path / "d", tmp_path / "victim"
    dest.mkdir()
    victim.mkdir()
    (victim / "precious.txt").write_text("do not overwrite")
    os.symlink(victim / "precious.txt", dest / name)
    before = _tree(victim), _tree(dest)
    assert main(["--dest", str(dest), "--url", url, "--md5", _md5(state.payload)]) == 1
    line = _one_line(capsys)
    assert f"refusing to download into {dest / name}: it is a symbolic link" in line
    assert (_tree(victim), _tree(dest)) == before and not state.requests


def test_partial_file_is_opened_without_following_links(tmp_path):
    """The O_NOFOLLOW open itself: a link that appears after the check is still refused."""
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    os.symlink(target, tmp_path / "x.part")
    with pytest.raises(DownloadError, match="cannot write .*x.part.*symbolic link"):
        dl._stream(io.BytesIO(b"data"), str(tmp_path / "x.part"), "wb", 0, 4, "http://h/x",
                   False)
    assert target.read_bytes() == b"keep"


def test_dest_that_is_a_file_or_read_only_is_one_line(tmp_path, capsys):
    file = tmp_path / "afile"
    file.write_text("mine")
    assert main(["--dest", str(file), "--url", "http://127.0.0.1:9/x"]) == 1
    assert f"cannot download into {file}: it (or a folder above it) is an existing file" \
        in _one_line(capsys)
    assert file.read_text() == "mine"
    # /proc/1 refuses new entries even to root (tests here run as root, so chmod would not do).
    assert main(["--dest", "/proc/1/cifar10", "--url", "http://127.0.0.1:9/x"]) == 1
    assert "/proc/1/cifar10" in _one_line(capsys)


def test_run_without_data_points_at_an_unverified_folder_it_found(tmp_path, monkeypatch):
    """`run` has no --url: an unreachable site and a cifar-10-batches-bin/ already in the download
    folder (built from a local copy, so not a verified download) give one line that names
    --data-dir with that folder."""
    from cli import run as run_module

    real = dl.download_cifar10
    monkeypatch.setattr(dl, "download_cifar10",  # the real download, from a closed port
                        lambda dest: real(dest, url=_closed_port_url(), timeout=5,
                                          progress=False))
    (tmp_path / "cache" / "cifar-10-batches-bin").mkdir(parents=True)
    with pytest.raises(run_module.Failure) as failure:
        run_module.resolve_data_dir(None, str(tmp_path / "cache"))
    message = str(failure.value)
    assert "could not reach" in message and "cifar10-tfx download --url" in message
    assert message.endswith(f"pass --data-dir {tmp_path / 'cache'}.")
