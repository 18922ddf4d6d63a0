"""What every command shares: one-line usage errors, exit codes, and sectioned --help.

Click's own handling prints the usage block and a message over several lines; here a usage error
is ONE line on stderr, `error: <message>`, with exit code 2, worded as the argparse-based
commands of earlier versions worded them (scripts and tests match on those words).
"""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import click
from click.core import ParameterSource

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100,
                    "show_default": True}


class Int(click.ParamType):
    """An integer, optionally with a floor, refused in argparse's words."""

    name = "integer"

    def __init__(self, minimum: int | None = None, why: str = ""):
        self.minimum, self.why = minimum, why

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"invalid int value: {value!r}", param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"invalid value {value!r}: must be at least {self.minimum}{self.why}",
                      param, ctx)
        return number


class Float(click.ParamType):
    """A finite float, optionally strictly positive, refused in argparse's words (inf and nan
    reached the libraries as timeouts and resource limits)."""

    name = "float"

    def __init__(self, positive: bool = False, why: str = ""):
        self.positive, self.why = positive, why

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"invalid float value: {value!r}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"invalid value {value!r}: must be a finite number", param, ctx)
        if self.positive and not number > 0:
            self.fail(f"invalid value {value!r}: must be more than 0{self.why}", param, ctx)
        return number


class Choice(click.Choice):
    """click.Choice that says what argparse said: `invalid choice: 'x' (choose from ...)`."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if value in self.choices:
            return value
        listed = ", ".join(repr(choice) for choice in self.choices)
        self.fail(f"invalid choice: {value!r} (choose from {listed})", param, ctx)


class Option(click.Option):
    """An option that belongs to a --help section (`section="locations"`)."""

    def __init__(self, *args: Any, section: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.section = section


def _flag_name(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return "/".join(param.opts)
    return param.human_readable_name


def env_source(ctx: click.Context | None, param: click.Parameter | None) -> str | None:
    """The environment variable `param`'s value came from, or None (it came from a flag or a
    default): `tfx run create` starts local_runner.py with no flags at all."""
    if ctx is None or not isinstance(param, click.Option) or not param.name or \
            ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return None
    envvar = param.envvar or (f"{ctx.auto_envvar_prefix}_{param.name.upper()}"
                              if ctx.auto_envvar_prefix else None)
    return envvar if isinstance(envvar, str) else None


def describe(error: click.UsageError) -> str:
    """The one-line message for a usage error, in the words argparse used."""
    if isinstance(error, click.NoSuchOption):
        return f"unrecognized arguments: {error.option_name} (see --help)"
    if isinstance(error, click.MissingParameter) and error.param is not None:
        return f"the following arguments are required: {_flag_name(error.param)}"
    if isinstance(error, click.BadParameter) and error.param is not None:
        envvar = env_source(error.ctx, error.param)
        where = f"environment variable {envvar}" if envvar else \
            f"argument {_flag_name(error.param)}"
        return f"{where}: {error.message} (see --help)"
    if isinstance(error, click.BadOptionUsage):
        return f"argument {error.option_name}: expected one argument (see --help)"
    return error.format_message()


class Command(click.Command):
    """Unknown arguments are reported together, after the known ones parsed, as argparse did."""

    collect_unknown = True  # False where a variadic argument would swallow them (predict)

    def __init__(self, *args: Any, **kwargs: Any):
        settings = dict(CONTEXT_SETTINGS)
        if self.collect_unknown:
            settings.update(ignore_unknown_options=True, allow_extra_args=True)
        settings.update(kwargs.pop("context_settings", None) or {})
        super().__init__(*args, context_settings=settings, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        if self.collect_unknown and ctx.args:
            raise click.UsageError(f"unrecognized arguments: {' '.join(ctx.args)} "
                                   "(see --help)", ctx)
        return rest

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Options under their sections' headings, in the order the sections first appear."""
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                title = getattr(param, "section", None) or "Options"
                sections.setdefault(title, []).append(record)
        for title, records in sections.items():
            with formatter.section(title[:1].upper() + title[1:]):
                formatter.write_dl(records)


class UnknownOptionsCommand(Command):
    """For commands with a variadic argument: an unknown option is an error at once."""

    collect_unknown = False


def usage_error(message: str) -> click.UsageError:
    """A bad flag or flag combination: one `error: ...` line and exit code 2."""
    return click.UsageError(message)


class Failure(click.ClickException):
    """The command could not do its job for a reason the user can act on: exit code 1."""

    exit_code = EXIT_FAILURE


def invoke(command: click.Command, argv: Sequence[str] | None, prog_name: str,
           **extra: Any) -> int:
    """Runs a click command or group in-process; every outcome becomes an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
    except click.UsageError as error:
        click.echo(f"error: {describe(error)}", err=True)
        return EXIT_USAGE
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        return error.exit_code
    except click.Abort:
        click.echo("error: interrupted", err=True)
        return EXIT_INTERRUPTED
    return int(result or 0)
