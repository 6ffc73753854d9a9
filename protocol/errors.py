"""The error and close code table of protocol v1.

One stable number per meaning. The range a number falls in says what a client
should do with it, so a client that meets a code it does not know yet still
behaves correctly:

====================  =========================================================
range                 meaning
====================  =========================================================
``100-199``           bad request: the frame or command is malformed; fix it,
                      do not resend it unchanged (terminal for that message)
``200-299``           access: who you are or what you may do; not retryable
``300-399``           room state: the command does not fit the room as it is
                      now (not live, not found, stale); re-read state, then
                      decide again
``500-599``           transient: retry the same command later (same id)
``4000-4499``         WebSocket close, retryable: reconnect (with backoff) and
                      resume from your last ``seq``
``4500-4999``         WebSocket close, terminal: do not reconnect with the same
                      credentials
====================  =========================================================
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "Code", "describe", "is_retryable"]


class Code(IntEnum):
    """Error codes carried by ``Error`` and ``Refused`` messages."""

    # 100-199 bad request
    BAD_REQUEST = 100
    MALFORMED = 101
    WRONG_FIELD_TYPE = 102
    UNKNOWN_TYPE = 103
    INVALID_UTF8 = 104
    TOO_LARGE = 105
    TOO_DEEP = 106
    WRONG_FRAME_TYPE = 107
    NOT_AUTHENTICATED = 108
    ALREADY_AUTHENTICATED = 109
    NOT_JOINED = 110
    INVALID_ARGUMENT = 111
    COMMAND_ID_REUSED = 112

    # 200-299 access
    FORBIDDEN = 200
    CREATOR_ONLY = 201
    NO_ACCESS = 202
    ACCESS_REVOKED = 203
    OUT_OF_SCOPE = 204
    BAD_TOKEN = 205
    NOT_LINKED = 206
    ALREADY_LINKED = 207
    REQUEST_PENDING = 208
    EXTENSION_PENDING = 209
    ACCESS_PENDING = 210
    REQUEST_EXPIRED = 211
    REQUEST_CLOSED = 212
    CROSS_BORDER_NOT_ALLOWED = 213
    LINK_ENDED = 214
    UNKNOWN_REQUEST = 215
    ALREADY_GRANTED = 216
    FEED_CREATOR_ONLY = 217
    TOO_MANY_PENDING = 218

    # 300-399 room state
    NOT_LIVE = 300
    ALREADY_LIVE = 301
    NOT_FOUND = 302
    ALREADY_EXISTS = 303
    STALE_VERSION = 304
    SOLD_OUT = 305
    SALE_NOT_ACTIVE = 306
    POSITION_OUT_OF_RANGE = 307
    LIMIT_REACHED = 308
    HISTORY_TRUNCATED = 309
    ALREADY_ACTIVE = 310

    # 500-599 transient
    RATE_LIMITED = 500
    OVERLOADED = 501
    INTERNAL = 502
    TOKEN_EXPIRED = 503
    UNAVAILABLE = 504
    ROOM_UNAVAILABLE = 505


class CloseCode(IntEnum):
    """WebSocket close codes. 4000-4499 reconnect, 4500-4999 do not."""

    # retryable
    GOING_AWAY = 4000
    SLOW_CONSUMER = 4001
    RATE_LIMITED = 4002
    TOKEN_EXPIRED = 4003
    OVERLOADED = 4004
    IDLE_TIMEOUT = 4005
    TOO_MANY_CONNECTIONS = 4006

    # terminal
    BAD_TOKEN = 4500
    ACCESS_REVOKED = 4501
    FORBIDDEN = 4502
    BAD_REQUEST = 4503
    ABUSE = 4504
    UNSUPPORTED_PROTOCOL = 4505


_MESSAGES: dict[int, str] = {
    Code.BAD_REQUEST: "the request is not valid",
    Code.MALFORMED: "the frame is not valid JSON or MessagePack",
    Code.WRONG_FIELD_TYPE: "a field is missing or has the wrong type",
    Code.UNKNOWN_TYPE: "unknown message type",
    Code.INVALID_UTF8: "the frame is not valid UTF-8",
    Code.TOO_LARGE: "the frame exceeds the maximum message size",
    Code.TOO_DEEP: "the frame is nested too deeply",
    Code.WRONG_FRAME_TYPE: "binary frame on a JSON session or text frame on a MessagePack one",
    Code.NOT_AUTHENTICATED: "send hello with a token first",
    Code.ALREADY_AUTHENTICATED: "this session is already authenticated",
    Code.NOT_JOINED: "join the room before sending commands to it",
    Code.INVALID_ARGUMENT: "an argument is out of its allowed range",
    Code.COMMAND_ID_REUSED: (
        "this command_id was already used by another actor or for another command"
    ),
    Code.FORBIDDEN: "this actor may not do that",
    Code.CREATOR_ONLY: "only the creator may do that",
    Code.NO_ACCESS: "no LIVE Manager access to this creator",
    Code.ACCESS_REVOKED: "LIVE Manager access was revoked",
    Code.OUT_OF_SCOPE: "the grant does not cover this command family",
    Code.BAD_TOKEN: "the token is missing, forged or malformed",
    Code.NOT_LINKED: "the agency and the creator are not linked",
    Code.ALREADY_LINKED: "the agency and the creator are already linked",
    Code.REQUEST_PENDING: "a request of this kind is already pending",
    Code.EXTENSION_PENDING: "a link extension request is pending",
    Code.ACCESS_PENDING: "a LIVE access request is pending",
    Code.REQUEST_EXPIRED: "the request expired before it was answered",
    Code.REQUEST_CLOSED: "the request was already answered",
    Code.CROSS_BORDER_NOT_ALLOWED: (
        "cross-border agencies need a commission- or data-sharing relationship"
    ),
    Code.LINK_ENDED: "the link has ended",
    Code.UNKNOWN_REQUEST: "no such request",
    Code.ALREADY_GRANTED: "access is already granted",
    Code.FEED_CREATOR_ONLY: "only the creator client feeds platform activity",
    Code.TOO_MANY_PENDING: (
        "the agency has too many requests pending; wait for answers (the cap is documented)"
    ),
    Code.NOT_LIVE: "the room is not live",
    Code.ALREADY_LIVE: "the room is already live",
    Code.NOT_FOUND: "no such item",
    Code.ALREADY_EXISTS: "an item with this id already exists",
    Code.STALE_VERSION: "the room changed since expected_version; re-read and retry",
    Code.SOLD_OUT: "the flash sale has not enough stock left",
    Code.SALE_NOT_ACTIVE: "the flash sale is not running",
    Code.POSITION_OUT_OF_RANGE: "the position is outside the bag",
    Code.LIMIT_REACHED: "a room limit is reached (the caps are documented)",
    Code.HISTORY_TRUNCATED: "history no longer covers that seq; reload the snapshot",
    Code.ALREADY_ACTIVE: "already active",
    Code.RATE_LIMITED: "too many messages; slow down and retry",
    Code.OVERLOADED: "the server is overloaded; retry later",
    Code.INTERNAL: "internal error; retry later",
    Code.TOKEN_EXPIRED: "the token expired; refresh it",
    Code.UNAVAILABLE: "the service is unavailable; retry later",
    Code.ROOM_UNAVAILABLE: "this room cannot be read right now; retry later",
    CloseCode.GOING_AWAY: "the server is going away; reconnect and resume",
    CloseCode.SLOW_CONSUMER: "the client did not read fast enough; reconnect and resume",
    CloseCode.RATE_LIMITED: "too many messages; reconnect later",
    CloseCode.TOKEN_EXPIRED: "the token expired; reconnect with a fresh one",
    CloseCode.OVERLOADED: "the server is overloaded; reconnect later",
    CloseCode.IDLE_TIMEOUT: "no traffic within the idle timeout",
    CloseCode.TOO_MANY_CONNECTIONS: "this actor has too many connections open; reconnect later",
    CloseCode.BAD_TOKEN: "the token is missing, forged or malformed",
    CloseCode.ACCESS_REVOKED: "LIVE Manager access was revoked",
    CloseCode.FORBIDDEN: "this page's origin may not connect here",
    CloseCode.BAD_REQUEST: "the client broke the protocol",
    CloseCode.ABUSE: "sustained abuse of the rate limit",
    CloseCode.UNSUPPORTED_PROTOCOL: "no supported subprotocol was offered",
}


def is_retryable(code: int) -> bool:
    """Whether a client should retry (codes) or reconnect (close codes)."""
    return 500 <= code <= 599 or 4000 <= code <= 4499


def describe(code: int) -> str:
    """The one-line meaning of a code, for error messages and docs."""
    return _MESSAGES.get(code, "unknown code")
