"""Leaves Ctrl-C to the run in Beam's SDK worker processes, from their first instant.

A local run puts this folder on PYTHONPATH (cli.interrupted.ignore_ctrl_c_in_beam_workers), so
Python imports this module at start-up in every process the run starts. Beam's DirectRunner
starts its SDK workers itself (`/bin/sh -c "python -m <BEAM_SDK_WORKER>"`), in the terminal's
process group: without this, a Ctrl-C made each of them print a KeyboardInterrupt traceback
(while they import Beam, for seconds). In those workers, and only there, SIGINT is ignored; the
run's InterruptGuard ends them. This file stays standard-library only: it runs in every child.
"""
import importlib.machinery
import importlib.util
import os
import signal
import sys

# The module the DirectRunner starts its workers with (cli.interrupted reads it from here).
BEAM_SDK_WORKER = "apache_beam.runners.worker.sdk_worker_main"


def _chain_shadowed() -> None:
    """Runs the sitecustomize this one hides on sys.path, if the Python install has one."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if __name__ == "sitecustomize":  # at start-up only, not when cli.interrupted reads the constant
    if BEAM_SDK_WORKER in getattr(sys, "orig_argv", ()):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _chain_shadowed()
