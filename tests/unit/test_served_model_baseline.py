"""ServedModelBaseline and BaselineEvaluator's baseline check, on real folders and artifacts."""
from __future__ import annotations

from pathlib import Path

from tfx.types import standard_artifacts

from components.served_model_baseline import executor
from modules import contract, export
from serving import model_base


def saved_model(folder: Path, content: bytes = b"graph") -> Path:
    (folder / "variables").mkdir(parents=True)
    (folder / contract.SAVED_MODEL_FILE).write_bytes(content)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


def run_baseline(tmp_path: Path, serving: Path) -> standard_artifacts.Model:
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "baseline")
    executor.Executor().Do({}, {executor.MODEL_KEY: [model]},
                           {executor.SERVING_DIR_KEY: str(serving)})
    return model


def test_first_run_gives_an_empty_baseline(tmp_path):
    model = run_baseline(tmp_path, tmp_path / "no_such_serving_dir")
    assert not model.has_custom_property(contract.BASELINE_VERSION_PROPERTY)
    assert not executor.has_model(model)


def test_newest_complete_version_is_copied_in_the_serving_layout(tmp_path):
    serving = tmp_path / "serving"
    saved_model(serving / "5", b"five")
    saved_model(serving / "12", b"twelve")
    (serving / "40").mkdir()  # an unfinished push: no saved_model.pb
    (serving / f"{contract.STAGING_PREFIX}99").mkdir()
    model = run_baseline(tmp_path, serving)
    assert model.get_int_custom_property(contract.BASELINE_VERSION_PROPERTY) == 12
    copied = Path(export.serving_model_dir(model.uri))
    assert (copied / contract.SAVED_MODEL_FILE).read_bytes() == b"twelve"
    assert (copied / "variables" / "variables.index").exists()
    assert executor.has_model(model)
    assert (serving / "12" / contract.SAVED_MODEL_FILE).read_bytes() == b"twelve"  # untouched


def test_served_version():
    assert model_base.served_version("/nonexistent/serving") is None


def test_the_local_dag_judges_against_the_served_model_and_never_caches_it(tmp_path):
    """Locally too the baseline is the newest version in --serving-dir (another output folder
    may have pushed it), and its node runs on every run: a cached copy would be stale."""
    from pipeline import baselines, configs, pipeline

    config = configs.PipelineConfig(output_dir=str(tmp_path / "out"), data_root=str(tmp_path))
    dag = pipeline.create_pipeline(config)
    evaluator = next(c for c in dag.components if c.id == contract.EVALUATOR_NODE)
    assert evaluator.inputs["baseline_model"].producer_component_id == \
        contract.SERVED_MODEL_BASELINE_NODE
    caching = {node.pipeline_node.node_info.id:
               node.pipeline_node.execution_options.caching_options.enable_cache
               for node in baselines.local_ir(dag).nodes}
    assert caching[contract.SERVED_MODEL_BASELINE_NODE] is False
    assert caching[contract.TRAINER_NODE] is True and caching[contract.TUNER_NODE] is True
