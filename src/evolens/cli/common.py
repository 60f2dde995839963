"""Shared pieces of the command line: the Typer app and the consoles."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="evolens",
    help="Layer-by-layer knowledge evolution in vision-language models (logit lens, JSD, critical and mutation layers).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)
out = Console()


def quiet_transformers() -> None:
    """Hide transformers' own progress bars and info logs (the CLI shows its own progress)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
