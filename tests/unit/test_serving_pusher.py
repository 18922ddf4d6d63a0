"""The ServingPusher's executor on real folders: what it pushes, and what it never touches."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tfx.types import standard_artifacts

from components.artifacts import TFLiteModel
from components.serving_pusher import executor
from modules import contract, export
from reports import runs
from serving import model_base

PROJECT_DIR = Path(__file__).resolve().parents[2]


def contents(root: Path) -> dict:
    """{relative path: bytes} for files and link targets, {relative path: None} for folders."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = f"-> {os.readlink(path)}"
        else:
            found[key] = path.read_bytes() if path.is_file() else None
    return found


def fake_saved_model(folder: Path) -> Path:
    (folder / "variables").mkdir(parents=True)
    (folder / contract.SAVED_MODEL_FILE).write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


@pytest.fixture
def victim(tmp_path) -> Path:
    folder = tmp_path / "victim"
    (folder / "nested").mkdir(parents=True)
    (folder / "precious.txt").write_text("must survive")
    (folder / "nested" / "data.bin").write_bytes(os.urandom(256))
    return folder


def push(tmp_path: Path, serving: Path, tflite: Path | None = None, blessed: int = 1,
         extra_inputs: dict | None = None):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    if not Path(export.serving_model_dir(model.uri)).exists():
        fake_saved_model(Path(export.serving_model_dir(model.uri)))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property(contract.BLESSED_PROPERTY, blessed)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    inputs = {executor.MODEL_KEY: [model], executor.BLESSING_KEY: [blessing]}
    if tflite is not None:
        converted = TFLiteModel()
        converted.uri = str(tmp_path / "tflite_artifact")
        Path(converted.uri).mkdir(exist_ok=True)
        (Path(converted.uri) / contract.TFLITE_FILE).write_bytes(b"flatbuffer")
        inputs[executor.TFLITE_KEY] = [converted]
    inputs.update(extra_inputs or {})
    executor.Executor().Do(inputs, {executor.PUSHED_MODEL_KEY: [pushed]},
                           {executor.SERVING_DIR_KEY: str(serving),
                            executor.TFLITE_DIR_KEY: str(tflite or "")})
    return pushed


def test_pushes_both_under_one_version_and_records_it(tmp_path):
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"
    pushed = push(tmp_path, serving, tflite)
    (version,) = model_base.list_versions(str(serving))
    assert model_base.list_versions(str(tflite)) == [version]
    assert contents(serving / str(version)) == contents(tmp_path / "model" / "Format-Serving")
    assert (tflite / str(version) / contract.TFLITE_FILE).read_bytes() == b"flatbuffer"
    assert pushed.get_int_custom_property(contract.PUSHED_PROPERTY) == 1
    assert pushed.get_int_custom_property(contract.PUSHED_VERSION_PROPERTY) == version
    assert pushed.get_string_custom_property(contract.PUSHED_DESTINATION_PROPERTY) == \
        str(serving / str(version))
    assert pushed.get_string_custom_property(contract.PUSHED_TFLITE_DESTINATION_PROPERTY) == \
        str(tflite / str(version))
    assert sorted(os.listdir(serving)) == [str(version)]  # no staging left


def test_unblessed_model_pushes_nothing(tmp_path):
    pushed = push(tmp_path, tmp_path / "serving", blessed=0)
    assert pushed.get_int_custom_property(contract.PUSHED_PROPERTY) == 0
    assert not (tmp_path / "serving").exists()


def test_stale_staging_is_removed_and_versions_keep_rising(tmp_path):
    serving = tmp_path / "serving"
    (serving / f"{contract.STAGING_PREFIX}5-deadbeef" / "variables").mkdir(parents=True)
    (serving / "9999999999").mkdir()  # a version from the future: the next one goes above it
    push(tmp_path, serving)
    assert sorted(os.listdir(serving)) == ["10000000000", "9999999999"]


def test_another_push_in_progress_keeps_its_staging_and_leftovers_go(tmp_path):
    """Two runs pushing into one base path: the second removed the first one's staging folder
    mid-copy, and the first failed after its training. A staging folder stays while its process
    runs on this machine, or, from another machine, for STAGING_STALE_SECONDS after its start;
    a crashed copy's (its process gone) goes at once, and so does one named with this very
    process's pid (a restarted container's earlier process had it)."""
    serving = tmp_path / "serving"
    now, here = int(time.time()), model_base.staging_name(1).split("-")[3]
    ended = subprocess.Popen(["true"])  # a process that has ended: its pid is free
    ended.wait()
    running = subprocess.Popen(["sleep", "60"])

    def staging(version: int, started: int, host: str, pid: int) -> Path:
        return serving / f"{contract.STAGING_PREFIX}{version}-{started}-{host}-{pid}-0badf00d"

    kept = [staging(7, now - 7200, here, running.pid),  # its process runs here
            staging(8, now - 60, "0e1se7e5", 1234)]  # another machine's, recent
    removed = [staging(6, now - 60, here, ended.pid),  # crashed here
               staging(4, now - 60, here, os.getpid()),  # this pid's earlier life
               staging(5, now - model_base.STAGING_STALE_SECONDS - 1, "0e1se7e5", 1234)]
    for folder in kept + removed:
        (folder / "variables").mkdir(parents=True)
    try:
        push(tmp_path, serving)
    finally:
        running.kill()
        running.wait()
    assert [f.exists() for f in kept + removed] == [True, True, False, False, False]
    name = model_base.staging_name(9).removeprefix(contract.STAGING_PREFIX).split("-")
    assert name[0] == "9" and abs(int(name[1]) - now) < 5 and name[3] == str(os.getpid())


@pytest.mark.parametrize("base", ["serving", "tflite"])
def test_a_staging_named_link_is_unlinked_not_followed(tmp_path, victim, base):
    """A link named like a crashed push's staging folder: removing it must not empty its target."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"
    (tmp_path / base).mkdir()
    link = tmp_path / base / f"{contract.STAGING_PREFIX}attack"
    link.symlink_to(victim, target_is_directory=True)
    before = contents(victim)
    push(tmp_path, serving, tflite)
    assert contents(victim) == before
    assert not os.path.lexists(link)
    assert len(model_base.list_versions(str(serving))) == 1


def test_a_model_holding_a_link_is_refused_and_nothing_is_pushed(tmp_path, victim):
    source = fake_saved_model(Path(export.serving_model_dir(str(tmp_path / "model"))))
    (source / "variables" / "stolen.txt").symlink_to(victim / "precious.txt")
    before = contents(victim)
    with pytest.raises(model_base.UnsafeEntryError, match="stolen.txt: a symbolic link"):
        push(tmp_path, tmp_path / "serving")
    assert contents(victim) == before
    assert not (tmp_path / "serving").exists()  # as before the push


def another_push_publishes_first(monkeypatch, serving: Path,
                                 publish: Callable[[str, str], None]) -> list[int]:
    """While this push stages its SavedModel, another push publishes the same version number:
    `publish(version, this push's source folder)` runs once. Returns [that version] after."""
    copy_tree = model_base.copy_tree
    taken: list[int] = []

    def racing_copy(source_fs, source, dest_fs, dest, **kwargs):
        name = os.path.basename(dest)
        if not taken and name.startswith(contract.STAGING_PREFIX) and str(serving) in dest:
            version = name.removeprefix(contract.STAGING_PREFIX).split("-")[0]
            publish(version, source)
            taken.append(int(version))
        return copy_tree(source_fs, source, dest_fs, dest, **kwargs)

    monkeypatch.setattr(model_base, "copy_tree", racing_copy)
    return taken


def test_a_version_another_push_takes_meanwhile_is_left_to_it_and_a_later_one_used(
        tmp_path, monkeypatch):
    """Two runs pushing in the same second pick the same number: the one that renames second
    used to fail with nothing pushed. It now leaves the other's version alone and tries again."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"

    def another_model(version: str, _source: str) -> None:
        fake_saved_model(serving / version)
        (serving / version / contract.SAVED_MODEL_FILE).write_bytes(b"the other run's graph")

    taken = another_push_publishes_first(monkeypatch, serving, another_model)
    evaluation = standard_artifacts.ModelEvaluation()  # with it, the version gets a model card
    evaluation.uri = str(tmp_path / "evaluation")
    pushed = push(tmp_path, serving, tflite, extra_inputs={executor.EVALUATION_KEY: [evaluation]})
    (theirs,) = taken
    ours = pushed.get_int_custom_property(contract.PUSHED_VERSION_PROPERTY)
    assert ours > theirs  # the next free number (or a later second)
    assert (serving / str(theirs) / contract.SAVED_MODEL_FILE).read_bytes() == \
        b"the other run's graph"
    assert sorted(os.listdir(serving)) == sorted([str(theirs), str(ours), "model_cards"])
    assert model_base.list_versions(str(tflite)) == [ours]
    card = serving / "model_cards" / str(ours) / contract.MODEL_CARD_MARKDOWN
    assert str(ours) in card.read_text()
    assert not (serving / "model_cards" / str(theirs)).exists()


def test_a_lost_race_to_the_same_model_pushes_nothing_twice(tmp_path, monkeypatch):
    """Two runs of one cached Trainer push the same model in the same second: the one that
    loses the race finds its model already served and publishes no copy of it."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"

    def this_model(version: str, source: str) -> None:
        shutil.copytree(source, serving / version)
        (tflite / version).mkdir(parents=True)
        (tflite / version / contract.TFLITE_FILE).write_bytes(b"flatbuffer")

    taken = another_push_publishes_first(monkeypatch, serving, this_model)
    pushed = push(tmp_path, serving, tflite)
    (version,) = taken
    assert pushed.get_int_custom_property(contract.ALREADY_SERVED_PROPERTY) == 1
    assert pushed.get_int_custom_property(contract.PUSHED_VERSION_PROPERTY) == version
    assert os.listdir(serving) == [str(version)] and os.listdir(tflite) == [str(version)]


def test_publish_version_refuses_to_overwrite(tmp_path):
    source = fake_saved_model(tmp_path / "source")
    base = tmp_path / "base"
    model_base.publish_version(str(source), str(base), 7, last=contract.SAVED_MODEL_FILE)
    with pytest.raises(model_base.ModelBaseError, match="already exists"):
        model_base.publish_version(str(source), str(base), 7)
    assert os.listdir(base) == ["7"]


def test_saved_model_pb_is_copied_last(tmp_path):
    source = fake_saved_model(tmp_path / "source")
    (source / "zzz.txt").write_text("sorted after saved_model.pb")
    copied = []

    class RecordingFilesystem(model_base.LocalFilesystem):
        def open(self, path, mode):
            if "w" in mode:
                copied.append(os.path.basename(path))
            return super().open(path, mode)

    model_base.copy_tree(model_base.LocalFilesystem(), str(source), RecordingFilesystem(),
                         str(tmp_path / "copy"), last=contract.SAVED_MODEL_FILE)
    assert copied[-1] == contract.SAVED_MODEL_FILE and len(copied) == 3


def test_on_an_object_store_the_version_folder_gets_saved_model_pb_last(tmp_path):
    """Where a rename is a copy (gs://, s3://), the staged version is copied into its number
    folder with saved_model.pb at the very end: a polling server never sees it before the rest."""
    source = fake_saved_model(tmp_path / "source")
    written_into_version = []

    class ObjectStoreLike(model_base.LocalFilesystem):
        atomic_rename = False

        def rename(self, source_path, destination):
            raise AssertionError("an object store must not rename a version into place")

        def open(self, path, mode):
            if "w" in mode and f"{os.sep}5{os.sep}" in path:
                written_into_version.append(os.path.relpath(path, tmp_path / "base" / "5"))
            return super().open(path, mode)

    base = str(tmp_path / "base")
    final = model_base.publish_version(str(source), base, 5, last=contract.SAVED_MODEL_FILE,
                                       base_fs=ObjectStoreLike())
    assert written_into_version == ["variables/variables.index", contract.SAVED_MODEL_FILE]
    assert os.listdir(base) == ["5"] and final == os.path.join(base, "5")


def test_on_an_object_store_a_version_that_appears_during_staging_is_left_alone(
        tmp_path, monkeypatch):
    """No rename there to fail: the version is looked for again just before the copy into it,
    so the push is refused as taken (and retried by the Pusher) instead of mixing its files
    into the other push's version."""
    source = fake_saved_model(tmp_path / "source")
    base = tmp_path / "base"

    class ObjectStoreLike(model_base.LocalFilesystem):
        atomic_rename = False

    copy_tree = model_base.copy_tree

    def another_push_publishes_first(source_fs, source_path, dest_fs, dest, **kwargs):
        if os.path.basename(dest).startswith(contract.STAGING_PREFIX):
            (base / "5").mkdir()
            (base / "5" / contract.SAVED_MODEL_FILE).write_bytes(b"theirs")
        return copy_tree(source_fs, source_path, dest_fs, dest, **kwargs)

    monkeypatch.setattr(model_base, "filesystem_for", lambda url: ObjectStoreLike())
    monkeypatch.setattr(model_base, "copy_tree", another_push_publishes_first)
    with pytest.raises(model_base.VersionTakenError, match="appeared meanwhile") as raised:
        model_base.publish_versions_together([(str(source), str(base), contract.SAVED_MODEL_FILE)],
                                             5)
    assert raised.value.version == 5
    assert os.listdir(base) == ["5"]  # no staging folder left
    assert contents(base / "5") == {contract.SAVED_MODEL_FILE: b"theirs"}


def test_remote_base_path_through_fsspec(tmp_path):
    """s3:// without tensorflow-io goes through fsspec; its memory:// filesystem stands in."""
    source = fake_saved_model(tmp_path / "source")
    base = "memory://pusher-test/serving"
    fs = model_base.filesystem_for(base)
    assert isinstance(fs, model_base.FsspecFilesystem)
    try:
        model_base.remove_stale_staging(base)  # a missing base is fine
        fs.makedirs(f"{base}/{contract.STAGING_PREFIX}1-stale")
        fs.makedirs(base)
        with fs.open(f"{base}/{contract.STAGING_PREFIX}1-stale/{contract.SAVED_MODEL_FILE}",
                     "wb") as f:
            f.write(b"half")
        model_base.remove_stale_staging(base)
        final = model_base.publish_version(str(source), base, 3, last=contract.SAVED_MODEL_FILE)
        assert final == f"{base}/3"
        assert model_base.list_versions(base, containing=contract.SAVED_MODEL_FILE) == [3]
        assert fs.listdir(base) == ["3"]
        with fs.open(f"{final}/variables/variables.index", "rb") as f:
            assert f.read() == b"index"
    finally:
        fs.remove("/pusher-test")


# --------------------------------------------------------------------------------------------
# Issue #16: a push is both artifacts or neither
# --------------------------------------------------------------------------------------------
def existing_tflite_base(tmp_path: Path) -> Path:
    """A TFLite base path holding an earlier push, to compare byte for byte afterwards."""
    tflite = tmp_path / "tflite"
    (tflite / "1700000000").mkdir(parents=True)
    (tflite / "1700000000" / contract.TFLITE_FILE).write_bytes(b"older flatbuffer")
    return tflite


@pytest.mark.parametrize("fault", ["parent_is_a_file", "base_is_a_file"])
def test_unwritable_serving_dir_pushes_neither(tmp_path, fault):
    """Tests run as root, which chmod cannot stop: a path through a regular file fails for
    everyone."""
    tflite = existing_tflite_base(tmp_path)
    before = contents(tflite)
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    serving = blocker / "serving" if fault == "parent_is_a_file" else blocker
    with pytest.raises(model_base.ModelBaseError) as info:
        push(tmp_path, serving, tflite)
    message = str(info.value)
    assert message.startswith(f"{serving}: cannot prepare the base path (")
    assert message.endswith("; nothing was pushed") and "\n" not in message
    assert contents(tflite) == before
    assert blocker.read_text() == "a regular file"
    assert not (tmp_path / "pushed" / executor.PUSHED_MARKER_FILE).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_serving_dir_pushes_neither(tmp_path):
    tflite = existing_tflite_base(tmp_path)
    before = contents(tflite)
    serving = tmp_path / "serving"
    serving.mkdir()
    serving.chmod(0o555)
    try:
        with pytest.raises(model_base.ModelBaseError, match=rf"^{serving}: .*nothing was pushed"):
            push(tmp_path, serving, tflite)
    finally:
        serving.chmod(0o755)
    assert contents(tflite) == before and os.listdir(serving) == []


def test_a_failing_saved_model_copy_takes_the_staged_tflite_back(tmp_path, victim):
    """The .tflite stages fine; the SavedModel then fails: the TFLite base is untouched."""
    tflite = existing_tflite_base(tmp_path)
    before = contents(tflite)
    source = fake_saved_model(Path(export.serving_model_dir(str(tmp_path / "model"))))
    (source / "variables" / "stolen.txt").symlink_to(victim / "precious.txt")
    with pytest.raises(model_base.UnsafeEntryError, match="stolen.txt: a symbolic link"):
        push(tmp_path, tmp_path / "serving", tflite)
    assert contents(tflite) == before
    assert not (tmp_path / "serving").exists()  # as before the push


def test_an_existing_version_in_either_base_pushes_neither(tmp_path):
    """The SavedModel's base is free, the TFLite one already has the version: neither."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"
    saved_model = fake_saved_model(tmp_path / "saved_model")
    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / contract.TFLITE_FILE).write_bytes(b"flatbuffer")
    tflite.mkdir()
    (tflite / "5").write_text("a file where the version folder should go")
    before_tflite = contents(tflite)
    expected = rf"^{tflite}: could not publish version 5 \({tflite}/5 already exists"
    with pytest.raises(model_base.ModelBaseError, match=expected):
        model_base.publish_versions_together(
            [(str(saved_model), str(serving), contract.SAVED_MODEL_FILE),
             (str(converted), str(tflite), "")], 5)
    assert contents(tflite) == before_tflite
    assert not serving.exists() or os.listdir(serving) == []


def test_publish_versions_together_success_and_rename_failure(tmp_path, monkeypatch):
    """The SavedModel is renamed into place, then the .tflite cannot be: both are gone."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"
    saved_model = fake_saved_model(tmp_path / "saved_model")
    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / contract.TFLITE_FILE).write_bytes(b"flatbuffer")
    sources = [(str(saved_model), str(serving), contract.SAVED_MODEL_FILE),
               (str(converted), str(tflite), "")]
    assert model_base.publish_versions_together(sources, 7) == [str(serving / "7"),
                                                                str(tflite / "7")]
    before = (contents(serving), contents(tflite))

    class FailingSecondRename(model_base.LocalFilesystem):
        """A real local filesystem whose rename into the TFLite base fails (a full disk)."""

        def rename(self, source, destination):
            if destination.startswith(str(tflite)):
                raise OSError(28, "No space left on device", destination)
            super().rename(source, destination)

    monkeypatch.setattr(model_base, "filesystem_for", lambda url: FailingSecondRename())
    with pytest.raises(model_base.ModelBaseError) as info:
        model_base.publish_versions_together(sources, 8)
    assert str(info.value) == (
        f"{tflite}: could not publish version 8 (No space left on device: {tflite}/8); nothing "
        f"was pushed (nothing left in {serving} either)")
    assert (contents(serving), contents(tflite)) == before


def test_a_failed_push_leaves_no_new_base_path_behind(tmp_path):
    """Neither base existed: after the failure neither exists (each is as it was)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    serving = tmp_path / "serving"  # created first, then the TFLite base fails
    with pytest.raises(model_base.ModelBaseError, match=rf"^{blocker}/tflite: cannot prepare"):
        push(tmp_path, serving, blocker / "tflite")
    assert not serving.exists()


def test_the_model_already_served_is_not_pushed_again(tmp_path):
    """A re-run whose Trainer came from the cache is blessed against the served copy of itself:
    the newest version holds the same graph, weights and .tflite, so nothing new is published."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"
    version = push(tmp_path, serving, tflite).get_int_custom_property(
        contract.PUSHED_VERSION_PROPERTY)
    card = serving / contract.MODEL_CARDS_DIR / str(version)
    card.mkdir(parents=True)  # as the Pusher writes it when the evaluation is connected
    (card / contract.MODEL_CARD_MARKDOWN).write_text("# card")

    again = push(tmp_path, serving, tflite)
    assert model_base.list_versions(str(serving)) == [version]
    assert model_base.list_versions(str(tflite)) == [version]
    assert again.get_int_custom_property(contract.ALREADY_SERVED_PROPERTY) == 1
    assert again.get_int_custom_property(contract.PUSHED_PROPERTY) == 1
    assert again.get_int_custom_property(contract.PUSHED_VERSION_PROPERTY) == version
    assert again.get_string_custom_property(contract.PUSHED_DESTINATION_PROPERTY) == \
        str(serving / str(version))
    assert again.get_string_custom_property(contract.PUSHED_MODEL_CARD_PROPERTY) == \
        str(card / contract.MODEL_CARD_MARKDOWN)


@pytest.mark.parametrize("change", ["weights", "tflite"])
def test_a_model_that_differs_from_the_served_one_is_pushed(tmp_path, change):
    """Compared by content, not by path: a new metadata store gives a new model the old one's
    folder, and a re-converted .tflite beside a cached model is new too."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"
    version = push(tmp_path, serving, tflite).get_int_custom_property(
        contract.PUSHED_VERSION_PROPERTY)
    if change == "weights":  # another training, in the same folder
        variables = Path(export.serving_model_dir(str(tmp_path / "model"))) / "variables"
        (variables / "variables.index").write_bytes(b"other weights")
    else:
        (tflite / str(version) / contract.TFLITE_FILE).write_bytes(b"older flatbuffer")
    pushed = push(tmp_path, serving, tflite)
    assert pushed.get_int_custom_property(contract.ALREADY_SERVED_PROPERTY) == 0
    assert model_base.list_versions(str(serving))[-1] > version


def card_inputs(tmp_path: Path) -> dict:
    """An evaluation to connect: with it, the Pusher publishes a model card per version."""
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(tmp_path / "evaluation")
    return {executor.EVALUATION_KEY: [evaluation]}


@pytest.mark.parametrize("killed_before", ["tflite", "model_cards"])
def test_a_push_killed_between_its_renames_is_completed_under_the_same_version(
        tmp_path, monkeypatch, killed_before):
    """SIGKILL after the SavedModel's rename, before the .tflite's (or the card's): TF Serving
    already serves the model, so the resumed Pusher completes that version instead of pushing
    the same model again under a new number, and clears the killed push's staging folders."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"
    promote = model_base._promote

    def killed_before_promoting(fs, staging, final, *args):
        if Path(final).parent.name == killed_before:
            os.kill(os.getpid(), signal.SIGKILL)
        promote(fs, staging, final, *args)

    monkeypatch.setattr(model_base, "_promote", killed_before_promoting)
    killed = multiprocessing.get_context("fork").Process(
        target=push, args=(tmp_path, serving, tflite),
        kwargs={"extra_inputs": card_inputs(tmp_path)})
    killed.start()
    killed.join()
    assert killed.exitcode == -signal.SIGKILL
    monkeypatch.undo()
    (version,) = model_base.list_versions(str(serving))
    assert model_base.list_versions(str(tflite)) == ([] if killed_before == "tflite" else [version])

    pushed = push(tmp_path, serving, tflite, extra_inputs=card_inputs(tmp_path))
    assert pushed.get_int_custom_property(contract.PUSHED_VERSION_PROPERTY) == version
    assert pushed.get_int_custom_property(contract.ALREADY_SERVED_PROPERTY) == 0
    assert sorted(os.listdir(serving)) == sorted([str(version), contract.MODEL_CARDS_DIR])
    assert os.listdir(tflite) == [str(version)]  # the killed push's staging folder is gone
    assert (tflite / str(version) / contract.TFLITE_FILE).read_bytes() == b"flatbuffer"
    cards = serving / contract.MODEL_CARDS_DIR
    assert os.listdir(cards) == [str(version)]
    assert str(version) in (cards / str(version) / contract.MODEL_CARD_MARKDOWN).read_text()
    assert pushed.get_string_custom_property(contract.PUSHED_TFLITE_DESTINATION_PROPERTY) == \
        str(tflite / str(version))


def test_a_partly_copied_tflite_version_is_replaced_by_a_complete_one(tmp_path):
    """On an object store the copy into the version stands in for the rename, with
    model.tflite written last: a folder without it is an interrupted push's, completed now."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"
    version = push(tmp_path, serving, tflite).get_int_custom_property(
        contract.PUSHED_VERSION_PROPERTY)
    (tflite / str(version) / contract.TFLITE_FILE).unlink()
    (tflite / str(version) / contract.LABELS_FILE).write_text("partial\n")

    pushed = push(tmp_path, serving, tflite)
    assert pushed.get_int_custom_property(contract.PUSHED_VERSION_PROPERTY) == version
    assert model_base.list_versions(str(serving)) == [version]
    assert contents(tflite) == {str(version): None,
                                f"{version}/{contract.TFLITE_FILE}": b"flatbuffer"}


def baseline_of(tmp_path: Path, served: Path | None) -> dict:
    """ServedModelBaseline's artifact: a copy of the served version `served` (None: nothing was
    served when the run began)."""
    baseline = standard_artifacts.Model()
    baseline.uri = str(tmp_path / "baseline")
    if served is not None:
        shutil.copytree(served, export.serving_model_dir(baseline.uri))
        baseline.set_int_custom_property(contract.BASELINE_VERSION_PROPERTY, int(served.name))
    return {executor.BASELINE_KEY: [baseline]}


@pytest.mark.parametrize("served_then", [False, True])
def test_a_version_another_run_pushed_after_the_evaluation_stops_the_push(tmp_path, served_then):
    """Two runs share a serving folder: the model was blessed against the version served when
    its run began (or against nothing), and another run has pushed since. The verdict says
    nothing about that version, so this model must not replace it."""
    serving = tmp_path / "serving"
    older = fake_saved_model(serving / "100")
    baseline = baseline_of(tmp_path, older if served_then else None)
    if not served_then:
        shutil.rmtree(serving)
    theirs = fake_saved_model(serving / "200")  # the other run's push, after the evaluation
    (theirs / contract.SAVED_MODEL_FILE).write_bytes(b"the other run's graph")
    before = contents(serving)

    pushed = push(tmp_path, serving, extra_inputs=baseline)
    assert pushed.get_int_custom_property(contract.PUSHED_PROPERTY) == 0
    assert pushed.get_int_custom_property(contract.SUPERSEDED_BY_PROPERTY) == 200
    assert contents(serving) == before


def test_a_removed_baseline_stops_the_push_and_is_named_as_removed(tmp_path):
    """The version the model was evaluated against was deleted by hand: the older one served now
    was never compared with it either, and nobody pushed since, which the words must not claim."""
    serving = tmp_path / "serving"
    older = fake_saved_model(serving / "100")
    (older / contract.SAVED_MODEL_FILE).write_bytes(b"the older graph")
    baseline = baseline_of(tmp_path, fake_saved_model(serving / "200"))
    shutil.rmtree(serving / "200")

    pushed = push(tmp_path, serving, extra_inputs=baseline)
    assert pushed.get_int_custom_property(contract.PUSHED_PROPERTY) == 0
    assert pushed.get_int_custom_property(contract.SUPERSEDED_BY_PROPERTY) == 100
    assert pushed.get_int_custom_property(contract.BASELINE_VERSION_PROPERTY) == 200
    assert runs.superseded_cause(pushed.mlmd_artifact) == (
        "version 200, the baseline, was removed since")
    assert model_base.list_versions(str(serving)) == [100]


def test_the_served_version_tells_why_it_is_not_the_baseline():
    assert contract.superseded_cause(7, None) == "another run pushed since"  # nothing served then
    assert contract.superseded_cause(7, 6) == "another run pushed since"
    assert contract.superseded_cause(5, 6) == "version 6, the baseline, was removed since"
    assert contract.superseded_cause(6, 6) == "version 6, the baseline, was replaced since"


def test_the_version_the_model_was_evaluated_against_still_newest_lets_it_push(tmp_path):
    serving = tmp_path / "serving"
    served = fake_saved_model(serving / "100")
    (served / contract.SAVED_MODEL_FILE).write_bytes(b"the served graph")
    pushed = push(tmp_path, serving, extra_inputs=baseline_of(tmp_path, served))
    assert pushed.get_int_custom_property(contract.PUSHED_PROPERTY) == 1
    assert model_base.list_versions(str(serving))[0] == 100
    assert len(model_base.list_versions(str(serving))) == 2


def test_the_host_tag_tells_process_id_namespaces_apart():
    """Two containers of one pod share a host name but not their pids: a pid alive in one says
    nothing about a copy of the other, which must count as another machine's."""
    outside = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                              "-c", "from serving import model_base; "
                              "print(model_base.staging_name(1).split('-')[3])"],
                             capture_output=True, text=True, cwd=PROJECT_DIR)
    if outside.returncode != 0:
        pytest.skip(f"no new pid namespace here: {outside.stderr.strip()[-200:]}")
    assert outside.stdout.strip() != model_base.staging_name(1).split("-")[3]


def test_ctrl_c_just_after_a_rename_and_again_in_the_undo_takes_the_whole_push_back(
        tmp_path, monkeypatch):
    """The run's guard raises Ctrl-C again every half second: one landing after the SavedModel's
    rename (before it was counted as published), and one in the middle of the undo, left that
    version in place while the run said nothing was pushed."""
    serving, tflite = tmp_path / "serving", tmp_path / "tflite"
    source = fake_saved_model(tmp_path / "model")
    (tmp_path / "converted").mkdir()
    (tmp_path / "converted" / contract.TFLITE_FILE).write_bytes(b"flatbuffer")
    rename, remove = model_base.LocalFilesystem.rename, model_base.LocalFilesystem.remove
    interrupted: list[str] = []

    def rename_then_ctrl_c(self, path: str, destination: str) -> None:
        rename(self, path, destination)
        if not interrupted:
            interrupted.append(destination)
            raise KeyboardInterrupt

    def ctrl_c_in_the_undo(self, path: str) -> None:
        if len(interrupted) == 1:
            interrupted.append(path)
            raise KeyboardInterrupt
        remove(self, path)

    monkeypatch.setattr(model_base.LocalFilesystem, "rename", rename_then_ctrl_c)
    monkeypatch.setattr(model_base.LocalFilesystem, "remove", ctrl_c_in_the_undo)
    with pytest.raises(KeyboardInterrupt):
        model_base.publish_versions_together(
            [(str(source), str(serving), contract.SAVED_MODEL_FILE),
             (str(tmp_path / "converted"), str(tflite), contract.TFLITE_FILE)], 5)
    assert interrupted[0] == str(serving / "5") and len(interrupted) == 2
    assert os.listdir(serving) == [] and os.listdir(tflite) == []


def test_two_local_runs_pushing_at_once_take_turns(tmp_path, monkeypatch):
    """Both evaluated with nothing served. The first holds the serving folder's lock while it
    copies (slowly here); the second waits, then finds the first one's version, against which
    its model was never compared, and pushes nothing."""
    serving = tmp_path / "serving"
    copy_tree = model_base.copy_tree
    copying = multiprocessing.get_context("fork").Event()

    def slow_copy(*args, **kwargs):
        copying.set()
        time.sleep(1.5)
        return copy_tree(*args, **kwargs)

    monkeypatch.setattr(model_base, "copy_tree", slow_copy)
    first = multiprocessing.get_context("fork").Process(
        target=push, args=(tmp_path / "first", serving), kwargs={
            "extra_inputs": baseline_of(tmp_path / "first", None)})
    first.start()
    assert copying.wait(30)
    monkeypatch.undo()
    other = fake_saved_model(Path(export.serving_model_dir(str(tmp_path / "second" / "model"))))
    (other / contract.SAVED_MODEL_FILE).write_bytes(b"the second run's graph")
    second = push(tmp_path / "second", serving,
                  extra_inputs=baseline_of(tmp_path / "second", None))
    first.join(30)
    assert first.exitcode == 0
    (version,) = model_base.list_versions(str(serving))
    assert second.get_int_custom_property(contract.PUSHED_PROPERTY) == 0
    assert second.get_int_custom_property(contract.SUPERSEDED_BY_PROPERTY) == version


def test_on_an_object_store_ctrl_c_before_the_copy_leaves_another_pushs_version_alone(tmp_path):
    """Ctrl-C lands as the Pusher looks for the version just before copying into it, after
    another push published that number: the undo removes what this push made, never theirs."""
    source = fake_saved_model(tmp_path / "source")
    base = tmp_path / "base"
    looks: list[str] = []

    class ObjectStoreLike(model_base.LocalFilesystem):
        atomic_rename = False

        def exists(self, path: str) -> bool:
            if path == str(base / "5"):
                looks.append(path)
                if len(looks) == 2:  # the look just before the copy
                    fake_saved_model(base / "5")
                    (base / "5" / contract.SAVED_MODEL_FILE).write_bytes(b"theirs")
                    raise KeyboardInterrupt
            return super().exists(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_base, "filesystem_for", lambda url: ObjectStoreLike())
        with pytest.raises(KeyboardInterrupt):
            model_base.publish_versions_together(
                [(str(source), str(base), contract.SAVED_MODEL_FILE)], 5)
    assert os.listdir(base) == ["5"]  # theirs, and no staging folder
    assert (base / "5" / contract.SAVED_MODEL_FILE).read_bytes() == b"theirs"


def test_a_folder_that_refuses_the_lock_is_pushed_into_unlocked(tmp_path, monkeypatch, caplog):
    """NFS turns flock into a write lock, which a folder opened read-only cannot take: the push
    goes on, and the log says pushes are not taken in turn there."""
    import errno
    import fcntl

    def refused(descriptor, operation):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(fcntl, "flock", refused)
    pushed = push(tmp_path, tmp_path / "serving")
    assert pushed.get_int_custom_property(contract.PUSHED_PROPERTY) == 1
    assert "not taken in turn" in caplog.text
