"""What a run interrupted by Ctrl-C leaves behind, tidied so that the next run starts clean.

TFX creates a component's output folders (`<pipeline root>/<node>/<key>/<execution id>`) before
the executor runs and records the execution as RUNNING. Interrupted, those folders stay empty
(an empty `Trainer/model/N`) and the execution stays RUNNING forever; the resumed run makes new
ones. Here the interrupted run's unfinished executions are marked CANCELED and their folders
removed, so no later reader mistakes them for a model or a run in progress.
"""
from __future__ import annotations

import _thread
import glob
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Collection

from pipeline import configs

log = logging.getLogger("cifar10_tfx.run")
_RETRY_SECONDS = 0.5


class InterruptGuard:
    """Ctrl-C that cannot be lost: a KeyboardInterrupt raised inside a weakref callback or a
    __del__ is printed as "Exception ignored" and dropped by Python (measured: the run then went
    on and pushed). While a Ctrl-C has not reached the `except KeyboardInterrupt` of the run, a
    watcher thread raises it again in the main thread every half second.

        with InterruptGuard() as guard:
            try:
                ...
            except KeyboardInterrupt:
                guard.caught()
    """

    def __init__(self) -> None:
        self._pressed = threading.Event()
        self._done = threading.Event()
        self._caught = False
        self._previous = None
        self._unraisable_hook = sys.unraisablehook

    def _unraisable(self, unraisable) -> None:
        """The dropped Ctrl-C is re-raised by the watcher: no "Exception ignored" traceback."""
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            self._unraisable_hook(unraisable)

    def _handler(self, signum, frame) -> None:
        if self._caught:  # already on its way out: the cleanup must not be interrupted
            return
        self._pressed.set()
        raise KeyboardInterrupt

    def _watch(self) -> None:
        while not self._done.wait(_RETRY_SECONDS):
            if self._pressed.is_set() and not self._caught:
                _thread.interrupt_main(signal.SIGINT)  # runs _handler in the main thread

    def caught(self) -> None:
        """Call first thing in the `except KeyboardInterrupt`: no more re-raising."""
        self._caught = True

    def __enter__(self) -> InterruptGuard:
        self._previous = signal.signal(signal.SIGINT, self._handler)
        self._unraisable_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        threading.Thread(target=self._watch, name="interrupt-guard", daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._caught = True
        self._done.set()
        signal.signal(signal.SIGINT, self._previous)
        sys.unraisablehook = self._unraisable_hook


def clean_up(config: configs.PipelineConfig, earlier_runs: Collection[str]) -> list[str]:
    """Cancels the unfinished executions of runs not in `earlier_runs`; returns removed folders.

    Never raises: a second Ctrl-C or a store it cannot open must not hide the first message.
    """
    try:
        return _clean_up(config, earlier_runs)
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 (best effort, on the way out)
        log.warning("could not tidy the interrupted run (%s); the next run still resumes", error)
        return []


def _clean_up(config: configs.PipelineConfig, earlier_runs: Collection[str]) -> list[str]:
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from reports import runs

    if not os.path.exists(config.metadata_path):
        return []
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config.metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    store = metadata_store.MetadataStore(connection)
    unfinished = (metadata_store_pb2.Execution.RUNNING, metadata_store_pb2.Execution.NEW)
    removed: list[str] = []
    root = os.path.realpath(config.pipeline_root)
    for run in runs.pipeline_runs(store):
        if run.name in earlier_runs:
            continue
        for execution in store.get_executions_by_context(run.id):
            if execution.last_known_state not in unfinished:
                continue
            node = runs.node_id(execution, store)
            for folder in glob.glob(os.path.join(glob.escape(config.pipeline_root),
                                                 glob.escape(node), "*", str(execution.id))):
                # Only this execution's own output folders, inside the pipeline root.
                if os.path.realpath(folder).startswith(root + os.sep) \
                        and not os.path.islink(folder):
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
            execution.last_known_state = metadata_store_pb2.Execution.CANCELED
            store.put_executions([execution])
    return removed
