"""Errors the client SDK raises; all derive from :class:`ClientError`.

Codes come from :mod:`protocol.errors`: their range says whether a retry can help.
"""

from __future__ import annotations

from typing import Final

from protocol.errors import describe, is_retryable

__all__ = [
    "CLIENT_CLOSED",
    "CLIENT_FAILURE",
    "LOST",
    "PROTOCOL_ERROR",
    "AccessEnded",
    "ClientClosed",
    "ClientError",
    "CommandRefused",
    "InvalidMessage",
    "ServerError",
    "SessionClosed",
    "close_is_retryable",
]

# Standard WebSocket close codes the client reports itself in ClientClosed.code.
CLIENT_CLOSED: Final = 1000
"""The client was closed by its owner (or closed the connection, after it ended)."""
PROTOCOL_ERROR: Final = 1002
"""The server broke the protocol during the handshake."""
LOST: Final = 1006
"""The connection was lost without a close frame, or could not be opened."""
CLIENT_FAILURE: Final = 1011
"""A bug in the client ended it."""

# Standard WebSocket close codes after which reconnecting would only repeat the fault.
_TERMINAL_STANDARD_CLOSES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})


def close_is_retryable(code: int) -> bool:
    """Whether a client should reconnect after the connection closed with ``code``.

    4000-4499 reconnect and 4500-4999 do not (:mod:`protocol.errors`). Among the
    standard codes, protocol, data, policy and size violations (1002, 1003, 1007,
    1008, 1009, 1010) are terminal; any other code, including 1006 (the connection
    was lost without a close frame), means reconnect.
    """
    if 4000 <= code <= 4999:
        return is_retryable(code)
    return code not in _TERMINAL_STANDARD_CLOSES


class ClientError(Exception):
    """Base of every error the client SDK raises."""


class CommandRefused(ClientError):
    """The server refused a command (``Refused``); nothing changed in the room.

    ``retryable`` is true for transient codes (500-599): send the same command
    again, with the same ``command_id``, later.
    """

    def __init__(self, command_id: str, code: int, message: str = "") -> None:
        super().__init__(f"command {command_id} refused: {code} {message or describe(code)}")
        self.command_id = command_id
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        """Whether sending the same command again later may succeed."""
        return is_retryable(self.code)


class ServerError(ClientError):
    """The server answered a request with an ``Error`` (a command gets ``Refused`` instead)."""

    def __init__(self, code: int, message: str = "", *, retryable: bool = False) -> None:
        super().__init__(f"server error {code}: {message or describe(code)}")
        self.code = code
        self.message = message
        self.retryable = retryable


class InvalidMessage(ClientError, ValueError):
    """A message was not sent because the server would reject it as malformed.

    ``code`` is a bad-request code (100-199) from :mod:`protocol.errors`.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"invalid message ({code}): {message}")
        self.code = code
        self.message = message


class AccessEnded(ClientError):
    """The agency's access to a creator ended: the client left that creator's room.

    Raised by the room's event stream (:meth:`~client.client.Client.events`)
    after its last event, and by a join of the room still waiting. The client
    itself goes on: other rooms keep streaming. ``status`` is ``revoked``,
    ``unlinked`` or ``expired`` (the link's end date). A new grant is needed
    before the room can be joined again; joining meanwhile raises
    :class:`ServerError` with code 202 (no access).
    """

    def __init__(self, room: str, creator: str, agency: str, status: str) -> None:
        super().__init__(f"left room {room}: access of {agency} to {creator} {status}")
        self.room = room
        self.creator = creator
        self.agency = agency
        self.status = status


class ClientClosed(ClientError):
    """The client ended; no more messages will be received on it.

    ``code`` is the WebSocket close code (``1006`` when the connection was lost
    or could not be opened, the HTTP status when the handshake was refused, the
    ``Error`` code when the server refused ``hello``). ``retryable`` says
    whether a new client with the same credentials may succeed: false for a
    terminal close (4500-4999), an access revocation or a bad token.

    Also exported as :data:`SessionClosed`, the same class.
    """

    def __init__(self, code: int, reason: str = "", *, retryable: bool = False) -> None:
        super().__init__(f"session closed: {code} {reason or describe(code)}")
        self.code = code
        self.reason = reason
        self.retryable = retryable


SessionClosed = ClientClosed
"""Another public name of :class:`ClientClosed` (the same class): catching either works.

The SDK's own code says ``ClientClosed``: on the server a *session* is one
connection, while this error ends a client across all of its connections.
"""
