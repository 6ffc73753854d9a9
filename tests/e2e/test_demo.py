"""The demo's simulated creator client, against a real server."""

from __future__ import annotations

import random
import shlex
import sys

from client import Client
from server.config import load_settings
from server.demo import CREATOR, PRODUCTS, STAFF, _banner, feed, grant_demo_access
from server.runtime import wall_clock
from tests.e2e.conftest import Server


async def test_demo_creator_client_goes_live_and_streams_a_feed(server: Server) -> None:
    """The demo grants the agency, goes live, stocks the bag and streams acked activity."""
    # R1 R5 R13
    runtime = server.runtime
    await grant_demo_access(runtime)
    await grant_demo_access(runtime)  # idempotent: a rerun keeps the one grant
    assert runtime.access.grant_for(STAFF.agency or "", CREATOR.id, server.clock()) is not None
    async with Client() as client:
        await client.connect(server.url, server.token(creator=CREATOR.id))
        sent = await feed(client, CREATOR.id, random.Random(7), 60, lambda: 0.0)
        assert sent == 60
    state = (await runtime.hub.room(CREATOR.id)).state
    assert state.status == "live"
    assert [i.product_id for i in state.bag] == [p.product_id for p in PRODUCTS]
    assert state.current is not None
    figures = state.current
    activity = figures.comments + figures.orders + figures.follows + figures.gifts
    assert activity > 0
    assert figures.peak_viewers > 0


def test_demo_console_snippet_runs_the_interpreter_running_livepilot() -> None:
    """The console snippet the demo prints runs this interpreter, not whatever `python` is."""
    banner = _banner(load_settings({}), 18080, wall_clock())
    assert f"\n  {shlex.quote(sys.executable)} - <<'PY'\n" in banner
    assert "  python - <<" not in banner
    assert "ws://127.0.0.1:18080/ws" in banner  # the port it is bound to
