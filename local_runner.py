"""Runs the CIFAR-10 pipeline on this machine: `python local_runner.py` is `cifar10-tfx run`.

    python local_runner.py --data-dir ~/.cache/cifar10          # data already unpacked there
    python local_runner.py                                       # downloads the official archive
"""
import sys

from cli import core
from cli.run import run_command

if __name__ == "__main__":
    sys.exit(core.invoke(run_command, None, "local_runner.py"))
