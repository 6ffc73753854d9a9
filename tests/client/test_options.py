"""ClientOptions: one frozen value, built by Client and completed by connect()."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from client import DEFAULT_TIMEOUT, Backoff, Client, ClientOptions
from tests.client.fakehub import BOUND, FakeHub, Sleeps, new_client


def test_options_are_frozen_and_copy_connect_options() -> None:
    """ClientOptions cannot change, and keeps a read-only copy of connect_options."""
    given: dict[str, object] = {"proxy": None}
    options = ClientOptions(connect_options=given)
    given["ssl"] = True
    assert dict(options.connect_options) == {"proxy": None}
    with pytest.raises(TypeError):
        options.connect_options["ssl"] = True  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.url = "ws://elsewhere/ws"  # type: ignore[misc]


def test_client_builds_its_options_from_its_arguments() -> None:
    """Client's keyword arguments are its options; the defaults are ClientOptions'."""
    assert Client().options == ClientOptions()
    client = Client(client_name="tests", request_timeout=None, heartbeat=False)
    assert (client.options.client_name, client.options.request_timeout) == ("tests", None)
    assert client.options.heartbeat is False
    assert ClientOptions().request_timeout == DEFAULT_TIMEOUT


async def test_connect_completes_the_options(hub: FakeHub, sleeps: Sleeps) -> None:
    """connect() sets the url, format, reconnect and backoff of the client's options."""
    backoff = Backoff(initial=0.25)
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good", format="msgpack", reconnect=False, backoff=backoff)
        options = client.options
        assert (options.url, options.format, options.reconnect) == (hub.url, "msgpack", False)
        assert options.backoff is backoff
        assert options.sleep is sleeps
