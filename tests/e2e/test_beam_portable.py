"""Issue #15: the Beam stages on Beam's portable runner, through a real job service and worker pool.

The pipeline runs twice on one tiny real fixture, once on the DirectRunner and once with
`--beam-runner portable` against Beam's own job service and an EXTERNAL SDK worker pool (what a
Flink or Spark job server and its worker-pool sidecars are); ExampleGen, StatisticsGen, the
ExampleValidator, Transform and the Evaluator must give the same results on both.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from benchmarks.local_cluster.beam_services import BeamServices
from benchmarks.local_cluster.multi_worker import free_ports
from modules import contract
from tests.support.beam_services import beam_services  # noqa: F401 (fixture)
from tests.support.pipeline_runs import PipelineRun, build_fixture, run_pipeline

pytestmark = pytest.mark.e2e

# Small and quick: the Trainer only has to give the Evaluator a model (no search: the Tuner runs
# no Beam).
ARGS = ("--epochs", "1", "--no-tflite", "--accuracy-threshold", "0", "--no-cache", "--no-tune")
SPLITS = (contract.TRAIN_SPLIT, contract.EVAL_SPLIT, contract.TEST_SPLIT)


def portable_flags(job_endpoint: str, worker_pool: str) -> tuple[str, ...]:
    return ("--beam-runner", "portable", "--job-endpoint", job_endpoint,
            "--environment-config", worker_pool)


@pytest.fixture(scope="module")
def tiny_cifar10(tmp_path_factory) -> Path:
    return build_fixture(tmp_path_factory.mktemp("beam-cifar10"), limit=50)


@pytest.fixture(scope="module")
def direct_run(tiny_cifar10, tmp_path_factory) -> PipelineRun:
    run = run_pipeline(tiny_cifar10, tmp_path_factory.mktemp("direct"), *ARGS)
    assert run.process.returncode == 0, run.explain()
    return run


@pytest.fixture(scope="module")
def portable_run(tiny_cifar10, beam_services: BeamServices, tmp_path_factory) -> PipelineRun:  # noqa: F811
    run = run_pipeline(tiny_cifar10, tmp_path_factory.mktemp("portable"), *ARGS,
                       *portable_flags(beam_services.job_endpoint, beam_services.worker_pool))
    assert run.process.returncode == 0, f"{run.explain()}\n{beam_services.explain()}"
    return run


def _artifact(run: PipelineRun, node: str, output: str) -> Path:
    folders = [p for p in (run.output_dir / contract.PIPELINE_ROOT_DIR / node / output).iterdir()
               if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def _statistics(run: PipelineRun, split: str) -> statistics_pb2.DatasetFeatureStatistics:
    path = _artifact(run, contract.STATISTICS_GEN_NODE, "statistics") / f"Split-{split}"
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString((path / "FeatureStats.pb").read_bytes())
    assert len(stats.datasets) == 1
    return stats.datasets[0]


def _exact_summary(dataset: statistics_pb2.DatasetFeatureStatistics) -> dict:
    """What must not depend on the runner: counts, ranges, means, label shares (quantile
    histograms come from sketches whose bundling may differ, so they are left out)."""
    summary: dict = {"num_examples": dataset.num_examples}
    for feature in dataset.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if feature.HasField("num_stats"):
            num = feature.num_stats
            summary[name] = (num.common_stats.num_non_missing, num.common_stats.num_missing,
                             num.min, num.max, round(num.mean, 6), round(num.std_dev, 6),
                             num.num_zeros)
        elif feature.HasField("string_stats"):
            text = feature.string_stats
            summary[name] = (text.common_stats.num_non_missing, text.unique,
                             sorted((v.value, v.frequency) for v in text.top_values))
        elif feature.HasField("bytes_stats"):
            raw = feature.bytes_stats
            summary[name] = (raw.common_stats.num_non_missing, raw.unique,
                             round(raw.avg_num_bytes, 6), raw.min_num_bytes, raw.max_num_bytes)
    return summary


@pytest.mark.parametrize("split", SPLITS)
def test_statistics_match_the_direct_runner(direct_run, portable_run, split):
    direct, portable = _statistics(direct_run, split), _statistics(portable_run, split)
    assert portable.num_examples == direct.num_examples > 0
    assert _exact_summary(portable) == _exact_summary(direct)


def test_examples_match_the_direct_runner(direct_run, portable_run):
    for split in SPLITS:
        def records(run: PipelineRun, split: str = split) -> list[bytes]:
            import tensorflow as tf  # noqa: PLC0415

            files = sorted((_artifact(run, contract.EXAMPLE_GEN_NODE, "examples")
                            / f"Split-{split}").iterdir())
            return sorted(r.numpy() for r in tf.data.TFRecordDataset(
                [str(f) for f in files], compression_type="GZIP"))

        assert records(portable_run) == records(direct_run), split


def test_no_anomalies_and_the_evaluator_ran(direct_run, portable_run):
    for run in (direct_run, portable_run):
        folder = _artifact(run, contract.EXAMPLE_VALIDATOR_NODE, "anomalies")
        for split in SPLITS:
            found = list((folder / f"Split-{split}").glob("SchemaDiff.pb"))
            for path in found:
                anomalies = anomalies_pb2.Anomalies()
                anomalies.ParseFromString(path.read_bytes())
                assert not anomalies.anomaly_info, (split, anomalies)
        assert any(_artifact(run, contract.TRANSFORM_NODE, "transform_graph").rglob(
            "saved_model.pb"))
        evaluation = _artifact(run, contract.EVALUATOR_NODE, "evaluation")
        assert any(evaluation.iterdir()), evaluation


def test_the_beam_stages_ran_on_the_job_service(portable_run, beam_services):  # noqa: F811
    """ExampleGen, StatisticsGen, Transform and the Evaluator: one Beam job each (the
    ExampleValidator runs none), all finished by the job service."""
    log = beam_services.logs[0].read_text(errors="replace")
    assert log.count("with state DONE") >= 4, log[-3000:]


def test_an_unreachable_worker_pool_is_a_clear_error_within_seconds(
        tiny_cifar10, beam_services, tmp_path):  # noqa: F811
    dead_pool = f"localhost:{free_ports(1)[0]}"
    start = time.monotonic()
    run = run_pipeline(tiny_cifar10, tmp_path / "out", *ARGS,
                       *portable_flags(beam_services.job_endpoint, dead_pool))
    seconds = time.monotonic() - start
    assert run.process.returncode != 0, run.explain()
    assert dead_pool in run.process.stderr, run.explain()
    assert "worker pool" in run.process.stderr, run.explain()
    assert seconds < 60, f"took {seconds:.0f}s\n{run.explain()}"
    assert not (tmp_path / "out" / contract.PIPELINE_ROOT_DIR).exists()


def _run_slow_job(beam_services: BeamServices, *extra: str) -> None:  # noqa: F811
    """A Beam job that outlasts a few seconds, with the portable arguments a run gets."""
    import apache_beam as beam_sdk
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline import beam

    args = [*beam.local_portable_args(beam_services.job_endpoint, beam_services.worker_pool),
            *extra]
    with beam_sdk.Pipeline(options=PipelineOptions(args)) as job:
        _ = job | beam_sdk.Create([1]) | beam_sdk.Map(lambda x: (time.sleep(12), x)[1])


def test_a_job_longer_than_the_job_server_timeout_runs(beam_services):  # noqa: F811
    """Beam 2.59 gives the job's state stream the job-server timeout as its deadline: with its
    default (60 s) every longer job failed with Deadline Exceeded. Shown here with 5 s; the
    project's portable arguments carry a day (pipeline.beam.PORTABLE_JOB_TIMEOUT_S)."""
    with pytest.raises(Exception, match="Deadline Exceeded|DEADLINE_EXCEEDED"):
        _run_slow_job(beam_services, "--job_server_timeout=5")
    _run_slow_job(beam_services)  # the same job, with the project's arguments: it finishes
