"""JSON and MessagePack codecs for protocol v1, negotiated by WebSocket subprotocol.

A :class:`Codec` owns one reused encoder and one decoder per direction. Decoding
never raises anything but :class:`DecodeError`, whose ``code`` (from
:mod:`protocol.errors`) says what was wrong, so the edge can answer with a clear
error and carry on (H6).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, Generic, Literal, TypeVar, cast

import msgspec

from protocol.errors import Code
from protocol.messages import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    ClientMessage,
    ServerMessage,
)
from protocol.model import Id

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "SUBPROTOCOLS",
    "Codec",
    "DecodeError",
    "Format",
    "classify_decode_error",
    "codec_for",
    "negotiate",
    "peek_command_id",
]

DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024
Format = Literal["json", "msgpack"]
SUBPROTOCOLS: Final[dict[str, Format]] = {
    SUBPROTOCOL_JSON: "json",
    SUBPROTOCOL_MSGPACK: "msgpack",
}

T = TypeVar("T")


class DecodeError(Exception):
    """A frame could not be decoded; ``code`` is a bad-request code (100-199)."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def classify_decode_error(exc: msgspec.DecodeError) -> DecodeError:
    """The error code of what msgspec could not decode (bad UTF-8, bad shape, bad JSON)."""
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        # msgspec reports an unknown tag as "Invalid value '<tag>' - at `$.type`". Match
        # the whole shape: the quoted tag (or a nested field's value) is the sender's text.
        if text.startswith("Invalid value ") and text.endswith(" - at `$.type`"):
            return DecodeError(Code.UNKNOWN_TYPE, text)
        return DecodeError(Code.WRONG_FIELD_TYPE, text)
    if "UTF-8" in text or "utf-8" in text:
        return DecodeError(Code.INVALID_UTF8, text)
    return DecodeError(Code.MALFORMED, text)


class _Side(Generic[T]):
    """One reused decoder for one union, with the edge checks around it."""

    __slots__ = ("_decode", "_max", "_text")

    def __init__(self, fmt: Format, union: type[T], max_bytes: int) -> None:
        self._decode: Callable[[bytes | str], T]
        if fmt == "json":
            self._decode = msgspec.json.Decoder(union).decode
        else:  # takes bytes only; __call__ refuses a str (a text frame) before it
            self._decode = cast("Callable[[bytes | str], T]", msgspec.msgpack.Decoder(union).decode)
        self._max = max_bytes
        self._text = fmt == "json"

    def __call__(self, data: bytes | str) -> T:
        if isinstance(data, str) and not self._text:
            raise DecodeError(Code.WRONG_FRAME_TYPE, "text frame on a MessagePack session")
        size = len(data)  # a str has at least as many UTF-8 bytes as characters
        if size <= self._max and isinstance(data, str) and not data.isascii():
            size = len(data.encode("utf-8", "surrogatepass"))
        if size > self._max:
            raise DecodeError(Code.TOO_LARGE, f"frame of {size} bytes exceeds {self._max}")
        try:
            return self._decode(data)
        except msgspec.DecodeError as exc:
            raise classify_decode_error(exc) from None
        except RecursionError:
            # msgspec on 3.11 recurses on nesting; very deep input ends here.
            raise DecodeError(Code.TOO_DEEP, "frame is nested too deeply") from None
        except UnicodeError as exc:  # msgspec lets invalid UTF-8 in bytes escape as this
            raise DecodeError(Code.INVALID_UTF8, str(exc)) from None


class Codec:
    """Encode and decode messages in one format.

    ``binary`` says which WebSocket frame type the format travels in: JSON in
    text frames, MessagePack in binary frames.
    """

    __slots__ = ("binary", "decode_client", "decode_server", "encode", "format", "subprotocol")

    def __init__(self, fmt: Format, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.format: Format = fmt
        self.binary = fmt == "msgpack"
        self.subprotocol = SUBPROTOCOL_JSON if fmt == "json" else SUBPROTOCOL_MSGPACK
        encoder = msgspec.json.Encoder() if fmt == "json" else msgspec.msgpack.Encoder()
        self.encode = encoder.encode
        """Encode any message (or event) to bytes."""
        self.decode_client: _Side[ClientMessage] = _Side(
            fmt,
            ClientMessage,  # type: ignore[arg-type]
            max_message_bytes,
        )
        """Decode a client frame; raises only :class:`DecodeError`."""
        self.decode_server: _Side[ServerMessage] = _Side(
            fmt,
            ServerMessage,  # type: ignore[arg-type]
            max_message_bytes,
        )
        """Decode a server frame (for clients); raises only :class:`DecodeError`."""


@functools.lru_cache(maxsize=16)
def codec_for(subprotocol: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Codec:
    """The codec a negotiated subprotocol names; KeyError if it is not one of ours.

    Shared: a codec holds no per-connection state, and one per session cost
    ~1.8 KB of every idle connection (docs/benchmarks.md).
    """
    return Codec(SUBPROTOCOLS[subprotocol], max_message_bytes)


def negotiate(offered: list[str]) -> str | None:
    """Pick the first subprotocol the client offered that we speak, or None."""
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    return None


class _CommandIdOnly(msgspec.Struct):
    command_id: Id | None = None


_PEEK: Final[dict[Format, Callable[[bytes | str], _CommandIdOnly]]] = {
    "json": msgspec.json.Decoder(_CommandIdOnly).decode,
    # takes bytes only: a str never gets here (the frame type is checked first)
    "msgpack": cast(
        "Callable[[bytes | str], _CommandIdOnly]", msgspec.msgpack.Decoder(_CommandIdOnly).decode
    ),
}


def peek_command_id(codec: Codec, frame: bytes | str, max_bytes: int) -> str | None:
    """A frame's ``command_id`` alone, for answering a frame refused before it is
    decoded (e.g. rate-limited); None when it has none, is bigger than
    ``max_bytes``, or is not an object in the codec's format and frame type."""
    if isinstance(frame, bytes) != codec.binary or len(frame) > max_bytes:
        return None
    try:
        return _PEEK[codec.format](frame).command_id
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return None
