"""The ``livepilot`` command line: one subcommand per job.

Each subcommand is a pair of small functions: ``_add_<name>(subparsers)`` declares
its arguments and sets ``run`` to ``_run_<name>(args) -> int``, the exit status.
Heavy imports go inside the ``_run_`` function so ``livepilot --help`` stays fast.
To add one, write the pair and list ``_add_<name>`` in :data:`_SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

__all__ = ["build_parser", "main"]

Run: TypeAlias = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


# --- livepilot schema --------------------------------------------------------------


def _add_schema(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="write the protocol's JSON Schema, AsyncAPI and error-code docs",
        description=(
            "Generate docs/protocol/livepilot.v1.schema.json, docs/protocol/asyncapi.json "
            "and docs/protocol/errors.md from the protocol package."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs"),
        metavar="DIR",
        help="docs directory to write under (default: ./docs)",
    )
    parser.set_defaults(run=_run_schema)


def _run_schema(args: argparse.Namespace) -> int:
    from protocol.schema import write_schema

    out: Path = args.out
    for path in write_schema(out):
        print(path)
    return 0


# --- the parser --------------------------------------------------------------------


_SUBCOMMANDS: Sequence[Callable[[Subparsers], None]] = (
    _add_schema,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``livepilot`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="livepilot",
        description="livepilot: real-time co-pilot hub for TikTok Shop LIVE.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``livepilot`` with ``argv`` (default: the process's arguments)."""
    args = build_parser().parse_args(argv)
    run: Run = args.run
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
