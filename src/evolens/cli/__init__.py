"""The ``evolens`` command line: thin commands over the Python API.

Each command group lives in its own module of this package and registers itself on :data:`app` when imported
below. Exit codes: 0 on success, 2 on a user error (one clear line, no traceback), 1 on an internal error.
"""

from __future__ import annotations

import logging
import sys

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from evolens.cli.common import app, err_console
from evolens.errors import EvolensError

# Command modules register their commands on ``app`` when imported.
from evolens.cli import core  # noqa: F401  isort: skip
from evolens.cli import run  # noqa: F401  isort: skip
from evolens.cli import viz  # noqa: F401  isort: skip
from evolens.cli import analyze, compare, contrast, decode, detect, embed, patches, skip  # noqa: F401  isort: skip
from evolens.cli import compress  # noqa: F401  isort: skip
from evolens.cli import toy  # noqa: F401  isort: skip


def one_line(message: str) -> str:
    """Collapse a multi-line error message (hub errors have several) into one line."""
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map errors to exit codes (2: user error, 1: internal error)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, standalone_mode=False, prog_name="evolens")
    except EvolensError as err:
        err_console.print(f"error: {one_line(str(err))}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except NoArgsIsHelpError as err:  # ``evolens`` alone, or a group without its command: help, exit 0
        err.show()
        return 0
    except ClickException as err:  # bad option, missing argument...
        err.show()
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception:  # a bug: show it, exit 1
        err_console.print_exception()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
