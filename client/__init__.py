"""livepilot async client SDK: operate a creator's LIVE room over one WebSocket at a time.

::

    from client import Client
    from protocol.commands import BagPin

    async with Client() as client:
        await client.connect("ws://hub:8080/ws", token)
        snapshot = await client.join("room-1")
        ack = await client.send(client.command(BagPin, room="room-1", product_id="p1"))
        async for message in client.events("room-1"):
            ...

The client reconnects on retryable closes, resumes joined rooms from their
last ``seq``, resends unanswered commands with their ``command_id`` and
delivers each event once, in order. When it ends, pending calls raise
:class:`ClientClosed` (``SessionClosed`` is the same class under its other name).
"""

from client.backoff import Backoff
from client.client import Client
from client.commands import make_command, new_command_id, with_command_id
from client.connecting import Connecting, connect
from client.errors import (
    AccessEnded,
    ClientClosed,
    ClientError,
    CommandRefused,
    InvalidMessage,
    ServerError,
    SessionClosed,
    close_is_retryable,
)
from client.options import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_TIMEOUT,
    ClientOptions,
    Sleep,
    TokenSource,
)
from client.streams import Subscription

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_TIMEOUT",
    "AccessEnded",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientOptions",
    "CommandRefused",
    "Connecting",
    "InvalidMessage",
    "ServerError",
    "SessionClosed",
    "Sleep",
    "Subscription",
    "TokenSource",
    "close_is_retryable",
    "connect",
    "make_command",
    "new_command_id",
    "with_command_id",
]
