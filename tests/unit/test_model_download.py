"""Tests of serving.download_model: copying a pushed model version into a local base path."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cli.main import main
from modules import contract
from serving.download_model import ModelDownloadError, download_model, list_versions
from tests.support import serving_test_server as sts


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "saved_model"
    sts.build_stand_in_model(str(path))
    return path


def add_version(base: Path, version, stand_in: Path, marker: str | None = None) -> Path:
    """A copy of the stand-in at base/version, with assets.extra/ like the pipeline pushes."""
    target = base / str(version)
    shutil.copytree(stand_in, target)
    extra = target / "assets.extra"
    extra.mkdir()
    (extra / "tf_serving_warmup_requests").write_bytes(os.urandom(2048))
    (extra / "marker.txt").write_text(marker or f"version {version}")
    (target / "empty_dir").mkdir()
    return target


def tree(root: Path) -> dict:
    """{relative path: bytes} for files, {relative path: None} for folders."""
    out = {}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = path.read_bytes() if path.is_file() else None
    return out


@pytest.fixture
def source(tmp_path, stand_in) -> Path:
    base = tmp_path / "pushed"
    base.mkdir()
    for version in (1, 2, 10):  # 10 > 2: versions compare as integers, not strings
        add_version(base, version, stand_in)
    add_version(base, "latest", stand_in)  # not an integer: ignored
    (base / "11").mkdir()  # no saved_model.pb (a push in progress): ignored
    (base / "11" / "variables").mkdir()
    (base / "12").write_text("a file, not a folder")
    return base


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "serving" / "cifar10"  # does not exist yet: created on demand


def test_lists_only_integer_versions_with_saved_model(source):
    assert list_versions(str(source)) == [1, 2, 10]


def test_latest_version_is_copied_completely(source, dest):
    final = download_model(str(source), str(dest))
    assert final == str(dest / "10")
    assert tree(dest / "10") == tree(source / "10")
    assert "empty_dir" in tree(dest / "10")
    assert os.listdir(dest) == ["10"]  # no temporary folder left behind


def test_named_version(source, dest):
    final = download_model(str(source), str(dest), version=2)
    assert final == str(dest / "2")
    assert (dest / "2" / "assets.extra" / "marker.txt").read_text() == "version 2"
    assert tree(dest / "2") == tree(source / "2")


def test_missing_version(source, dest):
    with pytest.raises(ModelDownloadError, match=r"version 3 not found; available: 1, 2, 10"):
        download_model(str(source), str(dest), version=3)
    with pytest.raises(ModelDownloadError, match="version 11 not found"):
        download_model(str(source), str(dest), version=11)  # exists, but no saved_model.pb
    assert not dest.exists()


def test_no_versions(tmp_path, stand_in, dest):
    base = tmp_path / "empty_push"
    base.mkdir()
    add_version(base, "latest", stand_in)
    (base / "3").mkdir()
    with pytest.raises(ModelDownloadError, match="no model versions"):
        download_model(str(base), str(dest))
    with pytest.raises(ModelDownloadError, match="not found or not a folder"):
        download_model(str(tmp_path / "nowhere"), str(dest))


@pytest.mark.parametrize("where", ["the base", "a version", "a symlink to the base"])
def test_a_destination_in_the_source_is_refused_and_the_source_untouched(source, tmp_path,
                                                                         where):
    """A copy into the pushed base path would grow its versions with copies of themselves (or,
    forced, rewrite one in place)."""
    before = tree(source)
    target = {"the base": source, "a version": source / "10" / "inner",
              "a symlink to the base": tmp_path / "link"}[where]
    if where == "a symlink to the base":
        target.symlink_to(source)
    with pytest.raises(ModelDownloadError, match=f"^DEST_BASE {target} is (inside )?SOURCE_BASE "
                                                 f"{source}: copy to a folder outside it$"):
        download_model(str(source), str(target), force=True)
    assert tree(source) == before


def test_a_bucket_destination_is_refused_not_made_a_local_folder(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelDownloadError, match="^DEST_BASE gs://bucket/models: a local folder "
                                                 "is expected"):
        download_model(str(source), "gs://bucket/models")
    assert not (tmp_path / "gs:").exists()


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_file_where_the_destination_folder_goes_is_one_line(source, tmp_path, below):
    """Before, the OS's errno text (File exists, Not a directory) was all a user saw."""
    blocker = tmp_path / "models"
    blocker.write_text("not a folder")
    dest = blocker / below if below else blocker
    where = f"is inside {blocker}, which is" if below else "is"
    with pytest.raises(ModelDownloadError,
                       match=f"^DEST_BASE {dest} {where} an existing file, not a folder$"):
        download_model(str(source), str(dest))
    assert blocker.read_text() == "not a folder"


def test_a_bucket_out_of_reach_is_one_line(dest, capsys):
    """No network here (or no credentials where there is): TensorFlow's GCS filesystem raised
    FailedPreconditionError through the command, a traceback."""
    assert main(["download-model", "gs://cifar10-tfx-no-such-bucket/models", str(dest)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: gs://cifar10-tfx-no-such-bucket/models cannot be read: "), err
    assert len(err.strip().splitlines()) == 1 and not dest.exists()


def test_corrupt_saved_model_is_refused_and_leaves_nothing(source, dest, stand_in):
    bad = add_version(source, 20, stand_in)
    (bad / "saved_model.pb").write_bytes(b"\x08\x01 definitely not a SavedModel proto" * 10)
    with pytest.raises(ModelDownloadError, match="does not load"):
        download_model(str(source), str(dest))  # 20 is the latest: refused, not skipped
    assert os.listdir(dest) == []
    # the same failure with an existing good copy and --force keeps the good copy
    download_model(str(source), str(dest), version=10)
    shutil.rmtree(source / "10")
    shutil.copytree(bad, source / "10")
    before = tree(dest / "10")
    with pytest.raises(ModelDownloadError, match="does not load"):
        download_model(str(source), str(dest), version=10, force=True)
    assert os.listdir(dest) == ["10"]
    assert tree(dest / "10") == before


def test_model_without_serving_default_is_refused(tmp_path, dest):
    import tensorflow as tf

    class NoDefault(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def double(self, x):
            return {"y": 2 * x}

    module = NoDefault()
    base = tmp_path / "pushed"
    tf.saved_model.save(module, str(base / "5"),
                        signatures={"serving_pixels": module.double.get_concrete_function()})
    with pytest.raises(ModelDownloadError, match="no 'serving_default' signature"):
        download_model(str(base), str(dest))
    assert os.listdir(dest) == []


def test_refuses_overwrite_unless_forced(source, dest):
    download_model(str(source), str(dest), version=1)
    (source / "1" / "assets.extra" / "marker.txt").write_text("re-pushed")
    with pytest.raises(ModelDownloadError, match="already exists; use --force"):
        download_model(str(source), str(dest), version=1)
    assert (dest / "1" / "assets.extra" / "marker.txt").read_text() == "version 1"
    download_model(str(source), str(dest), version=1, force=True)
    assert (dest / "1" / "assets.extra" / "marker.txt").read_text() == "re-pushed"
    assert tree(dest / "1") == tree(source / "1")
    assert os.listdir(dest) == ["1"]  # the old copy moved aside is gone too


def test_url_style_source_through_gfile(source, dest):
    """gs:// and s3:// go through tf.io.gfile; TF's in-memory ram:// filesystem stands in."""
    import tensorflow as tf

    remote = "ram://pushed-for-test/cifar10"
    # TF's ram:// filesystem lists by string prefix, so an `assets` folder next to
    # `assets.extra` would show a phantom file `assets/.extra`; drop the empty `assets` here.
    shutil.rmtree(source / "2" / "assets")
    for path in (source / "2").rglob("*"):
        target = f"{remote}/2/{path.relative_to(source / '2').as_posix()}"
        if path.is_dir():
            tf.io.gfile.makedirs(target)
        else:
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.copy(str(path), target, overwrite=True)
    assert list_versions(remote + "/") == [2]
    final = download_model(remote + "/", str(dest))
    assert final == str(dest / "2")
    assert tree(dest / "2") == tree(source / "2")


def test_cli(source, dest, capsys):
    assert main(["download-model", str(source), str(dest), "--version", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(dest / "1")
    assert main(["download-model", str(source), str(dest), "--version", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--force" in err and "Traceback" not in err
    assert main(["download-model", str(source), str(dest), "--version", "1", "--force"]) == 0
    assert main(["download-model", str(source), str(dest), "--version", "7"]) == 1
    assert "available: 1, 2, 10" in capsys.readouterr().err


def test_scheme_without_a_tensorflow_filesystem_goes_through_fsspec(source, dest):
    """s3:// in a plain TF install goes through fsspec; its in-memory memory:// filesystem stands
    in for S3 here (same code path, s3fs swaps in the network)."""
    import fsspec

    memory = fsspec.filesystem("memory")
    remote = "memory://pushed-for-fsspec-test/cifar10"
    memory.put(str(source / "10"), f"{remote}/10", recursive=True)
    memory.put(str(source / "2"), f"{remote}/2", recursive=True)
    try:
        assert list_versions(remote) == [2, 10]
        final = download_model(remote, str(dest))
        assert final == str(dest / "10")
        copied = {k: v for k, v in tree(dest / "10").items() if v is not None}
        assert copied == {k: v for k, v in tree(source / "10").items() if v is not None}
    finally:
        memory.rm("/pushed-for-fsspec-test", recursive=True)


def test_unknown_scheme_is_a_clear_error(dest, capsys):
    assert main(["download-model", "nosuchfs://bucket/models/cifar10", str(dest)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: nosuchfs://bucket/models/cifar10: no filesystem for 'nosuchfs://'")
    assert "Traceback" not in err and not dest.exists()


@pytest.mark.skipif(not os.environ.get("S3_MODEL_BASE"),
                    reason="set S3_MODEL_BASE=s3://bucket/path (a pushed base path; s3fs installed "
                           "and AWS credentials configured) to download from real S3")
def test_real_s3_download(dest):
    final = download_model(os.environ["S3_MODEL_BASE"], str(dest))
    assert (Path(final) / contract.SAVED_MODEL_FILE).is_file()


# ---- Nothing outside dest_base, nothing run, no link followed (issue #20) ------------------------

def test_object_key_with_dotdot_is_refused_and_writes_nothing_outside(source, tmp_path):
    """An object store key may hold `..`; copying it naively would write outside dest_base."""
    import fsspec

    memory = fsspec.filesystem("memory")
    remote = "memory://pushed-dotdot-test/cifar10"
    memory.put(str(source / "10"), f"{remote}/10", recursive=True)
    memory.pipe(f"{remote}/10/../../../../victim/owned.txt", b"written outside")
    memory.pipe(f"{remote}/10/variables/../../../escape.txt", b"written outside")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("untouched")
    dest = tmp_path / "a" / "b" / "c" / "dest"
    before = tree(tmp_path)
    try:
        with pytest.raises(ModelDownloadError, match=r"would land outside the destination"):
            download_model(remote, str(dest))
    finally:
        memory.rm("/pushed-dotdot-test", recursive=True)
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("a")} == before
    assert os.listdir(dest) == []  # not even a staging folder left


def _model_that_writes_a_file_when_loaded(export_dir: Path, marker: Path) -> None:
    """A SavedModel with the contract's signatures whose resource initialiser, run by
    tf.saved_model.load, writes `marker`: proof that checking it ran it."""
    import tensorflow as tf

    class Marker(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self):
            tf.io.write_file(str(marker), "the model ran")

    def outputs(count):
        return {contract.PROBABILITIES_OUTPUT: tf.zeros([count, contract.NUM_CLASSES]),
                contract.CLASS_ID_OUTPUT: tf.zeros([count], tf.int64),
                contract.CLASS_NAME_OUTPUT: tf.fill([count], "airplane")}

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.marker = Marker()

        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name=contract.IMAGE_BYTES_INPUT)])
        def images(self, image_bytes):
            return outputs(tf.shape(image_bytes)[0])

        @tf.function(input_signature=[tf.TensorSpec([None, *contract.IMAGE_SHAPE], tf.uint8,
                                                    name=contract.PIXELS_INPUT)])
        def pixels(self, pixels):
            return outputs(tf.shape(pixels)[0])

        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
        def examples(self, examples):
            return outputs(tf.shape(examples)[0])

    model = Model()
    tf.saved_model.save(model, str(export_dir), signatures={
        contract.SERVING_SIGNATURE: model.images.get_concrete_function(),
        contract.PIXELS_SIGNATURE: model.pixels.get_concrete_function(),
        contract.EXAMPLES_SIGNATURE: model.examples.get_concrete_function()})
    assert not marker.exists()


def test_check_reads_the_model_without_running_it(tmp_path, dest):
    marker = tmp_path / "victim" / "ran.txt"
    marker.parent.mkdir()
    _model_that_writes_a_file_when_loaded(tmp_path / "pushed" / "3", marker)
    assert download_model(str(tmp_path / "pushed"), str(dest)) == str(dest / "3")
    assert os.listdir(tmp_path / "victim") == []  # the initialiser never ran
    assert tree(dest / "3") == tree(tmp_path / "pushed" / "3")


def test_model_whose_signature_takes_the_wrong_input_is_refused(tmp_path, dest):
    import tensorflow as tf

    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="jpeg")])
        def serve(self, jpeg):
            return {contract.PROBABILITIES_OUTPUT: tf.zeros([tf.shape(jpeg)[0], 10])}

    module = Wrong()
    function = module.serve.get_concrete_function()
    tf.saved_model.save(module, str(tmp_path / "pushed" / "4"), signatures={
        name: function for name in contract.SIGNATURE_INPUTS})
    with pytest.raises(ModelDownloadError, match=r"signature 'serving_default' takes \['jpeg'\]"):
        download_model(str(tmp_path / "pushed"), str(dest))
    assert os.listdir(dest) == []


@pytest.mark.parametrize("link_kind", ["file", "folder", "loop", "version"])
def test_symbolic_links_in_a_local_source_are_refused(source, dest, tmp_path, link_kind, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret.txt").write_text("not part of any model")
    version = source / "10"
    if link_kind == "file":
        (version / "assets.extra" / "secret.txt").symlink_to(victim / "secret.txt")
    elif link_kind == "folder":
        (version / "assets.extra" / "more").symlink_to(victim, target_is_directory=True)
    elif link_kind == "loop":
        (version / "variables" / "loop").symlink_to(version, target_is_directory=True)
    else:  # the version folder itself
        shutil.rmtree(version)
        shutil.copytree(source / "2", victim / "model")
        version.symlink_to(victim / "model", target_is_directory=True)
    before = tree(victim)
    assert main(["download-model", str(source), str(dest), "--version", "10"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "symbolic link" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert os.listdir(dest) == []
    assert tree(victim) == before


@pytest.mark.parametrize("damage", ["shard missing", "shard cut off"])
def test_damaged_variables_are_refused_and_leave_nothing(source, dest, stand_in, damage):
    """The signatures parse, but the weights do not read: refused before it becomes a version."""
    bad = add_version(source, 20, stand_in)
    (shard,) = (bad / "variables").glob("variables.data-*")
    if damage == "shard missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ModelDownloadError,
                       match="^SavedModel does not load: its variables cannot be read"):
        download_model(str(source), str(dest))
    assert os.listdir(dest) == []
