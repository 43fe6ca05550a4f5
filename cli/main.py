"""`python -m core ...` (or `marketplace ...`): the subcommands, registered by concern, and one-line
errors, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import api_commands, catalogue_commands, inference_commands, review_commands, training_commands
from cli.common import CommandError
from core.runtime.terminal import printable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Marketplace browser command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    # The order of `--help`: import, info, search, migrate, train, ship, baselines, review-queue, classify, evaluate, serve, api-key.
    catalogue_commands.add_commands(commands)
    training_commands.add_commands(commands)
    review_commands.add_commands(commands)
    inference_commands.add_commands(commands)
    api_commands.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CommandError as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI promises one line, not a traceback
        print(f"error: {printable(_one_line(error))}", file=sys.stderr)
        return 1


def _one_line(error: Exception) -> str:
    """A database error without the SQL and row values SQLAlchemy appends; anything else with its type."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(error, DBAPIError):
        return f"the database refused the operation: {error.orig}"
    return f"{type(error).__name__}: {error}"
