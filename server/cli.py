"""The ``livepilot`` command line: one subcommand per job.

Each subcommand is a pair of small functions: ``_add_<name>(subparsers)`` declares
its arguments and sets ``run`` to ``_run_<name>(args) -> int``, the exit status.
Heavy imports go inside the ``_run_`` function so ``livepilot --help`` stays fast.
To add one, write the pair and list ``_add_<name>`` in :data:`_SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import socket

    from server.config import Settings
    from server.startup import DataLock

__all__ = ["build_parser", "main"]

Run: TypeAlias = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


# --- livepilot schema --------------------------------------------------------------


def _add_schema(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="write the protocol's JSON Schema, AsyncAPI and error-code docs",
        description=(
            "Generate docs/protocol/livepilot.v1.schema.json, docs/protocol/asyncapi.json, "
            "docs/protocol/errors.md and the consoles' server/web/static/protocol.js from "
            "the protocol package."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs"),
        metavar="DIR",
        help="docs directory to write under (default: ./docs)",
    )
    parser.add_argument(
        "--web",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write the consoles' protocol.js (default: server/web/static)",
    )
    parser.set_defaults(run=_run_schema)


def _run_schema(args: argparse.Namespace) -> int:
    from protocol.schema import json_schema, write_schema
    from server.web.protocol_js import PROTOCOL_JS, write_protocol_js

    out: Path = args.out
    for path in write_schema(out):
        print(path)
    web: Path | None = args.web
    js = PROTOCOL_JS if web is None else web / PROTOCOL_JS.name
    print(write_protocol_js(json_schema(), js))  # the consoles' copy of the contract
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
        group.add_argument(
            *flags, dest=opt.name, default=None, metavar="VALUE", help=f"{opt.meaning} [{opt.env}]"
        )


def _settings(args: argparse.Namespace) -> Settings:
    import os

    from server.config import OPTIONS, load_settings

    overrides = {o.name: getattr(args, o.name, None) for o in OPTIONS if o.flag is not None}
    return load_settings(os.environ, **overrides)


def _source(args: argparse.Namespace, name: str) -> str:
    """Where setting ``name`` came from, for a message: its flag, its variable, or neither."""
    import os

    from server.config import option

    opt = option(name)
    if opt.flag is not None and getattr(args, name, None) is not None:
        return opt.flag
    if opt.env in os.environ:
        return opt.env
    return f"the default of {opt.flag or opt.env}"


def _claim(args: argparse.Namespace, settings: Settings) -> tuple[socket.socket, DataLock | None]:
    """Bind the port, then lock the data path (decision 0019): in that order, so a
    port in use leaves no file behind. Raises StartupError (one line)."""
    from server.startup import bind_listener, lock_data_path

    sock = bind_listener(settings.host, settings.port, setting=_source(args, "port"))
    if settings.data_path == ":memory:" or settings.redis_url is not None:
        return sock, None  # with Redis no data file is opened: nodes share the store
    try:
        return sock, lock_data_path(settings.data_path, setting=_source(args, "data_path"))
    except BaseException:
        sock.close()
        raise


def _add_serve(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the server (embedded SQLite store by default)",
        description="Serve livepilot: WebSocket /ws, the HTTP API, /healthz, /readyz, /metrics.",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="allow the public development JWT secret (never in production)",
    )
    _add_settings_flags(parser)
    parser.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    import sys

    from server.admission import raise_fd_limit
    from server.config import ConfigError, unknown_variables
    from server.gctune import tune_gc
    from server.logs import setup_logging
    from server.serve import build_server
    from server.startup import StartupError

    try:
        settings = _settings(args)
    except ConfigError as e:
        print(f"livepilot: {e}", file=sys.stderr)
        return 2
    if settings.is_dev_secret and not args.dev:
        print(
            "livepilot: refusing to start with the development JWT secret; set "
            "LIVEPILOT_JWT_SECRET (32+ bytes) or pass --dev for local use",
            file=sys.stderr,
        )
        return 2
    try:
        sock, lock = _claim(args, settings)
    except StartupError as e:
        print(f"livepilot: {e}", file=sys.stderr)
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
    try:
        server = build_server(settings)
        tune_gc()  # after the app is built: its modules, classes and functions are frozen
        server.run(sockets=[sock])  # the lock is held until the store is closed
    finally:
        sock.close()
        if lock is not None:
            lock.release()
    return 0


def _add_demo(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="serve and stream a simulated LIVE room, with tokens to try it",
        description="Serve on the development secret, grant a demo agency access to a demo "
        "creator and stream a realistic feed into the creator's live room. The "
        "store is in memory unless --data-path names a file "
        "(LIVEPILOT_DATA_PATH is the server's, and not used here).",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: until Ctrl-C)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the simulated feed")
    _add_settings_flags(parser)
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import sys

    import anyio

    from server.config import ConfigError
    from server.demo import run_demo
    from server.startup import StartupError

    try:
        # A throw-away store unless --data-path names one: a demo's rooms and grants
        # must not turn up in the next `livepilot serve` (LIVEPILOT_DATA_PATH is the
        # server's file, so it does not count here).
        if args.data_path is None:
            args.data_path = ":memory:"
        settings = _settings(args)
        sock, lock = _claim(args, settings)
    except (ConfigError, StartupError) as e:
        print(f"livepilot: {e}", file=sys.stderr)
        return 2
    try:
        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(lambda: run_demo(settings, sock, duration=args.duration, seed=args.seed))
    finally:
        sock.close()
        if lock is not None:
            lock.release()
    return 0


def _add_token(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "token",
        help="mint a development token for a creator or a staff member",
        description="Print a JWT for LIVEPILOT_JWT_AUDIENCE (`aud`, default livepilot), "
        "signed with LIVEPILOT_JWT_SECRET (or, with --dev, the public "
        "development secret).",
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--creator", metavar="ID", help="a creator's token")
    who.add_argument("--agency", metavar="ID", help="a staff token: the agency (with --staff)")
    parser.add_argument("--staff", metavar="ID", help="the staff member (with --agency)")
    parser.add_argument(
        "--ttl",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="lifetime in seconds (default 3600)",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="sign with the public development secret, for `serve --dev`",
    )
    parser.set_defaults(run=_run_token)


def _run_token(args: argparse.Namespace) -> int:
    import os
    import sys
    import time

    from server.auth import mint
    from server.config import ConfigError, load_settings

    def refuse(problem: str) -> int:
        print(f"livepilot token: {problem}", file=sys.stderr)
        return 2

    if args.agency is not None and args.staff is None:
        return refuse("--agency needs --staff")
    if args.creator is not None and args.staff is not None:
        return refuse("--staff goes with --agency, not with --creator")
    if args.ttl <= 0:
        return refuse(f"--ttl must be a positive number of seconds, got {args.ttl}")
    try:
        settings = load_settings(os.environ)
    except ConfigError as e:
        return refuse(str(e))
    if settings.jwt_public_key_path is not None:
        return refuse(
            "LIVEPILOT_JWT_PUBLIC_KEY_PATH is set: that server takes RS256 tokens, "
            "signed by its private key, which this command does not hold"
        )
    if settings.is_dev_secret and not args.dev:
        # The same rule as `serve`: a token signed with the public secret is refused
        # as forged by a server with a real one, and accepted by none that matters.
        return refuse(
            "LIVEPILOT_JWT_SECRET is not set; set it to the server's secret, "
            "or pass --dev to sign for a server started with --dev"
        )
    try:
        token = mint(
            settings,
            creator=args.creator,
            agency=args.agency,
            staff=args.staff,
            ttl_s=args.ttl,
            now=time.time_ns() // 1_000_000,
        )
    except ValueError as e:  # the checks above should leave none; still one line
        return refuse(str(e))
    print(token)
    return 0


# --- livepilot check -----------------------------------------------------------------


def _add_check(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a data file's integrity (exit 0: sound, 1: not, 2: unusable)",
        description="Run SQLite's integrity check on the data file and read its schema "
        "version. Refused while a server holds the data path.",
    )
    parser.add_argument(
        "--data-path",
        "--data",
        dest="data_path",
        default=None,
        metavar="PATH",
        help="the data file [LIVEPILOT_DATA_PATH]",
    )
    parser.set_defaults(run=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    import os
    import sys

    from server.config import option
    from server.log.check import check_data_file
    from server.startup import StartupError, lock_data_path

    data = option("data_path")
    path = str(args.data_path or os.environ.get(data.env) or data.default)
    setting = _source(args, "data_path")
    if path == ":memory:" or not os.path.isfile(path):
        print(f"livepilot: data path {path} ({setting}): no such file", file=sys.stderr)
        return 2
    try:
        lock = lock_data_path(path, setting=setting)
    except StartupError as e:
        print(f"livepilot: {e}", file=sys.stderr)
        return 2
    with lock:
        report = check_data_file(path)
    if report.ok:
        print(report.summary())
        return 0
    print(f"livepilot: {report.summary()}", file=sys.stderr)
    for problem in report.problems[1:]:
        print(f"  {problem}", file=sys.stderr)
    return 1


# --- the parser --------------------------------------------------------------------


_SUBCOMMANDS: Sequence[Callable[[Subparsers], None]] = (
    _add_serve,
    _add_token,
    _add_demo,
    _add_check,
    _add_schema,
)


def _build() -> tuple[argparse.ArgumentParser, Mapping[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="livepilot",
        description="livepilot: real-time co-pilot hub for TikTok Shop LIVE.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser, subparsers.choices


def build_parser() -> argparse.ArgumentParser:
    """The ``livepilot`` argument parser with every subcommand."""
    return _build()[0]


def main(argv: list[str] | None = None) -> int:
    """Run ``livepilot`` with ``argv`` (default: the process's arguments)."""
    parser, commands = _build()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse leaves a subcommand's unknown flags to the top-level parser, whose
        # usage says nothing about them: answer with the subcommand's own usage.
        command = commands[args.command]
        known = [flag for action in command._actions for flag in action.option_strings]
        hint = difflib.get_close_matches(unknown[0].partition("=")[0], known, n=1)
        command.error(
            f"unrecognized arguments: {' '.join(unknown)}"
            + (f" (did you mean {hint[0]}?)" if hint else "")
        )
    run: Run = args.run
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
