"""Ctrl-C during a run: stop at once, say one line, and leave nothing the next run trips on.

SIGTERM (what `timeout`, `docker stop`, systemd and Kubernetes send) is taken the same way.

TFX creates a component's output folders (`<pipeline root>/<node>/<key>/<execution id>`) before
the executor runs and records the execution as RUNNING. Interrupted, those folders stay empty
(an empty `Trainer/model/N`) and the execution stays RUNNING forever; the resumed run makes new
ones. Here the interrupted run's unfinished executions are marked CANCELED and their folders
removed, so no later reader mistakes them for a model or a run in progress.

Beam's DirectRunner in multi-processing mode runs its stages in SDK worker processes, children
of the run in the terminal's process group. Left alone, a Ctrl-C made each of them print a
KeyboardInterrupt traceback, and a SIGINT sent to the run alone (`kill -INT`) left them waiting
for work: the run printed its message and never exited. So the workers ignore SIGINT from their
first instant (cli/beam_worker_site/sitecustomize.py, on the run's PYTHONPATH) and the guard of
the run stops them itself.
"""
from __future__ import annotations

import _thread
import contextlib
import glob
import logging
import os
import shutil
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Collection, Sequence

from cli import logs
from cli.beam_worker_site.sitecustomize import BEAM_SDK_WORKER
from pipeline import configs

log = logging.getLogger(f"{logs.PROJECT_LOGGER}.run")
_RETRY_SECONDS = 0.5
_STOP_SECONDS = 5.0  # SIGTERM, then SIGKILL for a worker still there after this long
BEAM_WORKER_SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "beam_worker_site")


def ignore_ctrl_c_in_beam_workers() -> None:
    """Puts BEAM_WORKER_SITE first on PYTHONPATH, which the processes this one starts inherit
    (Beam starts its workers with this process's environment): they ignore SIGINT at once."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if BEAM_WORKER_SITE not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([BEAM_WORKER_SITE, *paths])


def stop_beam_workers(timeout_s: float = _STOP_SECONDS) -> int:
    """Ends the Beam SDK worker processes below this one (SIGTERM: no traceback); returns how
    many there were. Nothing else is touched: only processes that run BEAM_SDK_WORKER."""
    import psutil

    workers = []
    for process in psutil.Process().children(recursive=True):
        try:
            if any(BEAM_SDK_WORKER in part for part in process.cmdline()):
                process.terminate()
                workers.append(process)
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    if not _ended(workers, timeout_s):
        for process in workers:
            with contextlib.suppress(psutil.Error):
                process.kill()
        _ended(workers, timeout_s)
    return len(workers)


def _stop_beam_workers_quietly() -> None:
    """stop_beam_workers, best effort: the interrupt must go on whatever happens here."""
    try:
        stop_beam_workers()
    except Exception as error:  # noqa: BLE001
        log.warning("could not stop the Beam workers (%s)", error)


def _ended(processes: Sequence, timeout_s: float) -> bool:
    """Waits until every process has ended, without reaping: Beam's own threads wait for
    (and reap) the workers they started, and must see how each ended."""
    import psutil

    def ended(process: psutil.Process) -> bool:
        try:
            return process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + timeout_s
    while not all(map(ended, processes)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class _OwnLinesOnly(logging.Filter):
    """After a Ctrl-C: Beam's threads and workers report, at ERROR, the connections the stop
    broke; only the project's own records still pass. Once the guard has closed, the threads
    the stopped run left behind (Beam's data-plane reader, which sees its stream break as the
    workers end) stay quiet; every other thread's records pass again."""

    def __init__(self, pressed: threading.Event) -> None:
        super().__init__()
        self._pressed = pressed
        self._closed = False
        # The threads the stopped run left (the Thread objects: an ident is reused once its
        # thread ends), held weakly: once they are gone, nothing is held back any more.
        self._quiet_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    def keep_quiet(self, threads: Collection[threading.Thread]) -> None:
        """From now on, only `threads` are held back (the guard has closed)."""
        self._quiet_threads = weakref.WeakSet(threads)
        self._closed = True

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._pressed.is_set() or record.name.startswith(logs.PROJECT_LOGGER):
            return True
        # Called in the thread that logs.
        return self._closed and threading.current_thread() not in self._quiet_threads


def _quiet_for(threads: Collection[threading.Thread],
               hook: Callable[[threading.ExceptHookArgs], object]) -> Callable:
    """A threading.excepthook that drops what `threads` raise and hands the rest to `hook`."""
    quiet = weakref.WeakSet(threads)

    def excepthook(args: threading.ExceptHookArgs) -> None:
        if args.thread not in quiet:
            hook(args)

    return excepthook


class InterruptGuard:
    """Ctrl-C that cannot be lost, and that stops Beam's worker processes.

    A KeyboardInterrupt raised inside a weakref callback or a __del__ is printed as "Exception
    ignored" and dropped by Python (measured: the run then went on and pushed). While a Ctrl-C
    has not reached the `except KeyboardInterrupt` of the run, a watcher thread stops the Beam
    SDK workers and raises it again in the main thread every half second. From the Ctrl-C on,
    what the dying stage's threads print (exceptions in threads, broken connections logged by
    Beam) is dropped, for as long as the guard is open; a thread the stopped run left behind
    (Beam's `run_worker`, which raises once it reaps a stopped worker, or its data-plane reader,
    which logs the broken stream) stays quiet after it.

        with InterruptGuard() as guard:
            try:
                ...
            except KeyboardInterrupt:
                guard.caught()
    """

    def __init__(self) -> None:
        self._pressed = threading.Event()
        self.signal_number: int | None = None  # the first stop signal: SIGINT or SIGTERM
        self._done = threading.Event()
        self._caught = False
        self._previous = None
        self._previous_term = None
        self._unraisable_hook = sys.unraisablehook
        self._thread_hook = threading.excepthook
        self._filter = _OwnLinesOnly(self._pressed)
        self._handlers: list[logging.Handler] = []
        self._watcher: threading.Thread | None = None
        self._threads_before: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    def _unraisable(self, unraisable) -> None:
        """The dropped Ctrl-C is re-raised by the watcher: no "Exception ignored" traceback."""
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            self._unraisable_hook(unraisable)

    def _thread_exception(self, args) -> None:
        """A thread that fails because the run is stopping is no news."""
        if not self._pressed.is_set():
            self._thread_hook(args)

    def _handler(self, signum, frame) -> None:
        if self._caught:  # already on its way out: the cleanup must not be interrupted
            return
        if self.signal_number is None:
            self.signal_number = signum
            # The workers first: unwinding, Beam closes the servers they talk to, and a worker
            # still there prints its broken connections (gRPC's "Cancelling all calls"). This
            # blocks the main thread until they have ended (the watcher, woken by the event,
            # may be stopping the same workers: either way they end before Beam unwinds).
            self._pressed.set()
            _stop_beam_workers_quietly()
        self._pressed.set()  # a simulated re-raise, or a second signal
        raise KeyboardInterrupt

    def _watch(self) -> None:
        while not self._done.wait(_RETRY_SECONDS):
            if self._pressed.is_set() and not self._caught:
                _stop_beam_workers_quietly()  # each time: a stage may have started more
                _thread.interrupt_main(signal.SIGINT)  # runs _handler in the main thread

    def caught(self) -> None:
        """Call first thing in the `except KeyboardInterrupt`: no more re-raising."""
        self._caught = True

    def __enter__(self) -> InterruptGuard:
        self._previous = signal.signal(signal.SIGINT, self._handler)
        self._previous_term = signal.signal(signal.SIGTERM, self._handler)
        self._unraisable_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        self._thread_hook, threading.excepthook = threading.excepthook, self._thread_exception
        self._threads_before = weakref.WeakSet(threading.enumerate())
        self._handlers = list(logging.getLogger().handlers)
        for handler in self._handlers:
            handler.addFilter(self._filter)
        self._watcher = threading.Thread(target=self._watch, name="interrupt-guard", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc_info) -> None:
        # The watcher first: a SIGINT it simulates after this guard gave the handler back
        # would surface later, outside the run's `except KeyboardInterrupt`.
        self._done.set()
        self._watcher.join()
        self._caught = True  # one it simulated just now runs _handler below, which returns
        try:
            if self._pressed.is_set():  # whatever the watcher has not stopped yet
                _stop_beam_workers_quietly()
        finally:
            signal.signal(signal.SIGINT, self._previous)
            signal.signal(signal.SIGTERM, self._previous_term)
            sys.unraisablehook = self._unraisable_hook
            leftovers = [thread for thread in threading.enumerate()
                         if thread not in self._threads_before]
            if self._pressed.is_set():  # what the stopped run left behind stays quiet
                threading.excepthook = _quiet_for(leftovers, self._thread_hook)
                self._filter.keep_quiet(leftovers)
            else:
                threading.excepthook = self._thread_hook
                for handler in self._handlers:
                    handler.removeFilter(self._filter)


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
    from ml_metadata.proto import metadata_store_pb2

    from reports import runs

    if not os.path.exists(config.metadata_path):
        return []
    store = runs.writable_store(config.metadata_path)
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
