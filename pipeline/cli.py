"""`cifar10-tfx`: one entry point for everything the project does; each command delegates.

    cifar10-tfx run --data-dir ~/.cache/cifar10        # local_runner.py: the whole pipeline
    cifar10-tfx download --dest ~/.cache/cifar10       # the official archive, verified
    cifar10-tfx report --output-dir outputs            # Markdown + HTML report of the latest run
    cifar10-tfx predict images/ --rest URL             # ask TF Serving (serving/cli.py predict)
    cifar10-tfx download-model SRC DEST                # a pushed version (serving/download_model)
    cifar10-tfx compile-kfp ...                        # Kubeflow spec (kubeflow_runner.py)

`cifar10-tfx COMMAND --help` shows the options of each command.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence


def _run(argv: list[str]) -> int:
    import local_runner

    return local_runner.main(argv)


def _download(argv: list[str]) -> int:
    from pipeline import download

    return download.main(argv)


def _report(argv: list[str]) -> int:
    from pipeline import report

    return report.main(argv)


def _predict(argv: list[str]) -> int:
    from serving import cli

    return cli.main(["predict", *argv])


def _download_model(argv: list[str]) -> int:
    from serving import download_model

    return download_model.main(argv)


def _compile_kfp(argv: list[str]) -> int:
    import kubeflow_runner

    return kubeflow_runner.main(argv)


COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "run": ("run the pipeline on this machine (LocalDagRunner)", _run),
    "download": ("download, verify and unpack the official CIFAR-10 binary archive", _download),
    "report": ("write a Markdown and HTML report of a pipeline run", _report),
    "predict": ("classify images with a model behind TF Serving", _predict),
    "download-model": ("copy a pushed model version to a local model base path", _download_model),
    "compile-kfp": ("compile the pipeline for Kubeflow Pipelines", _compile_kfp),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: cifar10-tfx COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (help_text, _) in COMMANDS.items()]
    lines += ["", "Run `cifar10-tfx COMMAND --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        return int(COMMANDS[command][1](rest) or 0)
    except SystemExit as exit_:  # argparse --help/usage errors and runner errors exit this way
        code = exit_.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            return 1
        return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
