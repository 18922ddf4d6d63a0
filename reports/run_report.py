"""The run report: what one pipeline run did and produced, from ML Metadata and its artifacts.

    cifar10-tfx report --output-dir outputs                          # the latest run
    cifar10-tfx report --output-dir outputs --run RUN_ID --to /tmp/report

Writes report.md, report.html (self-contained: the plots are embedded) and the PNG plots into
<output-dir>/reports/<run id>/ (or --to), and prints their paths. Sections: each component with
status and wall time, data statistics per split, tuning trials or the hyperparameters used, test
metrics with the per-class table and the confusion matrix, the blessing verdict and thresholds, and
the pushed versions with their lineage back to the data.

The sections collect the run's figures into one Document (reports/document.py), which renders as
Markdown and as HTML; a section whose artifact is missing says so instead of failing the report.
"""
from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Callable
from typing import Any

from modules import contract
from reports import metrics as tfma_metrics
from reports import plots, runs, tables
from reports.document import Document, Heading, to_html, to_markdown

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class_f1.png"
LABELS_PNG = "label_distribution.png"


class ReportError(Exception):
    """A problem the user can fix (no database, unknown run); printed as one line."""


# ---- Formatting helpers --------------------------------------------------------------------------

def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _clock(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000.0).strftime("%Y-%m-%d %H:%M:%S")


_pct = tables.percent


def _snake(class_name: str) -> str:
    """SparseCategoricalAccuracy -> sparse_categorical_accuracy (TFMA's metric names)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


def _json_file(path: str) -> Any:
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def _json_file_or_none(path: str) -> Any:
    import tensorflow as tf

    return _json_file(path) if tf.io.gfile.exists(path) else None


def integer_versions(base_dir: str) -> list[int]:
    """The integer version folders of a model base path (what TF Serving would load)."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(base_dir):
        return []
    return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(base_dir)
                  if name.rstrip("/").isdigit())


def _sanitize(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-") or "run"


# ---- What the run did, read from ML Metadata -----------------------------------------------------

RunView = runs.RunView


# An execution the run never finished: killed (running, new), or stopped by Ctrl-C (canceled by
# cli/interrupted.py's clean-up).
UNFINISHED_STATES = ("running", "new", "canceled")


def component_rows(view: RunView) -> list[dict]:
    """Each component of the run: state, wall time, start, and a note (cache hit, interruption)."""
    rows = []
    for node, execution in view.executions:
        state = runs.state_name(execution)
        seconds = (execution.last_update_time_since_epoch
                   - execution.create_time_since_epoch) / 1000.0
        note = ""
        if state == "cached":
            outputs = [a for arts in view.io(execution)["outputs"].values() for a in arts]
            origin = runs.producing_execution(view.store, outputs[0].id) if outputs else None
            if origin is not None and origin.id != execution.id:
                took = (origin.last_update_time_since_epoch
                        - origin.create_time_since_epoch) / 1000.0
                note = (f"reused the outputs of execution #{origin.id} "
                        f"({_clock(origin.create_time_since_epoch)}, took {_seconds(took)})")
        elif state in UNFINISHED_STATES:
            note = "never finished: the run was interrupted"
            seconds = None
        elif state == "failed":
            note = "failed: the run stopped here"
        elif node == contract.PUSHER_NODE:
            pushed = (view.io(execution)["outputs"].get("pushed_model") or [None])[0]
            cause = runs.superseded_cause(pushed) if pushed else None
            if cause:
                note = (f"pushed nothing: version "
                        f"{runs.custom_value(pushed, contract.SUPERSEDED_BY_PROPERTY)} was served "
                        f"by then, not the baseline ({cause})")
            elif pushed is not None and not runs.custom_value(pushed, contract.PUSHED_PROPERTY):
                note = "pushed nothing: the model is not blessed"
        elif node == contract.TFLITE_CONVERTER_NODE:
            made = (view.io(execution)["outputs"].get("tflite_model") or [None])[0]
            if made is not None and not runs.custom_value(made, contract.TFLITE_CONVERTED_PROPERTY):
                note = "converted nothing: the model is not blessed"
        rows.append({"node": node, "state": state, "seconds": seconds,
                     "started": _clock(execution.create_time_since_epoch),
                     "execution_id": execution.id, "note": note})
    ran = {r["node"] for r in rows}
    for node in runs.pipeline_nodes(view.store, view.run):
        if node not in ran:
            rows.append({"node": node, "state": "not run", "seconds": None, "started": "-",
                         "execution_id": None, "note": "no execution in this run"})
    return rows


# ---- Data statistics -----------------------------------------------------------------------------

def load_split_statistics(statistics_uri: str) -> dict:
    """split name -> DatasetFeatureStatistics, from a StatisticsGen artifact folder."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import statistics_pb2

    found = {}
    for folder in sorted(tf.io.gfile.glob(os.path.join(statistics_uri, "Split-*"))):
        split = os.path.basename(folder.rstrip("/"))[len("Split-"):]
        files = sorted(tf.io.gfile.glob(os.path.join(folder, "FeatureStats.pb*")))
        if not files:
            continue
        with tf.io.gfile.GFile(files[0], "rb") as f:
            stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
        if stats.datasets:
            found[split] = stats.datasets[0]
    return found


def label_counts(dataset, num_classes: int = contract.NUM_CLASSES) -> list[float] | None:
    """Examples per class from TFDV's statistics of the label.

    StatisticsGen gets the schema, where the label is categorical: its rank histogram holds exact
    counts per value. Without it (numeric statistics), the standard histogram's equal-width
    buckets are given to the integer labels inside them (shared evenly if several fall in one).
    """
    for feature in dataset.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if name != contract.LABEL_KEY:
            continue
        if feature.HasField("string_stats") and feature.string_stats.rank_histogram.buckets:
            counts = [0.0] * num_classes
            for bucket in feature.string_stats.rank_histogram.buckets:
                if bucket.label.isdigit() and int(bucket.label) < num_classes:
                    counts[int(bucket.label)] = bucket.sample_count
            return counts
        if not feature.HasField("num_stats"):
            continue
        standard = [h for h in feature.num_stats.histograms if h.type == h.STANDARD]
        if not standard:
            return None
        counts = [0.0] * num_classes
        buckets = list(standard[0].buckets)
        for i, bucket in enumerate(buckets):
            last = i == len(buckets) - 1
            inside = [k for k in range(num_classes)
                      if bucket.low_value <= k < bucket.high_value
                      or (last and k == bucket.high_value)]
            for k in inside:
                counts[k] += bucket.sample_count / len(inside)
        return counts
    return None


# ---- Sections ------------------------------------------------------------------------------------

def section_summary(doc: Document, view: RunView, rows: list[dict], metadata_path: str) -> None:
    started = [e.create_time_since_epoch for _, e in view.executions]
    ended = [e.last_update_time_since_epoch for _, e in view.executions]
    states = {r["node"]: r["state"] for r in rows}
    pushed = view.output(contract.PUSHER_NODE, "pushed_model")
    blessing = view.output(contract.EVALUATOR_NODE, "blessing")
    if "failed" in states.values():
        failed = next(n for n, s in states.items() if s == "failed")
        outcome = f"**Stopped**: {failed} failed; nothing was pushed by this run."
    elif states.get(contract.PUSHER_NODE) in UNFINISHED_STATES:
        outcome = ("**Interrupted while pushing**: the push was not recorded, and may have "
                   "published part of a version; running the same command again completes "
                   "it.")
    elif any(s in UNFINISHED_STATES for s in states.values()):
        outcome = "**Interrupted**: the run did not finish; nothing was pushed by this run."
    elif pushed is not None and runs.custom_value(pushed, contract.ALREADY_SERVED_PROPERTY):
        outcome = (f"**Blessed**; version "
                   f"{runs.custom_value(pushed, contract.PUSHED_VERSION_PROPERTY)} already "
                   "serves this model, so nothing new was pushed.")
    elif pushed is not None and runs.custom_value(pushed, contract.PUSHED_PROPERTY):
        outcome = (f"**Blessed and pushed** as version "
                   f"{runs.custom_value(pushed, contract.PUSHED_VERSION_PROPERTY)}.")
    elif pushed is not None and (cause := runs.superseded_cause(pushed)):
        outcome = (f"**Blessed, not pushed**: version "
                   f"{runs.custom_value(pushed, contract.SUPERSEDED_BY_PROPERTY)} was served "
                   f"by then, not the baseline this run compared with ({cause}); run again to "
                   f"evaluate against that version.")
    elif blessing is not None and not runs.custom_value(blessing, contract.BLESSED_PROPERTY):
        outcome = "**Not blessed**: nothing was pushed by this run."
    else:
        outcome = "Finished; nothing was pushed by this run."
    doc.heading(1, f"CIFAR-10 pipeline run `{view.run.name}`")
    doc.para(outcome)
    items = [f"Run id: `{view.run.name}` ({len(runs.pipeline_runs(view.store))} run(s) in "
             f"the store)",
             f"ML Metadata: `{metadata_path}`"]
    if started:
        items.append(f"Started {_clock(min(started))}, last update {_clock(max(ended))}: "
                     f"{_seconds((max(ended) - min(started)) / 1000.0)} wall time")
    items.append(f"Report written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}")
    doc.bullets(items)
    missing, recorded = view.missing_artifacts
    if missing:
        doc.para(f"**{len(missing)} of the run's {recorded} artifact folders are gone** "
                 f"(first: `{missing[0]}`): the figures read from them are missing below. "
                 "ML Metadata records absolute paths: was the output folder moved or cleaned?")


def section_components(doc: Document, rows: list[dict]) -> None:
    doc.heading(2, "Components")
    doc.para("Status as recorded in ML Metadata: `complete` ran and finished, `cached` reused the "
             "outputs of an earlier identical execution, `failed` stopped the run.")
    doc.table(["Component", "Status", "Wall time", "Started", "Note"],
              [[r["node"], r["state"], _seconds(r["seconds"]), r["started"], r["note"]]
               for r in rows], numeric=[False, False, True, False, False])


def section_data(doc: Document, view: RunView, out_dir: str) -> None:
    doc.heading(2, "Data")
    examples = view.output(contract.EXAMPLE_GEN_NODE, "examples")
    if examples is not None:
        origin = runs.producing_execution(view.store, examples.id)
        source = runs.custom_value(origin, "input_base") if origin is not None else None
        doc.bullets([f"Source folder: `{source or '?'}`",
                     f"Examples artifact #{examples.id}: `{examples.uri}` (span "
                     f"{runs.custom_value(examples, 'span')})",
                     "Input fingerprint: `" + (runs.custom_value(examples, "input_fingerprint")
                                               or "?").replace("\n", "; ") + "`"])
    anomalies = view.output(contract.EXAMPLE_VALIDATOR_NODE, "anomalies")
    if anomalies is not None:
        verdict = runs.custom_value(anomalies, contract.BLESSED_PROPERTY)
        if verdict is None:
            doc.para(f"ExampleValidator: see `{anomalies.uri}`.")
        elif verdict:
            doc.para("ExampleValidator: no anomalies against the curated schema.")
        else:
            doc.para(f"ExampleValidator: **anomalies found** against the curated schema (see "
                     f"`{anomalies.uri}`).")
    statistics = view.output(contract.STATISTICS_GEN_NODE, "statistics")
    if statistics is None:
        doc.para("_No statistics: StatisticsGen did not run in this run._")
        return
    splits = load_split_statistics(statistics.uri)
    order = [s for s in (contract.TRAIN_SPLIT, contract.EVAL_SPLIT, contract.TEST_SPLIT)
             if s in splits] + sorted(set(splits) - {contract.TRAIN_SPLIT, contract.EVAL_SPLIT,
                                                      contract.TEST_SPLIT})
    distributions = {}
    table = []
    for split in order:
        dataset = splits[split]
        counts = label_counts(dataset)
        if counts is not None:
            distributions[split] = counts
        table.append([split, f"{dataset.num_examples:,}", len(dataset.features)]
                     + ([f"{c:.0f}" for c in counts] if counts is not None
                        else ["?"] * contract.NUM_CLASSES))
    doc.para(f"From the StatisticsGen artifact `{statistics.uri}` (TFDV). Label counts come from "
             f"TFDV's label statistics.")
    doc.table(["Split", "Examples", "Features", *contract.CLASS_NAMES], table,
              numeric=[False, True, True] + [True] * contract.NUM_CLASSES)
    if distributions:
        plots.plot_bars(
            {split: [c / max(sum(counts), 1) for c in counts]
             for split, counts in distributions.items()},
            contract.CLASS_NAMES, os.path.join(out_dir, LABELS_PNG),
            "Label distribution per split", "fraction of the split")
        doc.image(LABELS_PNG, "Label distribution per split")


def _hparam_table(doc: Document, values: dict) -> None:
    doc.table(["Hyperparameter", "Value"], [[k, v] for k, v in sorted(values.items())],
              numeric=[False, True])


def _is_defaults(values: dict) -> bool:
    """Whether a trial trained the untuned defaults (the search's first trial does)."""
    shared = set(values) & set(contract.DEFAULT_HPARAMS)
    return bool(shared) and all(values[k] == contract.DEFAULT_HPARAMS[k] for k in shared)


def trials_table(trials: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for the Tuner's tuner_results.json (records: trial_id, score, values)."""
    names = sorted({k for t in trials for k in t} - {"trial_id", "score"})
    rows = [[str(t.get("trial_id", "?")) + (" (defaults)" if _is_defaults(
                {n: t[n] for n in names if n in t}) else ""),
             "-" if t.get("score") is None else f"{t['score']:.4f}",
             *[str(t.get(n, "-")) for n in names]] for t in trials]
    return ["Trial", "Score", *names], rows


def _search_budget(tuner, rows: list[dict]) -> str:
    """The proxy budget (from the Tuner's custom_config) and its cost beside the Trainer's."""
    settings = json.loads(runs.custom_value(tuner, "custom_config") or "{}")
    seconds = {r["node"]: r for r in rows}
    text = ""
    if settings.get("epochs") and settings.get("train_fraction"):
        text = (f"Proxy budget: up to {settings.get('max_trials', '?')} trial(s) of "
                f"{settings['epochs']} epoch(s) on {settings['train_fraction']:.0%} of `train`. ")
    tuner_row, trainer_row = (seconds.get(contract.TUNER_NODE),
                              seconds.get(contract.TRAINER_NODE))
    if tuner_row and tuner_row["state"] == "cached":
        text += ("The search was reused from an earlier run (cache hit: the same data, code "
                 "and tuner settings).")
    elif tuner_row and trainer_row and tuner_row["seconds"] and trainer_row["seconds"] and \
            trainer_row["state"] == "complete":
        share = tuner_row["seconds"] / trainer_row["seconds"]
        text += (f"It took {_seconds(tuner_row['seconds'])}, {share:.0%} of the Trainer's "
                 f"{_seconds(trainer_row['seconds'])}.")
    return text.strip()


def section_hyperparameters(doc: Document, view: RunView, rows: list[dict] = ()) -> None:
    doc.heading(2, "Tuning and hyperparameters")
    tuner = view.execution(contract.TUNER_NODE)
    if tuner is not None:
        tuner_results = view.output(contract.TUNER_NODE, "tuner_results")
        best = view.output(contract.TUNER_NODE, "best_hyperparameters")
        trials = []
        if tuner_results is not None:
            trials = _json_file_or_none(
                os.path.join(tuner_results.uri, "tuner_results.json")) or []
        reused = any(r["node"] == contract.TUNER_NODE and r["state"] == "cached" for r in rows)
        doc.para(f"{'The search came from an earlier run' if reused else 'The Tuner ran'} "
                 f"({len(trials)} completed trial(s), best first; score is the objective on "
                 f"`eval`; the first trial trains the defaults).")
        budget = _search_budget(tuner, list(rows))
        if budget:
            doc.para(budget)
        if trials:
            header, trial_rows = trials_table(trials)
            doc.table(header, trial_rows, numeric=[False, True] + [True] * (len(header) - 2))
        found = _json_file_or_none(os.path.join(best.uri, contract.BEST_HYPERPARAMETERS_FILE)) \
            if best is not None else None
        if found:
            doc.para("Best hyperparameters found:")
            _hparam_table(doc, found.get("values", {}))
    elif view.execution(contract.HYPERPARAMETERS_IMPORTER_NODE) is not None:
        imported = view.output(contract.HYPERPARAMETERS_IMPORTER_NODE, "result")
        doc.para("No tuning in this run: the hyperparameters of an earlier search were imported "
                 f"from `{imported.uri if imported is not None else '?'}`.")
    elif view.execution(contract.TRAINER_NODE) is None:
        doc.para("_No training: the Trainer did not run in this run._")
        return
    else:
        doc.para("No tuning in this run (`--no-tune`): the Trainer used the default "
                 "hyperparameters.")
    summary = training_summary(view)
    if summary is not None:
        doc.para(f"The Trainer used ({summary.get('parameters', '?'):,} parameters, "
                 f"{summary.get('epochs', '?')} epoch(s) of {summary.get('steps_per_epoch', '?')} "
                 f"steps on {summary.get('train_examples', '?'):,} train examples):"
                 if isinstance(summary.get("parameters"), int) else "The Trainer used:")
        _hparam_table(doc, summary.get("hyperparameters", {}))


def training_summary(view: RunView) -> dict | None:
    model_run = view.output(contract.TRAINER_NODE, "model_run")
    if model_run is None:
        return None
    return _json_file_or_none(os.path.join(model_run.uri, contract.TRAINING_SUMMARY_FILE))


evaluation_config = tfma_metrics.evaluation_config


def section_metrics(doc: Document, view: RunView, out_dir: str) -> dict | None:
    doc.heading(2, "Test metrics")
    evaluation = view.output(contract.EVALUATOR_NODE, "evaluation")
    if evaluation is None:
        doc.para("_No evaluation: the Evaluator did not run in this run._")
        return None
    result = tfma_metrics.load_evaluation(evaluation.uri)
    metrics = tfma_metrics.overall_metrics(result)
    accuracy = metrics.get(tfma_metrics.ACCURACY)
    doc.para(f"TFMA on the `test` split, from `{evaluation.uri}`.")
    rows = [["Accuracy", _pct(accuracy)],
            ["Examples", f"{metrics.get(tfma_metrics.EXAMPLE_COUNT, 0):,.0f}"],
            ["Cross-entropy", f"{metrics[tfma_metrics.CROSS_ENTROPY]:.4f}"
             if tfma_metrics.CROSS_ENTROPY in metrics else "-"]]
    accuracy_diff = tfma_metrics.ACCURACY + tfma_metrics.DIFF_SUFFIX
    if accuracy_diff in metrics and accuracy is not None:
        diff = metrics[accuracy_diff]
        rows.append(["Baseline accuracy (the model being served)", _pct(accuracy - diff)])
        rows.append(["Accuracy change vs. the baseline", f"{diff * 100:+.2f} points"])
    doc.table(["Metric", "Value"], rows, numeric=[False, True])
    matrix = tfma_metrics.confusion_from_plots(result)
    if matrix is None:
        doc.para("_The evaluation holds no MultiClassConfusionMatrixPlot._")
        return metrics
    per_class = tfma_metrics.per_class_metrics(matrix)
    doc.heading(3, "Per class")
    doc.para("Precision, recall and F1 of each class, from the confusion matrix (top-1 "
             "predictions).")
    doc.add(tables.per_class_table(per_class))
    plots.plot_confusion_matrix(matrix, os.path.join(out_dir, CONFUSION_PNG),
                                    f"Confusion matrix on test ({_pct(accuracy)} accuracy)")
    doc.image(CONFUSION_PNG, "Confusion matrix")
    plots.plot_bars({"F1": [r["f1"] for r in per_class]}, contract.CLASS_NAMES,
                        os.path.join(out_dir, PER_CLASS_PNG), "F1 per class on test", "F1")
    doc.image(PER_CLASS_PNG, "F1 per class")
    metrics["confusion_matrix"] = matrix.tolist()
    metrics["per_class"] = per_class
    return metrics


def thresholds_from_config(eval_config: dict) -> list[dict]:
    """Every metric threshold in a TFMA EvalConfig given as JSON (camelCase or snake_case)."""
    from google.protobuf import json_format
    from tensorflow_model_analysis.proto import config_pb2

    config = json_format.ParseDict(eval_config, config_pb2.EvalConfig(),
                                   ignore_unknown_fields=True)
    found = []
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if not metric.HasField("threshold"):
                continue
            value = metric.threshold.value_threshold
            change = metric.threshold.change_threshold
            has_change = metric.threshold.HasField("change_threshold")

            def wrapped(message, field):
                return getattr(message, field).value if message.HasField(field) else None

            found.append({
                "metric": _snake(metric.class_name),
                "lower_bound": wrapped(value, "lower_bound"),
                "upper_bound": wrapped(value, "upper_bound"),
                "change_absolute": wrapped(change, "absolute") if has_change else None,
                "change_relative": wrapped(change, "relative") if has_change else None,
                "direction": config_pb2.MetricDirection.Name(change.direction)
                if has_change else None})
    return found


def _change_rule(threshold: dict) -> str:
    absolute = threshold.get("change_absolute")
    relative = threshold.get("change_relative")
    if absolute is None and relative is None:
        return "-"
    higher = threshold.get("direction") != "LOWER_IS_BETTER"
    parts = []
    if absolute is not None:
        allowed = -absolute if higher else absolute
        parts.append("no worse than the baseline" if abs(allowed) < 1e-6 else
                     f"at most {allowed * 100:.2f} points below the baseline" if allowed > 0
                     else f"at least {-allowed * 100:.2f} points above the baseline")
    if relative is not None:
        parts.append(f"relative change vs. the baseline {relative:+.2%}")
    return "; ".join(parts)


def failure_text(failure) -> str:
    """One line for a TFMA ValidationFailure: which metric, its value, the threshold it missed."""
    from google.protobuf import text_format

    key = failure.metric_key
    what = f"`{key.name}`" + (" change vs. the baseline" if key.is_diff else "")
    value = (f" = {failure.metric_value.double_value.value:+.4f}" if key.is_diff else
             f" = {failure.metric_value.double_value.value:.4f}") \
        if failure.metric_value.HasField("double_value") else ""
    threshold = text_format.MessageToString(failure.metric_threshold, as_one_line=True)
    return f"{what}{value} misses the threshold `{threshold}`" + (
        f": {failure.message}" if failure.message else "")


def section_blessing(doc: Document, view: RunView, metrics: dict | None) -> None:
    doc.heading(2, "Blessing")
    blessing = view.output(contract.EVALUATOR_NODE, "blessing")
    evaluation = view.output(contract.EVALUATOR_NODE, "evaluation")
    if blessing is None or evaluation is None:
        doc.para("_No verdict: the Evaluator did not run in this run._")
        return
    import tensorflow_model_analysis as tfma

    blessed = bool(runs.custom_value(blessing, contract.BLESSED_PROPERTY))
    stored = evaluation_config(evaluation.uri)
    baseline = stored.get("modelLocations", {}).get("baseline")
    validation = tfma.load_validation_result(evaluation.uri)
    failures = [f for per_slice in validation.metric_validations_per_slice
                for f in per_slice.failures]
    doc.para(f"Verdict: **{'BLESSED' if blessed else 'NOT BLESSED'}** (`{blessing.uri}`).")
    served = view.input(contract.EVALUATOR_NODE, "baseline_model")
    version = runs.custom_value(served, contract.BASELINE_VERSION_PROPERTY) if served else None
    doc.para((f"Baseline: version {version}, the model being served, `{baseline}`." if version
              else f"Baseline: `{baseline}`.") if baseline else
             "Baseline: none (nothing was served yet), so only absolute thresholds applied.")
    applied = thresholds_from_config(stored.get("evalConfig", {}))
    evaluator = view.execution(contract.EVALUATOR_NODE)
    configured_json = runs.custom_value(evaluator, "eval_config") if evaluator else None
    configured = thresholds_from_config(json.loads(configured_json)) if configured_json else []
    failing = {(f.metric_key.name, f.metric_key.is_diff) for f in failures}
    rows = []
    for threshold in configured or applied:
        name = threshold["metric"]
        in_effect = next((t for t in applied if t["metric"] == name), None)
        bounds = [f">= {threshold['lower_bound']:.2%}"] if threshold["lower_bound"] is not None \
            else []
        if threshold["upper_bound"] is not None:
            bounds.append(f"<= {threshold['upper_bound']:.2%}")
        change = _change_rule(threshold)
        if change != "-" and (in_effect is None or in_effect["change_absolute"] is None
                              and in_effect["change_relative"] is None):
            change += " (not applied: no baseline)"
        value = (metrics or {}).get(name)
        diff = (metrics or {}).get(name + tfma_metrics.DIFF_SUFFIX)
        passed = (name, False) not in failing and (name, True) not in failing
        rows.append([name, ", ".join(bounds) or "-", change,
                     _pct(value) + ("" if diff is None else f" ({diff * 100:+.2f} points)"),
                     "pass" if passed else "**FAIL**"])
    doc.table(["Metric", "Threshold", "Change vs. baseline", "Value (change)", "Result"], rows)
    if failures:
        doc.para("Failed checks (TFMA validation result):")
        doc.bullets([failure_text(f) for f in failures])
    elif validation.rubber_stamp:
        doc.para("The first blessed model is rubber-stamped on change thresholds (TFMA).")


def section_pushed(doc: Document, view: RunView) -> None:
    doc.heading(2, "Pushed versions")
    pusher = view.execution(contract.PUSHER_NODE)
    pushed = view.output(contract.PUSHER_NODE, "pushed_model")
    serving_dir = runs.custom_value(pusher, "serving_dir") if pusher is not None else None
    tflite_dir = runs.custom_value(pusher, "tflite_dir") if pusher is not None else None
    if pushed is not None and runs.custom_value(pushed, contract.PUSHED_PROPERTY):
        version = runs.custom_value(pushed, contract.PUSHED_VERSION_PROPERTY)
        already = runs.custom_value(pushed, contract.ALREADY_SERVED_PROPERTY)
        items = [f"Version **{version}**" + (" (already served: this run published nothing "
                                             "new)" if already else ""),
                 f"SavedModel: `{runs.custom_value(pushed, contract.PUSHED_DESTINATION_PROPERTY)}`"]
        tflite_path = runs.custom_value(pushed, contract.PUSHED_TFLITE_DESTINATION_PROPERTY)
        if tflite_path:
            items.append(f"TFLite: `{tflite_path}`")
        card = runs.custom_value(pushed, contract.PUSHED_MODEL_CARD_PROPERTY)
        if card:
            html = os.path.join(os.path.dirname(card), contract.MODEL_CARD_HTML)
            items.append(f"Model card: [{contract.MODEL_CARD_MARKDOWN}]({_file_url(card)}) "
                         f"([HTML]({_file_url(html)})), `{card}`")
        doc.bullets(items)
        _tflite_metrics(doc, view)
        _lineage(doc, view, runs.custom_value(pushed, contract.PUSHED_MODEL_ID_PROPERTY))
    else:
        doc.para("Nothing was pushed by this run.")
        model = view.output(contract.TRAINER_NODE, "model")
        if model is not None:
            _lineage(doc, view, model.id, heading="Lineage of this run's (unpushed) model")
    for label, base in (("TF Serving base path", serving_dir), ("TFLite folder", tflite_dir)):
        if base:
            versions = integer_versions(base)
            doc.para(f"{label} `{base}` now holds version(s): "
                     f"{', '.join(map(str, versions)) or 'none'}.")


def _file_url(path: str) -> str:
    """A link target for a local path or a URL (gs://...), usable from any report folder."""
    return path if "://" in path else "file://" + os.path.abspath(path).replace(" ", "%20")


def _tflite_metrics(doc: Document, view: RunView) -> None:
    tflite = view.output(contract.TFLITE_CONVERTER_NODE, "tflite_model")
    if tflite is None or not runs.custom_value(tflite, contract.TFLITE_CONVERTED_PROPERTY):
        return
    try:
        metrics = _json_file(os.path.join(tflite.uri, contract.TFLITE_METRICS_FILE))
    except Exception:  # noqa: BLE001 - artifact folder removed
        return
    doc.heading(3, "TFLite model")
    doc.add(tables.tflite_table(metrics))
    doc.para(f"Verified on {metrics['verified_images']} test images; accuracy drop "
             f"{metrics.get('accuracy_drop', 0) * 100:.2f} points (`{tflite.uri}`).")


def _lineage(doc: Document, view: RunView, model_id: int | None,
             heading: str = "Lineage") -> None:
    if model_id is None:
        return
    store = view.store
    (model,) = store.get_artifacts_by_id([int(model_id)]) or [None]
    trainer = runs.producing_execution(store, int(model_id)) if model is not None else None
    if trainer is None:
        return
    io = runs.execution_artifacts(store, trainer.id)
    doc.heading(3, heading)
    items = [f"Model artifact #{model.id}: `{model.uri}`, trained by execution #{trainer.id} "
             f"({_clock(trainer.create_time_since_epoch)})"]
    custom = runs.custom_value(trainer, "custom_config")
    if custom:
        try:
            config = json.loads(custom)
            items.append(f"Trainer settings: epochs {config.get('epochs')}, batch size "
                         f"{config.get('batch_size')}, steps per epoch "
                         f"{config.get('steps_per_epoch') or 'one pass'}, code version "
                         f"`{config.get('code_version')}`")
        except ValueError:
            pass
    for examples in io["inputs"].get("examples", []):
        origin = runs.producing_execution(store, examples.id)
        source = runs.custom_value(origin, "input_base") if origin is not None else None
        items.append(f"Data: examples #{examples.id} `{examples.uri}` from `{source or '?'}`, "
                     f"span {runs.custom_value(examples, 'span')}, input fingerprint `"
                     + (runs.custom_value(examples, "input_fingerprint") or "?").replace(
                         "\n", "; ") + "`")
    for graph in io["inputs"].get("transform_graph", []):
        items.append(f"Transform graph #{graph.id}: `{graph.uri}`")
    for hparams in io["inputs"].get("hyperparameters", []):
        items.append(f"Hyperparameters from #{hparams.id}: `{hparams.uri}`")
    for model_run in io["outputs"].get("model_run", []):
        try:
            summary = _json_file(os.path.join(model_run.uri, contract.TRAINING_SUMMARY_FILE))
            values = ", ".join(f"{k}={v}" for k, v in sorted(
                summary.get("hyperparameters", {}).items()))
            items.append(f"Hyperparameters used: {values}")
        except Exception:  # noqa: BLE001
            pass
        items.append(f"Training logs (TensorBoard): `{model_run.uri}`")
    doc.bullets(items)


def section_batch_predictions(doc: Document, view: RunView) -> None:
    """The --predict-dir stage: how many images were classified or refused, and where."""
    doc.heading(2, "Batch predictions")
    written = view.output(contract.BATCH_PREDICTIONS_NODE, "predictions")
    examples = view.output(contract.IMAGE_FOLDER_EXAMPLE_GEN_NODE, "examples")
    count = runs.custom_value(written, contract.PREDICTIONS_COUNT_PROPERTY) if written else None
    refused = runs.custom_value(examples, contract.REFUSED_IMAGES_PROPERTY) if examples else None
    if not count:
        doc.para("No predictions: the BulkInferrer skips itself when the model is not blessed.")
    items = [f"{count or 0:,} image(s) classified, {refused or 0:,} refused"]
    if written is not None:
        for name in (contract.PREDICTIONS_CSV, contract.PREDICTIONS_JSONL):
            items.append(f"`{os.path.join(written.uri, name)}`")
    if examples is not None and refused:
        items.append(f"Refused files and reasons: "
                     f"`{os.path.join(examples.uri, contract.REFUSED_IMAGES_FILE)}`")
    doc.bullets(items)


# ---- Putting it together -------------------------------------------------------------------------

def _section(doc: Document, title: str, write: Callable[[], Any]) -> Any:
    """Runs one section; a missing or unreadable artifact costs that section, not the report."""
    mark = len(doc.blocks)
    try:
        return write()
    except Exception as error:  # noqa: BLE001
        if not any(isinstance(b, Heading) for b in doc.blocks[mark:]):
            doc.heading(2, title)
        doc.para(f"_Not available: {type(error).__name__}: {error}_")
        return None


def build_report(metadata_path: str, run_id: str | None, out_dir: str) -> tuple[Document,
                                                                                   RunView]:
    try:
        store = runs.open_store(metadata_path)
    except FileNotFoundError as error:
        raise ReportError(str(error)) from None
    try:
        view = RunView(store, run_id)
    except runs.UnknownRunError as error:
        raise ReportError(f"{error} ({metadata_path})") from None
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:  # a place the checks up front could not foresee (/proc, /sys)
        raise ReportError(f"cannot create the report folder {out_dir}: "
                          f"{error.strerror or error}") from None
    doc = Document()
    rows = component_rows(view)
    section_summary(doc, view, rows, metadata_path)
    section_components(doc, rows)
    _section(doc, "Data", lambda: section_data(doc, view, out_dir))
    _section(doc, "Tuning and hyperparameters",
             lambda: section_hyperparameters(doc, view, rows))
    metrics = _section(doc, "Test metrics", lambda: section_metrics(doc, view, out_dir))
    _section(doc, "Blessing", lambda: section_blessing(doc, view, metrics))
    _section(doc, "Pushed versions", lambda: section_pushed(doc, view))
    if view.execution(contract.BATCH_PREDICTIONS_NODE) is not None:
        _section(doc, "Batch predictions", lambda: section_batch_predictions(doc, view))
    return doc, view


def write_report(output_dir: str, run_id: str | None = None, to: str | None = None,
                 metadata_path: str | None = None) -> dict:
    """Writes report.md, report.html and the PNGs; returns their paths."""
    metadata_path = metadata_path or os.path.join(output_dir, contract.METADATA_FILE)
    if not os.path.exists(metadata_path):
        raise ReportError(f"no ML Metadata database at {metadata_path}; run the pipeline first "
                          f"or point --output-dir at the folder that holds "
                          f"{contract.METADATA_FILE}")
    if to is None:
        try:
            name = runs.find_run(runs.open_store(metadata_path), run_id).name
        except FileNotFoundError as error:
            raise ReportError(str(error)) from None
        except runs.UnknownRunError as error:
            raise ReportError(f"{error} ({metadata_path})") from None
        to = os.path.join(output_dir, "reports", _sanitize(name))
    doc, view = build_report(metadata_path, run_id, to)
    paths = {"markdown": os.path.join(to, REPORT_MD), "html": os.path.join(to, REPORT_HTML)}
    with open(paths["markdown"], "w") as f:
        f.write(to_markdown(doc))
    with open(paths["html"], "w") as f:
        f.write(to_html(doc, to, f"CIFAR-10 pipeline run {view.run.name}"))
    paths["images"] = [os.path.join(to, name) for name in doc.images]
    paths["missing_artifacts"] = view.missing_artifacts[0]
    return paths
