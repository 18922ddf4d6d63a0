"""Pushes a blessed SavedModel into a TF Serving base path, and its .tflite beside, atomically.

A version is first copied into a hidden staging folder in the same base path and then renamed to
its number. TF Serving only loads integer-named folders, so it never sees half a version; on a local
or POSIX file system the rename is atomic. On object stores (gs://, s3://) a rename is a copy, so
there the SavedModel's `saved_model.pb` is written last, after its variables.
The SavedModel and the TFLite model share one version number, and are pushed both or neither:
both are staged first and published together; a failure removes whatever this push published
(serving.model_base.publish_versions_together) and names the base path and what failed.

When the DAG connects the evaluation (and the statistics, training summary, hyperparameters), the
version's model card (reports.model_card) is published in that same all-or-none step to
`<serving_dir>/model_cards/<version>/`. TF Serving only loads integer-named children of a base path,
so it never looks there, and the version folder stays exactly the Trainer's export.

A model that is already the newest version (the same graph and weights, and the same .tflite
when one is pushed) is not pushed again: a re-run whose Trainer came from the cache is evaluated
against the served copy of itself, blessed, and would otherwise publish the same model under a
new number, which makes TF Serving load it again.

A push killed between its renames (or, on an object store, during the copies that stand in for
them) leaves the newest SavedModel version without its .tflite or model card, or with a partial
folder of them (no `model.tflite` or `model_card.md`: each is written last). The resumed Pusher
finds the SavedModel it was pushing already served and completes that same version.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from modules import contract, export
from reports import model_card
from serving import model_base

log = logging.getLogger("cifar10_tfx.pusher")

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
BASELINE_KEY = "baseline_model"
TFLITE_KEY = "tflite_model"
PUSHED_MODEL_KEY = "pushed_model"
SERVING_DIR_KEY = "serving_dir"
TFLITE_DIR_KEY = "tflite_dir"
EVALUATION_KEY = "evaluation"
STATISTICS_KEY = "statistics"
MODEL_RUN_KEY = "model_run"
HYPERPARAMETERS_KEY = "hyperparameters"
HYPERPARAMETERS_SOURCE_KEY = "hyperparameters_source"
CARD_STAGING_DIR = "model_card"  # in the PushedModel artifact: the card, written before publishing
PUSHED_MARKER_FILE = "PUSHED"  # in the PushedModel artifact: the path of the pushed SavedModel
# Version numbers tried when another push publishes the same one first (both began in one second):
# with the Evaluator's baseline connected, the next try finds that version served and stops,
# unless it is this very model; without it (or while an object store's copy is incomplete),
# a later number is tried.
PUSH_ATTEMPTS = 3
# The parts of a version beside its SavedModel that an interrupted push can leave out.
TFLITE_PART, CARD_PART = "TFLite model", "model card"


def is_blessed(blessing: types.Artifact) -> bool:
    return bool(blessing.get_int_custom_property(contract.BLESSED_PROPERTY))


class Executor(base_executor.BaseExecutor):
    """Pushes blessed models only; records pushed, version and destinations on the PushedModel.

    Stale staging folders (a crashed push's) are removed first; a symbolic link among them is
    unlinked, never followed, and a model folder holding a link is refused (serving.model_base).
    """

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        pushed = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[BLESSING_KEY])
        if not is_blessed(blessing):
            log.warning("The model is not blessed (see %s); nothing was pushed.", blessing.uri)
            pushed.set_int_custom_property(contract.PUSHED_PROPERTY, 0)
            return

        serving_dir = exec_properties[SERVING_DIR_KEY]
        tflite_dir = exec_properties.get(TFLITE_DIR_KEY) or ""
        tflite = input_dict.get(TFLITE_KEY) or []
        tflite_dir = tflite_dir if tflite else ""  # nothing converted: no .tflite to push
        card_dir = model_cards_dir(serving_dir) if input_dict.get(EVALUATION_KEY) else ""
        bases = [base for base in (serving_dir, tflite_dir, card_dir) if base]
        created = [base for base in bases if not _lexists(base)]
        try:
            _prepare([serving_dir])
            with model_base.locked(serving_dir):  # another local run's push waits, or we wait
                self._push_unless_done(input_dict, exec_properties, pushed, serving_dir,
                                       tflite_dir, card_dir)
        except BaseException:
            for base in reversed(created):  # a base path this push created goes, if empty
                try:
                    fs = model_base.filesystem_for(base)
                    if fs.isdir(base) and not fs.listdir(base):
                        fs.remove(base)
                except OSError:
                    log.warning("Could not remove the empty base path %s", base)
            raise

    def _push_unless_done(self, input_dict: dict[str, list[types.Artifact]],
                          exec_properties: dict[str, Any], pushed: types.Artifact,
                          serving_dir: str, tflite_dir: str, card_dir: str) -> None:
        """Pushes and records the push on `pushed`; or records why not: the model is already
        served (an interrupted push's version is completed), or another run pushed after
        this model's evaluation."""
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        tflite_file = (os.path.join(artifact_utils.get_single_uri(input_dict[TFLITE_KEY]),
                                    contract.TFLITE_FILE) if tflite_dir else "")
        taken = 0
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            # Asked again after a lost race: the push that won may have published this very
            # model (two runs of one cached Trainer), which must not come twice.
            served = served_as(export.serving_model_dir(model.uri), tflite_file, serving_dir,
                               tflite_dir, with_card=bool(card_dir))
            if served is not None and served.unfinished:
                _record(pushed, model, self._finish(input_dict, exec_properties, served,
                                                    tflite_dir, card_dir, pushed.uri))
                return
            if served is not None:
                log.info("Version %d already serves this model (%s); nothing new was pushed.",
                         served.version, model.uri)
                pushed.set_int_custom_property(contract.ALREADY_SERVED_PROPERTY, 1)
                _record(pushed, model, served)
                return
            baseline = _first(input_dict, BASELINE_KEY)
            newer = superseding_version(baseline, serving_dir)
            if newer is not None:
                baseline_version = (baseline.get_int_custom_property(
                    contract.BASELINE_VERSION_PROPERTY) if baseline.has_custom_property(
                    contract.BASELINE_VERSION_PROPERTY) else None)
                log.warning("Version %d is served from %s now, not the version this run took "
                            "as its baseline (%s); this model was never compared with version "
                            "%d, so nothing was pushed. Run the pipeline again to evaluate it "
                            "against that version.", newer, serving_dir,
                            contract.superseded_cause(newer, baseline_version), newer)
                pushed.set_int_custom_property(contract.PUSHED_PROPERTY, 0)
                pushed.set_int_custom_property(contract.SUPERSEDED_BY_PROPERTY, newer)
                if baseline_version is not None:
                    pushed.set_int_custom_property(contract.BASELINE_VERSION_PROPERTY,
                                                   baseline_version)
                return
            try:
                saved_model_path, tflite_path, version = self._push(
                    input_dict, serving_dir, tflite_dir, card_dir, pushed.uri, exec_properties,
                    above=taken)
                break
            except model_base.VersionTakenError as error:
                if attempt == PUSH_ATTEMPTS:
                    raise
                log.warning("Version %d was published by another push meanwhile (%s)",
                            error.version, error)
                taken = error.version
        card = (model_base.filesystem_for(card_dir).join(card_dir, str(version),
                                                         contract.MODEL_CARD_MARKDOWN)
                if card_dir else "")
        _record(pushed, model, Served(version, saved_model_path, tflite_path, card))

    @staticmethod
    def _push(input_dict: dict[str, list[types.Artifact]], serving_dir: str, tflite_dir: str,
              card_dir: str, pushed_uri: str, exec_properties: dict[str, Any],
              above: int = 0) -> tuple[str, str, int]:
        """(SavedModel path, .tflite path or "", version above `above`): all published (with
        the model card when card_dir is set), or none (VersionTakenError: another push
        published that number first)."""
        bases = [base for base in (serving_dir, tflite_dir, card_dir) if base]
        _prepare(bases)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        # All or none: the SavedModel, its .tflite and the card are staged, then published together.
        sources = [(export.serving_model_dir(model.uri), serving_dir, contract.SAVED_MODEL_FILE)]
        if tflite_dir:
            sources.append((artifact_utils.get_single_uri(input_dict[TFLITE_KEY]), tflite_dir,
                            contract.TFLITE_FILE))
        version = model_base.next_version(bases, above=above)
        if card_dir:  # the card names the version
            fs = model_base.filesystem_for(serving_dir)
            paths = [fs.join(serving_dir, str(version))]
            if tflite_dir:
                paths.append(fs.join(tflite_dir, str(version)))
            sources.append((_staged_card(input_dict, exec_properties, version, paths, pushed_uri),
                            card_dir, contract.MODEL_CARD_MARKDOWN))
        paths = model_base.publish_versions_together(sources, version)
        log.info("Pushed the SavedModel to %s", paths[0])
        if tflite_dir:
            log.info("Pushed the TFLite model to %s", paths[1])
        return paths[0], paths[1] if tflite_dir else "", version

    @staticmethod
    def _finish(input_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any],
                served: Served, tflite_dir: str, card_dir: str, pushed_uri: str) -> Served:
        """Completes a version an interrupted push left with its SavedModel only: publishes the
        .tflite and card it lacks under the same number (each replacing a partial folder)."""
        log.warning("Version %d already serves this model, but without its %s (an "
                    "interrupted push, or one without them); completing it.", served.version,
                    " and ".join(served.unfinished))
        bases = {TFLITE_PART: tflite_dir, CARD_PART: card_dir}
        _prepare([bases[part] for part in served.unfinished])
        if TFLITE_PART in served.unfinished:
            model_base.publish_version(artifact_utils.get_single_uri(input_dict[TFLITE_KEY]),
                                       tflite_dir, served.version, last=contract.TFLITE_FILE,
                                       replace=True)
            log.info("Pushed the TFLite model to %s", served.tflite_path)
        if CARD_PART in served.unfinished:
            paths = [served.saved_model_path] + ([served.tflite_path] if served.tflite_path
                                                 else [])
            staged = _staged_card(input_dict, exec_properties, served.version, paths, pushed_uri)
            model_base.publish_version(staged, card_dir, served.version,
                                       last=contract.MODEL_CARD_MARKDOWN, replace=True)
        return dataclasses.replace(served, unfinished=())


def _prepare(base_dirs: list[str]) -> None:
    """Creates each base path and removes what interrupted copies left there."""
    for base_dir in base_dirs:
        try:
            model_base.filesystem_for(base_dir).makedirs(base_dir)
            model_base.remove_stale_staging(base_dir)
        except OSError as error:
            reason = model_base.describe_error(error)
            raise model_base.ModelBaseError(
                f"{base_dir}: cannot prepare the base path ({reason}); nothing was pushed"
            ) from error


def _staged_card(input_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any],
                 version: int, paths: list[str], pushed_uri: str) -> str:
    """Writes the version's card into the PushedModel artifact; returns its folder."""
    staged = os.path.join(pushed_uri, CARD_STAGING_DIR)
    write_card(input_dict, exec_properties, version, paths, staged)
    return staged


@dataclasses.dataclass(frozen=True)
class Served:
    """A published version: its number and paths ("" for what it does not have)."""

    version: int
    saved_model_path: str
    tflite_path: str
    card_path: str
    # What an interrupted push left absent or partial: TFLITE_PART, CARD_PART.
    unfinished: tuple[str, ...] = ()


# What tells two exports apart: the graph and the variables' index (which holds a checksum of
# every tensor), a few MB to read at most.
IDENTITY_FILES = (contract.SAVED_MODEL_FILE, f"{contract.SAVED_MODEL_VARIABLES}.index")


def _same_model(model_dir: str, version_dir: str, fs: model_base.Filesystem) -> bool:
    """Whether a version folder holds the export in `model_dir` (compared by content)."""
    return all(model_base.same_file(os.path.join(model_dir, name), fs.join(version_dir, name))
               for name in IDENTITY_FILES)


def superseding_version(baseline: types.Artifact | None, serving_dir: str) -> int | None:
    """The newest version of `serving_dir` when it is not the `baseline` the Evaluator compared
    with (another run pushed since: with nothing served then, anything served now), else None.
    None as well without a baseline input, or with nothing served now."""
    if baseline is None:
        return None
    fs = model_base.filesystem_for(serving_dir)
    try:
        version = model_base.served_version(serving_dir, fs)
        if version is None or _same_model(export.serving_model_dir(baseline.uri),
                                          fs.join(serving_dir, str(version)), fs):
            return None
    except OSError as error:
        raise model_base.ModelBaseError(
            f"{serving_dir}: cannot read which version is served "
            f"({model_base.describe_error(error)}); nothing was pushed") from error
    return version


def served_as(model_dir: str, tflite_file: str, serving_dir: str, tflite_dir: str,
              with_card: bool = False) -> Served | None:
    """The newest version of `serving_dir` when it is this very model, else None: the same
    files as the export in `model_dir` and, with a `tflite_file`, the same .tflite in
    `tflite_dir`. Compared by content, not by path: a new metadata store numbers its artifacts'
    folders from 1 again, so one path can name two models.

    A .tflite (or, `with_card`, a model card) that the version lacks, its folder absent or
    without the file written last, is listed in `unfinished`: an interrupted push's, unless
    another push is copying it right now (the same model, pushed by two runs at once)."""
    fs = model_base.filesystem_for(serving_dir)
    try:
        version = model_base.served_version(serving_dir, fs)
        if version is None:
            return None
        version_dir = fs.join(serving_dir, str(version))
        if not _same_model(model_dir, version_dir, fs):
            return None
        tflite_path, unfinished = "", []
        if tflite_file:
            tflite_fs = model_base.filesystem_for(tflite_dir)
            tflite_path = tflite_fs.join(tflite_dir, str(version))
            served_tflite = tflite_fs.join(tflite_path, contract.TFLITE_FILE)
            if not tflite_fs.exists(served_tflite):
                if not model_base.version_in_progress(tflite_dir, version, tflite_fs):
                    unfinished.append(TFLITE_PART)  # else another push is publishing it now
            elif not model_base.same_file(tflite_file, served_tflite):
                return None
        card = fs.join(model_cards_dir(serving_dir), str(version), contract.MODEL_CARD_MARKDOWN)
        if not fs.exists(card):
            if with_card and not model_base.version_in_progress(model_cards_dir(serving_dir),
                                                                version, fs):
                unfinished.append(CARD_PART)
            else:
                card = ""
        return Served(version, version_dir, tflite_path, card, tuple(unfinished))
    except OSError:  # unreadable here: push, and let the push say what is wrong
        return None


def _record(pushed: types.Artifact, model: types.Artifact, served: Served) -> None:
    """The PushedModel's properties and marker file: where the model is served, as what."""
    if served.tflite_path:
        pushed.set_string_custom_property(contract.PUSHED_TFLITE_DESTINATION_PROPERTY,
                                          served.tflite_path)
    pushed.set_int_custom_property(contract.PUSHED_PROPERTY, 1)
    pushed.set_string_custom_property(contract.PUSHED_DESTINATION_PROPERTY,
                                      served.saved_model_path)
    pushed.set_int_custom_property(contract.PUSHED_VERSION_PROPERTY, served.version)
    pushed.set_int_custom_property(contract.PUSHED_MODEL_ID_PROPERTY, model.id)
    if served.card_path:
        pushed.set_string_custom_property(contract.PUSHED_MODEL_CARD_PROPERTY, served.card_path)
    io_utils.write_string_file(os.path.join(pushed.uri, PUSHED_MARKER_FILE),
                               served.saved_model_path)


def model_cards_dir(serving_dir: str) -> str:
    """`<serving_dir>/model_cards`: beside the versions, never loaded by TF Serving."""
    return model_base.filesystem_for(serving_dir).join(serving_dir, contract.MODEL_CARDS_DIR)


def _first(input_dict: dict[str, list[types.Artifact]], key: str) -> types.Artifact | None:
    artifacts = input_dict.get(key) or []
    return artifacts[0] if artifacts else None


def _uri(input_dict: dict[str, list[types.Artifact]], key: str) -> str | None:
    artifact = _first(input_dict, key)
    return artifact.uri if artifact is not None else None


def write_card(input_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any],
               version: int, paths: list[str], folder: str) -> None:
    """Builds the version's card from the connected artifacts into `folder` (Markdown, HTML,
    JSON). Unreadable artifacts leave gaps the card names; failing to write it fails the push."""
    blessing = artifact_utils.get_single_instance(input_dict[BLESSING_KEY])
    model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
    tflite = input_dict.get(TFLITE_KEY) or []
    converted = bool(tflite) and bool(
        tflite[0].get_int_custom_property(contract.TFLITE_CONVERTED_PROPERTY))
    facts = model_card.collect_facts(
        version=version, model_uri=model.uri, saved_model_path=paths[0],
        tflite_path=paths[1] if len(paths) > 1 else "",
        evaluation_uri=_uri(input_dict, EVALUATION_KEY), blessed=is_blessed(blessing),
        statistics_uri=_uri(input_dict, STATISTICS_KEY),
        model_run_uri=_uri(input_dict, MODEL_RUN_KEY),
        hyperparameters_uri=_uri(input_dict, HYPERPARAMETERS_KEY),
        hyperparameters_source=exec_properties.get(HYPERPARAMETERS_SOURCE_KEY) or None,
        tflite_uri=tflite[0].uri if converted else None)
    if facts["missing"]:
        log.warning("The model card of version %d has gaps: %s", version, facts["missing"])
    model_card.write_model_card(facts, folder)
    log.info("Wrote the model card of version %d", version)


def _lexists(path: str) -> bool:
    try:
        return model_base.filesystem_for(path).exists(path)
    except OSError:
        return False
