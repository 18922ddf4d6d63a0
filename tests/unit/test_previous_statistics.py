"""PreviousStatistics / RecordStatistics: the drift baseline through a record file, no resolver."""
from __future__ import annotations

import json
from pathlib import Path

from tfx.types import artifact_utils, standard_artifacts

from components.previous_statistics import executor
from modules import contract


def statistics(uri: Path, splits: list[str]) -> standard_artifacts.ExampleStatistics:
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(uri)
    artifact.split_names = artifact_utils.encode_split_names(splits)
    for split in splits:
        (uri / f"Split-{split}").mkdir(parents=True)
        (uri / f"Split-{split}" / "FeatureStats.pb").write_bytes(split.encode())
    return artifact


def previous(tmp_path: Path, records: Path, name: str) -> standard_artifacts.ExampleStatistics:
    output = standard_artifacts.ExampleStatistics()
    output.uri = str(tmp_path / name)
    executor.PreviousExecutor().Do({}, {executor.STATISTICS_KEY: [output]},
                                   {executor.RECORD_DIR_KEY: str(records)})
    return output


def record(records: Path, artifact: standard_artifacts.ExampleStatistics) -> None:
    executor.RecordExecutor().Do({executor.STATISTICS_KEY: [artifact]}, {},
                                 {executor.RECORD_DIR_KEY: str(records)})


def test_first_run_has_no_splits(tmp_path):
    output = previous(tmp_path, tmp_path / "records", "first")
    assert artifact_utils.decode_split_names(output.split_names) == []


def test_recorded_statistics_are_copied_for_the_next_run(tmp_path):
    records = tmp_path / "records"
    record(records, statistics(tmp_path / "run1", ["train", "test"]))
    newer = statistics(tmp_path / "run2", ["train"])
    record(records, newer)  # the newest validated run wins
    saved = json.loads((records / contract.STATISTICS_RECORD_FILE).read_text())
    assert saved["uri"] == newer.uri
    assert not [p for p in records.iterdir() if p.name.startswith(contract.STAGING_PREFIX)]
    output = previous(tmp_path, records, "next")
    assert artifact_utils.decode_split_names(output.split_names) == ["train"]
    assert (Path(output.uri) / "Split-train" / "FeatureStats.pb").read_bytes() == b"train"


def test_a_record_whose_statistics_are_gone_is_no_baseline(tmp_path):
    records = tmp_path / "records"
    record(records, statistics(tmp_path / "run1", ["train"]))
    (tmp_path / "run1" / "Split-train" / "FeatureStats.pb").unlink()
    (tmp_path / "run1" / "Split-train").rmdir()
    (tmp_path / "run1").rmdir()
    output = previous(tmp_path, records, "next")
    assert artifact_utils.decode_split_names(output.split_names) == []
