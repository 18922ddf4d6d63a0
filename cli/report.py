"""`cifar10-tfx report`: a Markdown and an HTML report of a pipeline run."""
from __future__ import annotations

import logging
import os
import warnings

import click

from cli.core import Command, Failure
from modules import contract, urls
from pipeline import configs


@click.command("report", cls=Command,
               short_help="write a Markdown and HTML report of a pipeline run",
               help="Write a Markdown and an HTML report of a pipeline run.")
@click.option("--output-dir", default=configs.PipelineConfig.output_dir,
              help=f"the pipeline's --output-dir (holds {contract.METADATA_FILE})")
@click.option("--metadata",
              help=f"the ML Metadata SQLite file (default: <output-dir>/{contract.METADATA_FILE})")
@click.option("--run", "run_id", help="pipeline run id (default: the latest run)")
@click.option("--list-runs", is_flag=True, help="list the run ids and exit")
@click.option("--to", help="folder for the report (default: <output-dir>/reports/<run id>)")
def report_command(output_dir: str, metadata: str | None, run_id: str | None,
                   list_runs: bool, to: str | None) -> int:
    # TensorFlow is imported to read the evaluation: keep its start-up noise out of the output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from reports import run_report, runs

    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    if to:  # an existing file or a read-only place: one line, before anything is read
        to = os.path.abspath(os.path.expanduser(to))
        problem = urls.unusable_folder(to)
        if problem:
            raise Failure(f"--to {to} {problem}")
    metadata = metadata or os.path.join(output_dir, contract.METADATA_FILE)
    problem = configs.metadata_problem(metadata)  # a corrupt store: one line, not SQL
    if problem:
        raise Failure(problem)
    try:
        if list_runs:
            if not os.path.exists(metadata):
                raise run_report.ReportError(f"no ML Metadata database at {metadata}; run the "
                                             "pipeline first")
            for run in runs.pipeline_runs(runs.open_store(metadata)):
                print(run.name)
            return 0
        paths = run_report.write_report(output_dir, run_id, to,
                                        metadata_path=metadata)
    except (run_report.ReportError, FileNotFoundError) as error:
        raise Failure(str(error)) from None
    print(f"Report: {paths['markdown']}")
    print(f"        {paths['html']}")
    for image in paths["images"]:
        print(f"Plot:   {image}")
    if paths["missing_artifacts"]:
        click.echo(f"warning: {len(paths['missing_artifacts'])} of the run's artifact folders "
                   f"are gone (first: {paths['missing_artifacts'][0]}); the report lacks what "
                   "they held", err=True)
    return 0
