"""The ``livepilot`` command line: one subcommand per job.

Each subcommand is a pair of small functions: ``_add_<name>(subparsers)`` declares
its arguments and sets ``run`` to ``_run_<name>(args) -> int``, the exit status.
Heavy imports go inside the ``_run_`` function so ``livepilot --help`` stays fast.
To add one, write the pair and list ``_add_<name>`` in :data:`_SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from server.config import Settings

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


# --- livepilot serve / demo / token --------------------------------------------------


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (see server.config.OPTIONS); env vars give the defaults."""
    from server.config import OPTIONS

    group = parser.add_argument_group("settings (flags override LIVEPILOT_* variables)")
    for opt in OPTIONS:
        if opt.flag is None:
            continue
        flags = [opt.flag, "--data"] if opt.name == "data_path" else [opt.flag]
        group.add_argument(*flags, dest=opt.name, default=None, metavar="VALUE",
                           help=f"{opt.meaning} [{opt.env}]")


def _settings(args: argparse.Namespace) -> Settings:
    import os

    from server.config import OPTIONS, load_settings

    overrides = {o.name: getattr(args, o.name, None) for o in OPTIONS if o.flag is not None}
    return load_settings(os.environ, **overrides)


def _add_serve(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the server (embedded SQLite store by default)",
        description="Serve livepilot: WebSocket /ws, the HTTP API, /healthz, /readyz, /metrics.",
    )
    parser.add_argument("--dev", action="store_true",
                        help="allow the public development JWT secret (never in production)")
    _add_settings_flags(parser)
    parser.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    import sys

    from server.admission import raise_fd_limit
    from server.config import ConfigError, unknown_variables
    from server.gctune import tune_gc
    from server.logs import setup_logging
    from server.serve import build_server

    try:
        settings = _settings(args)
    except ConfigError as e:
        print(f"livepilot: {e}", file=sys.stderr)
        return 2
    if settings.is_dev_secret and not args.dev:
        print("livepilot: refusing to start with the development JWT secret; set "
              "LIVEPILOT_JWT_SECRET (32+ bytes) or pass --dev for local use", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    import logging
    import os

    log = logging.getLogger("livepilot")
    if settings.is_dev_secret:
        log.warning("using the public development JWT secret (--dev)")
    for name in unknown_variables(os.environ):
        log.warning("unknown setting in the environment", extra={"variable": name})
    raise_fd_limit()  # before build_server: the default max_connections follows the limit
    server = build_server(settings)
    tune_gc()  # after the app is built: its modules, classes and functions are frozen
    server.run()
    return 0


def _add_demo(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="serve and stream a simulated LIVE room, with tokens to try it",
        description="Serve on the development secret, grant a demo agency access to a demo "
                    "creator and stream a realistic feed into the creator's live room.",
    )
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the simulated feed")
    _add_settings_flags(parser)
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import anyio

    from server.demo import run_demo

    settings = _settings(args)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(lambda: run_demo(settings, duration=args.duration, seed=args.seed))
    return 0


def _add_token(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "token", help="mint a development token for a creator or a staff member",
        description="Print a JWT for LIVEPILOT_JWT_AUDIENCE (`aud`, default livepilot), "
                    "signed with LIVEPILOT_JWT_SECRET (or the dev secret).",
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--creator", metavar="ID", help="a creator's token")
    who.add_argument("--agency", metavar="ID", help="a staff token: the agency (with --staff)")
    parser.add_argument("--staff", metavar="ID", help="the staff member (with --agency)")
    parser.add_argument("--ttl", type=int, default=3600, metavar="SECONDS",
                        help="lifetime in seconds (default 3600)")
    parser.set_defaults(run=_run_token)


def _run_token(args: argparse.Namespace) -> int:
    import os
    import sys
    import time

    from server.auth import mint
    from server.config import load_settings

    if args.agency is not None and args.staff is None:
        print("livepilot token: --agency needs --staff", file=sys.stderr)
        return 2
    settings = load_settings(os.environ)
    print(mint(settings, creator=args.creator, agency=args.agency, staff=args.staff,
               ttl_s=args.ttl, now=time.time_ns() // 1_000_000))
    return 0


# --- the parser --------------------------------------------------------------------


_SUBCOMMANDS: Sequence[Callable[[Subparsers], None]] = (
    _add_serve,
    _add_token,
    _add_demo,
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
