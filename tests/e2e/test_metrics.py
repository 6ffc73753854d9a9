"""/metrics, /healthz and /readyz over HTTP against a running app."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from protocol import commands as c
from protocol.messages import Ack, Refused
from server.config import Settings
from tests.e2e.conftest import raw_client, run_server


async def test_metrics_count_commands_connections_and_rooms(
    make_settings: Callable[..., Settings],
) -> None:
    """Commands by type and result, connections and rooms show on /metrics."""
    async with run_server(make_settings()) as srv:
        base = f"http://127.0.0.1:{srv.settings.port}"
        async with raw_client(srv, srv.token(creator="cr")) as raw, httpx.AsyncClient() as http:
            await raw.send(c.StartLive(command_id="go", room="cr"))
            await raw.expect(Ack)
            await raw.send(c.StartLive(command_id="again", room="cr"))
            await raw.expect(Refused)
            text = (await http.get(f"{base}/metrics")).text
            assert 'livepilot_commands_total{result="ok",type="start_live"} 1.0' in text
            assert 'livepilot_commands_total{result="ALREADY_LIVE",type="start_live"} 1.0' in text
            assert "livepilot_connections 1.0" in text
            assert "livepilot_rooms 1.0" in text
            assert (await http.get(f"{base}/healthz")).json() == {"status": "ok"}
            ready = (await http.get(f"{base}/readyz")).json()
            assert (ready["status"], ready["connections"], ready["rooms"]) == ("ready", 1, 1)
