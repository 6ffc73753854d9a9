"""``python -m loadtest SCENARIO [options]`` (``livepilot-loadtest``).

Runs a scenario against livepilot and the baselines, one system after the
other, prints the table, and writes ``<results>/<scenario>.json`` and ``.png``.
``all`` runs every scenario with its defaults (or ``--quick`` sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.progress import Progress

from loadtest.env import cpu_steal, machine, pinning, steal_percent
from loadtest.report import Result, save, show
from loadtest.scenarios import SCENARIOS
from loadtest.scenarios.common import SOURCE_ENV, Context
from loadtest.systems import DEFAULT_SYSTEMS, SYSTEMS

__all__ = ["build_parser", "main", "run_scenario"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated, of {', '.join(SYSTEMS)} (default: {','.join(DEFAULT_SYSTEMS)})",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="folder for JSON, PNG and server logs (default: ./results)",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server and the load generator to separate cores",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--livepilot-source",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve livepilot from another checkout (before/after a change)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample each server with py-spy into <results>/profile-*.txt",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livepilot-loadtest",
        description="Load-test livepilot side by side with a raw websockets relay and "
        "python-socketio (see docs/benchmarks.md).",
    )
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name, module in SCENARIOS.items():
        doc = (module.__doc__ or "").strip().splitlines()[0]
        p = sub.add_parser(
            name,
            help=doc,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        _common(p)
    p = sub.add_parser("all", help="every scenario with its default sizes")
    _common(p)
    return parser


async def run_scenario(
    module: ModuleType, opts: argparse.Namespace, console: Console | None = None
) -> Result:
    """Run one scenario module with parsed options; print and save its result."""
    console = console or Console()
    systems = [s.strip() for s in opts.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown systems: {', '.join(unknown)}")
    if opts.livepilot_source is not None:
        os.environ[SOURCE_ENV] = str(opts.livepilot_source.resolve())
    before = machine()
    steal0 = cpu_steal()
    with (
        pinning(not opts.no_pin) as pin,
        Progress(console=console, disable=opts.quiet, transient=True) as progress,
    ):
        ctx = Context(
            pin=pin,
            results=opts.results,
            systems=systems,
            progress=progress,
            say=console.print,
            profile=opts.profile,
        )
        run: Callable[[Context, argparse.Namespace], Awaitable[Result]] = module.run
        result = await run(ctx, opts)
    result.machine = {
        **before,
        "loadavg_after": machine()["loadavg"],
        "steal_percent": steal_percent(steal0, cpu_steal()),
        "pinned": pin.server_core is not None,
        "server_core": pin.server_core,
        "loadgen_core": pin.loadgen_core,
    }
    show(result, console)
    json_path, png = save(result, opts.results)
    console.print(f"wrote {json_path}" + (f" and {png}" if png else ""))
    return result


def _loop_runner() -> Callable[[Awaitable[None]], None]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the loadtest extra
        return lambda aw: asyncio.run(_as_coro(aw))
    return lambda aw: uvloop.run(_as_coro(aw))


async def _as_coro(aw: Awaitable[None]) -> None:
    await aw


def main(argv: Sequence[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=150)
    names = list(SCENARIOS) if opts.scenario == "all" else [opts.scenario]

    async def go() -> None:
        for name in names:
            module = SCENARIOS[name]
            scenario_opts = opts
            if opts.scenario == "all":  # each scenario's defaults, the common flags kept
                scenario_opts = build_parser().parse_args([name])
                for key in ("systems", "results", "no_pin", "quiet", "profile", "livepilot_source"):
                    setattr(scenario_opts, key, getattr(opts, key))
            await run_scenario(module, scenario_opts, console)

    with contextlib.suppress(KeyboardInterrupt):
        _loop_runner()(go())
    sys.stdout.flush()
    return 0
