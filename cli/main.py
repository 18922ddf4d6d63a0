"""`cifar10-tfx`: one entry point for everything the project does (examples in the group's help).

`cifar10-tfx COMMAND --help` shows the options of each command. Usage errors are one line on
stderr, `error: ...`, and exit with status 2; failures exit with status 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from cli import core
from cli.data import download_command
from cli.kubeflow import compile_kfp
from cli.report import report_command
from cli.run import run_command
from cli.serving import download_model_command, predict_command

PROG = "cifar10-tfx"


class Group(click.Group):
    """Commands listed in the order they were added; unknown or missing ones: one line, exit 2."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, context_settings=core.CONTEXT_SETTINGS, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:
            raise core.usage_error(f"a command is required: one of {', '.join(self.commands)} "
                                   f"(see {PROG} --help)")
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name not in self.commands and not name.startswith("-"):
            raise core.usage_error(f"unknown command {name!r}: choose one of "
                                   f"{', '.join(self.commands)} (see {PROG} --help)")
        return super().resolve_command(ctx, args)


@click.group(PROG, cls=Group, help="""The CIFAR-10 TFX pipeline: train, validate, ship and serve.

\b
    cifar10-tfx run --data-dir ~/.cache/cifar10        # the whole pipeline on this machine
    cifar10-tfx download --dest ~/.cache/cifar10       # the official archive, verified
    cifar10-tfx report --output-dir outputs            # Markdown + HTML report of the latest run
    cifar10-tfx predict images/ --rest URL             # ask TF Serving
    cifar10-tfx download-model SRC DEST                # a pushed version, copied locally
    cifar10-tfx compile-kfp ...                        # Kubeflow Pipelines / Vertex AI spec

`cifar10-tfx COMMAND --help` shows the options of each command.""")
def cifar10_tfx() -> None:
    """The group itself does nothing: each command does its own work."""


for _command in (run_command, compile_kfp, download_command, report_command, predict_command,
                 download_model_command):
    cifar10_tfx.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """The `cifar10-tfx` console script; returns the exit code (tests call it in-process)."""
    return core.invoke(cifar10_tfx, argv, PROG)
