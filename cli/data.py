"""`cifar10-tfx download`: the official CIFAR-10 binary archive, downloaded, verified, unpacked."""
from __future__ import annotations

import logging

import click

from cli.core import Command, Failure, Float, Int, usage_error
from dataset import download as dl
from modules import contract


@click.command("download", cls=Command,
               short_help="download, verify and unpack the official CIFAR-10 binary archive",
               help="Download, verify and unpack the official CIFAR-10 binary archive. Prints "
                    f"the path of the unpacked {contract.BATCHES_DIR} folder.")
@click.option("--dest", default=contract.DEFAULT_DATA_DIR,
              help="folder to download and unpack into")
@click.option("--url", default=dl.OFFICIAL_URL, show_default=False,
              help="archive URL (default: official)")
@click.option("--md5", default=dl.OFFICIAL_MD5, show_default=False,
              help="expected MD5 of the archive (default: official)")
@click.option("--size", type=Int(1), default=None,
              help="expected size in bytes (default: the official size for the official URL, "
                   "unchecked for any other URL)")
@click.option("--timeout", type=Float(positive=True), default=60.0,
              help="network timeout in seconds")
@click.option("--quiet", is_flag=True, help="no progress messages")
def download_command(dest: str, url: str, md5: str, size: int | None, timeout: float,
                     quiet: bool) -> int:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    try:
        dl.check_url(url)  # a flag error: nothing is created before it is refused
    except dl.DownloadError as error:
        raise usage_error(f"argument --url: {error}") from None
    if size is None and url == dl.OFFICIAL_URL:
        size = dl.OFFICIAL_SIZE
    try:
        folder = dl.download_cifar10(dest, url=url, expected_md5=md5, expected_size=size,
                                     timeout=timeout, progress=not quiet)
    except dl.DownloadError as error:
        raise Failure(str(error)) from None
    except KeyboardInterrupt:
        click.echo("interrupted: run the command again to resume the download", err=True)
        return 130
    print(folder)
    return 0
