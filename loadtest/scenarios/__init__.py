"""The scenarios, by name: each module has ``add_arguments(parser)`` and
``async run(ctx, opts) -> Result``."""

from __future__ import annotations

from types import ModuleType

from loadtest.scenarios import durable, fanout, idle, relay, revoke

__all__ = ["SCENARIOS"]

SCENARIOS: dict[str, ModuleType] = {
    "fanout": fanout,
    "relay": relay,
    "idle": idle,
    "durable": durable,
    "revoke": revoke,
}
