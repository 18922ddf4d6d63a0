"""The model card of a pushed version, built from the run's own artifacts (issue #18).

The Pusher calls `collect_facts` with the folders of the artifacts the DAG hands it (statistics,
evaluation, blessing verdict, training summary, hyperparameters, TFLite metrics) and writes the
card with `write_model_card`: model_card.md, model_card.html (one Document, reports/document.py) and
model_card.json (the figures themselves, so that tools and tests never parse Markdown).

Every figure comes from an artifact, never from a constant of this file: the card of version N
describes the model that version N serves. A missing or unreadable artifact costs its section
(the card says what is missing), never the push.
"""
from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from typing import Any

from modules import contract
from reports import metrics as tfma_metrics
from reports import tables
from reports.document import Document, to_html, to_markdown

WEAK_CLASSES = 3  # how many of the lowest-F1 classes the limitations name
HYPERPARAMETERS_FILE = contract.BEST_HYPERPARAMETERS_FILE
# Where the Trainer's hyperparameters came from (the Pusher's hyperparameters_source parameter).
SOURCE_TUNER, SOURCE_IMPORTED, SOURCE_DEFAULTS = "tuner", "imported", "defaults"
_SOURCE_TEXT = {
    SOURCE_TUNER: "found by this run's Tuner (KerasTuner search, scored on `eval`)",
    SOURCE_IMPORTED: "imported from an earlier Tuner search",
    SOURCE_DEFAULTS: "the defaults of modules/model.py (no tuning)",
}


def _read_json(path: str) -> Any:
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def _attempt(facts: dict, section: str, collect: Callable[[], Any]) -> Any:
    """Runs one collector; a failure is recorded under facts["missing"] instead of raised."""
    try:
        return collect()
    except Exception as error:  # noqa: BLE001 - one unreadable artifact must not stop the push
        facts["missing"][section] = f"{type(error).__name__}: {error}"
        return None


# ---- Collecting the figures ----------------------------------------------------------------------

def data_facts(statistics_uri: str) -> dict:
    """Examples and label counts per split (TFDV statistics), and the subset caveat if any."""
    from reports import run_report  # the report's statistics readers; imported late (matplotlib)

    splits = run_report.load_split_statistics(statistics_uri)
    order = [s for s in (contract.TRAIN_SPLIT, contract.EVAL_SPLIT, contract.TEST_SPLIT)
             if s in splits] + sorted(set(splits) - {contract.TRAIN_SPLIT, contract.EVAL_SPLIT,
                                                      contract.TEST_SPLIT})
    rows = []
    for split in order:
        counts = run_report.label_counts(splits[split])
        rows.append({"split": split, "examples": int(splits[split].num_examples),
                     "label_counts": None if counts is None else [int(round(c)) for c in counts]})
    return {"statistics_uri": statistics_uri, "splits": rows,
            "subset_caveat": subset_caveat(rows)}


def subset_caveat(splits: list[dict]) -> str | None:
    """Why the figures may differ from the official data set's, when the run saw fewer images."""
    by_name = {row["split"]: row["examples"] for row in splits}
    train = by_name.get(contract.TRAIN_SPLIT, 0) + by_name.get(contract.EVAL_SPLIT, 0)
    test = by_name.get(contract.TEST_SPLIT, 0)
    if train >= contract.OFFICIAL_TRAIN_IMAGES and test >= contract.OFFICIAL_TEST_IMAGES:
        return None
    return (f"The run saw {train:,} training and {test:,} test images, not the official "
            f"{contract.OFFICIAL_TRAIN_IMAGES:,} and {contract.OFFICIAL_TEST_IMAGES:,}: a subset "
            f"such as the offline copy (../shared/datasets/cifar10), whose test batch holds only "
            f"the first 5,000 official test images and most of whose pixels were decoded from "
            f"JPEG (quality 75) copies, about 6/255 off per pixel. Accuracy on the pristine data "
            f"set can differ a little, and a small test split makes every figure here noisier.")


def evaluation_facts(evaluation_uri: str) -> dict:
    """TFMA's overall metrics, the baseline comparison, the confusion matrix and per-class F1."""
    result = tfma_metrics.load_evaluation(evaluation_uri)
    overall = tfma_metrics.overall_metrics(result)
    if not overall:
        raise ValueError(f"no TFMA metrics in {evaluation_uri}")
    accuracy = overall.get(tfma_metrics.ACCURACY)
    diff = overall.get(tfma_metrics.ACCURACY + tfma_metrics.DIFF_SUFFIX)
    stored = tfma_metrics.evaluation_config(evaluation_uri)
    matrix = tfma_metrics.confusion_from_plots(result)
    return {
        "uri": evaluation_uri,
        "split": contract.TEST_SPLIT,
        "accuracy": accuracy,
        "example_count": overall.get(tfma_metrics.EXAMPLE_COUNT),
        "cross_entropy": overall.get(tfma_metrics.CROSS_ENTROPY),
        "baseline_model": stored.get("modelLocations", {}).get("baseline"),
        "baseline_accuracy": None if diff is None or accuracy is None else accuracy - diff,
        "accuracy_change": diff,
        "confusion_matrix": None if matrix is None else matrix.tolist(),
        "per_class": None if matrix is None else tfma_metrics.per_class_metrics(matrix),
        "eval_config": stored.get("evalConfig", {}),
    }


def blessing_facts(evaluation_uri: str, blessed: bool | None) -> dict:
    """The verdict, the thresholds TFMA applied and the checks that failed (if any)."""
    import tensorflow_model_analysis as tfma

    from reports import run_report

    stored = tfma_metrics.evaluation_config(evaluation_uri)
    validation = tfma.load_validation_result(evaluation_uri)
    failures = [run_report.failure_text(f) for per_slice in
                validation.metric_validations_per_slice for f in per_slice.failures]
    return {"blessed": blessed,
            "thresholds": run_report.thresholds_from_config(stored.get("evalConfig", {})),
            "failures": failures, "rubber_stamp": bool(validation.rubber_stamp)}


def training_facts(model_run_uri: str | None, hyperparameters_uri: str | None,
                   hyperparameters_source: str | None) -> dict:
    """The Trainer's summary (hyperparameters used, epochs, time, machine) and their origin."""
    summary = {}
    if model_run_uri:
        summary = _read_json(os.path.join(model_run_uri, contract.TRAINING_SUMMARY_FILE))
    source = hyperparameters_source or (SOURCE_IMPORTED if hyperparameters_uri
                                        else SOURCE_DEFAULTS)
    return {"summary": summary, "hyperparameters": summary.get("hyperparameters", {}),
            "hyperparameters_source": source, "hyperparameters_uri": hyperparameters_uri}


def tflite_facts(tflite_uri: str) -> dict:
    """The converter's metrics.json: sizes, accuracies, agreement with float, latency."""
    return _read_json(os.path.join(tflite_uri, contract.TFLITE_METRICS_FILE))


def collect_facts(*, version: int, model_uri: str, saved_model_path: str,
                  tflite_path: str = "", evaluation_uri: str | None = None,
                  blessed: bool | None = None, statistics_uri: str | None = None,
                  model_run_uri: str | None = None, hyperparameters_uri: str | None = None,
                  hyperparameters_source: str | None = None,
                  tflite_uri: str | None = None) -> dict:
    """Everything the card shows, as plain JSON-able values; facts["missing"] names the gaps."""
    facts: dict[str, Any] = {
        "model_name": contract.MODEL_NAME, "version": int(version),
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model_uri": model_uri, "saved_model_path": saved_model_path,
        "tflite_path": tflite_path or None, "missing": {}}
    facts["data"] = _attempt(facts, "data", lambda: data_facts(statistics_uri)) \
        if statistics_uri else None
    facts["evaluation"] = _attempt(facts, "evaluation",
                                   lambda: evaluation_facts(evaluation_uri)) \
        if evaluation_uri else None
    facts["blessing"] = _attempt(facts, "blessing",
                                 lambda: blessing_facts(evaluation_uri, blessed)) \
        if evaluation_uri else {"blessed": blessed, "thresholds": [], "failures": [],
                                "rubber_stamp": False}
    facts["training"] = _attempt(facts, "training", lambda: training_facts(
        model_run_uri, hyperparameters_uri, hyperparameters_source))
    facts["tflite"] = _attempt(facts, "tflite", lambda: tflite_facts(tflite_uri)) \
        if tflite_uri else None
    for name, value in (("data", statistics_uri), ("evaluation", evaluation_uri),
                        ("training", model_run_uri), ("tflite", tflite_uri)):
        if not value:
            facts["missing"].setdefault(name, "not connected to the Pusher in this pipeline")
    per_class = (facts["evaluation"] or {}).get("per_class") or []
    facts["weak_classes"] = [row["class"] for row in
                             sorted(per_class, key=lambda r: r["f1"])[:WEAK_CLASSES]]
    return facts


# ---- The card as a Document ----------------------------------------------------------------------

_pct = tables.percent


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{value:.1f} s" if value < 60 else f"{minutes} min {seconds:02d} s"


def _missing(doc: Document, facts: dict, section: str) -> bool:
    """Writes why a section is empty; True when it is."""
    reason = facts["missing"].get(section)
    if reason is None:
        return False
    doc.para(f"_Not available: {reason}._")
    return True


def _section_overview(doc: Document, facts: dict) -> None:
    evaluation = facts.get("evaluation") or {}
    doc.heading(1, f"Model card: `{facts['model_name']}` version {facts['version']}")
    doc.para("A convolutional network that labels 32x32 RGB photographs with one of the ten "
             "CIFAR-10 classes, trained and evaluated by this project's TFX pipeline. Written by "
             "the Pusher from the run's own artifacts when it pushed this version.")
    items = [f"Test accuracy: **{_pct(evaluation.get('accuracy'))}** on "
             f"{evaluation.get('example_count') or 0:,.0f} `test` images (TFMA)",
             f"SavedModel (TF Serving): `{facts['saved_model_path']}`"]
    if facts.get("tflite_path"):
        items.append(f"TFLite: `{facts['tflite_path']}`")
    items += [f"Trained model artifact: `{facts['model_uri']}`",
              f"Card written {facts['written']}"]
    doc.bullets(items)


def _section_use(doc: Document, facts: dict) -> None:
    doc.heading(2, "Intended use and limitations")
    items = [
        "Intended use: classifying small natural photographs into "
        + ", ".join(contract.CLASS_NAMES) + "; teaching and benchmarking MLOps pipelines.",
        f"Inputs must be {contract.IMAGE_HEIGHT}x{contract.IMAGE_WIDTH} RGB images (PNG or JPEG "
        f"through `{contract.SERVING_SIGNATURE}`, uint8 pixels through "
        f"`{contract.PIXELS_SIGNATURE}`, tf.Examples through `{contract.EXAMPLES_SIGNATURE}`); "
        f"other sizes are refused, not resized.",
        "Every image gets one of the ten classes: there is no 'none of these' answer, so "
        "out-of-distribution images (people, text, larger scenes) are still labelled, often with "
        "high confidence.",
        "Not for decisions about people, safety or anything with consequences: CIFAR-10 is a "
        "research data set of low-resolution web images."]
    weak = facts.get("weak_classes") or []
    per_class = {r["class"]: r for r in ((facts.get("evaluation") or {}).get("per_class") or [])}
    if weak:
        items.append("Weakest classes (lowest F1 on test): " + ", ".join(
            f"{name} ({per_class[name]['f1']:.3f})" for name in weak) + ".")
    caveat = (facts.get("data") or {}).get("subset_caveat")
    if caveat:
        items.append(f"Data caveat: {caveat}")
    doc.bullets(items)


def _section_data(doc: Document, facts: dict) -> None:
    doc.heading(2, "Data")
    if _missing(doc, facts, "data"):
        return
    data = facts["data"]
    doc.para(f"Splits and label counts from the StatisticsGen artifact `{data['statistics_uri']}` "
             f"(TFDV). The Trainer learns from `train`, checks each epoch on `eval`; the "
             f"Evaluator measures on `test`.")
    doc.table(["Split", "Examples", *contract.CLASS_NAMES],
              [[row["split"], f"{row['examples']:,}",
                *(row["label_counts"] or ["?"] * contract.NUM_CLASSES)]
               for row in data["splits"]],
              numeric=[False] + [True] * (1 + contract.NUM_CLASSES))


def _section_training(doc: Document, facts: dict) -> None:
    doc.heading(2, "Training")
    if _missing(doc, facts, "training"):
        return
    training = facts["training"]
    summary = training["summary"]
    source = _SOURCE_TEXT.get(training["hyperparameters_source"],
                              training["hyperparameters_source"])
    where = f" (`{training['hyperparameters_uri']}`)" if training["hyperparameters_uri"] else ""
    doc.para(f"Hyperparameters: {source}{where}.")
    if training["hyperparameters"]:
        doc.table(["Hyperparameter", "Value"],
                  [[k, v] for k, v in sorted(training["hyperparameters"].items())],
                  numeric=[False, True])
    machine = summary.get(contract.MACHINE_KEY) or {}
    gpus = machine.get("gpus") or []
    items = [f"Parameters: {summary['parameters']:,}" if "parameters" in summary else
             "Parameters: -",
             f"{summary.get('epochs', '?')} epoch(s) of {summary.get('steps_per_epoch', '?')} "
             f"steps on {summary.get('train_examples', 0):,} train examples",
             f"Training time: {_seconds(summary.get(contract.TRAIN_SECONDS_KEY))}"]
    if machine:
        items.append(f"Machine: {machine.get('platform', '?')}, {machine.get('cpu_cores', '?')} "
                     f"CPU core(s), " + (f"GPU(s): {', '.join(gpus)}" if gpus else "no GPU")
                     + f", TensorFlow {machine.get('tensorflow', '?')}")
    doc.bullets(items)


def _section_metrics(doc: Document, facts: dict) -> None:
    doc.heading(2, "Evaluation")
    if _missing(doc, facts, "evaluation"):
        return
    evaluation = facts["evaluation"]
    doc.para(f"TFMA on the `{evaluation['split']}` split, from `{evaluation['uri']}`.")
    rows = [["Accuracy", _pct(evaluation["accuracy"])],
            ["Examples", f"{evaluation['example_count'] or 0:,.0f}"],
            ["Cross-entropy", "-" if evaluation["cross_entropy"] is None
             else f"{evaluation['cross_entropy']:.4f}"]]
    if evaluation["baseline_accuracy"] is not None:
        rows += [["Baseline accuracy", _pct(evaluation["baseline_accuracy"])],
                 ["Change vs. the baseline", f"{evaluation['accuracy_change'] * 100:+.2f} points"]]
    doc.table(["Metric", "Value"], rows, numeric=[False, True])
    if evaluation["per_class"]:
        doc.heading(3, "Per class")
        doc.add(tables.per_class_table(evaluation["per_class"]))
        doc.heading(3, "Confusion matrix")
        doc.para("Rows: true class; columns: predicted class (test split counts).")
        doc.table(["true \\ predicted", *contract.CLASS_NAMES],
                  [[name, *row] for name, row in zip(contract.CLASS_NAMES,
                                                     evaluation["confusion_matrix"],
                                                     strict=False)],
                  numeric=[False] + [True] * contract.NUM_CLASSES)


def _section_blessing(doc: Document, facts: dict) -> None:
    doc.heading(2, "Blessing")
    if _missing(doc, facts, "blessing"):
        return
    from reports import run_report

    blessing = facts["blessing"]
    evaluation = facts.get("evaluation") or {}
    verdict = {True: "BLESSED", False: "NOT BLESSED", None: "unknown"}[blessing["blessed"]]
    doc.para(f"Verdict: **{verdict}** by the Evaluator.")
    baseline = evaluation.get("baseline_model")
    if baseline:
        doc.para(f"Baseline it was compared with: `{baseline}` (accuracy "
                 f"{_pct(evaluation.get('baseline_accuracy'))}; this model "
                 f"{(evaluation.get('accuracy_change') or 0) * 100:+.2f} points).")
    else:
        doc.para("Baseline: none (nothing was served yet), so only absolute thresholds "
                 "applied" + (" and change thresholds were rubber-stamped." if
                              blessing["rubber_stamp"] else "."))
    rows = []
    for threshold in blessing["thresholds"]:
        bounds = [f">= {threshold['lower_bound']:.2%}"] if threshold["lower_bound"] is not None \
            else []
        if threshold["upper_bound"] is not None:
            bounds.append(f"<= {threshold['upper_bound']:.2%}")
        rows.append([threshold["metric"], ", ".join(bounds) or "-",
                     run_report._change_rule(threshold)])  # the run report's wording
    if rows:
        doc.table(["Metric", "Threshold", "Change allowed vs. baseline"], rows)
    if blessing["failures"]:
        doc.bullets(blessing["failures"])


def _section_tflite(doc: Document, facts: dict) -> None:
    doc.heading(2, "TFLite model")
    if _missing(doc, facts, "tflite"):
        return
    metrics = facts["tflite"]
    doc.para(f"Mode `{metrics['mode']}`, verified on {metrics['verified_images']} test images with "
             f"the LiteRT interpreter (one image per call, one CPU thread).")
    doc.add(tables.tflite_table(metrics))
    doc.bullets([f"Accuracy drop vs. the float SavedModel: "
                 f"{metrics.get('accuracy_drop', 0) * 100:.2f} points",
                 f"{metrics.get('size_ratio_vs_float_weights', 0):.2f}x smaller than the float32 "
                 f"weights"])


def model_card_document(facts: dict) -> Document:
    """The card as one Document: overview, use and limitations, data, training, metrics."""
    doc = Document()
    for section in (_section_overview, _section_use, _section_data, _section_training,
                    _section_metrics, _section_blessing, _section_tflite):
        section(doc, facts)
    return doc


def write_model_card(facts: dict, folder: str) -> dict[str, str]:
    """Writes model_card.md, .html and .json into folder (any filesystem); returns their paths."""
    import tensorflow as tf

    tf.io.gfile.makedirs(folder)
    doc = model_card_document(facts)
    title = f"Model card: {facts['model_name']} version {facts['version']}"
    contents = {contract.MODEL_CARD_MARKDOWN: to_markdown(doc),
                contract.MODEL_CARD_HTML: to_html(doc, folder, title),
                contract.MODEL_CARD_JSON: json.dumps(facts, indent=2, sort_keys=True)}
    paths = {}
    for name, text in contents.items():
        paths[name] = os.path.join(folder, name)
        with tf.io.gfile.GFile(paths[name], "w") as f:
            f.write(text)
    return paths
