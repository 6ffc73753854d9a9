"""The codecs: every message round-trips, and bad input gets a clear code (H6)."""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import (
    DEFAULT_MAX_MESSAGE_BYTES,
    SUBPROTOCOLS,
    Codec,
    DecodeError,
    Format,
    classify_decode_error,
    codec_for,
    negotiate,
)
from protocol.commands import Hello, Join, LiveEventEdit, Ping
from protocol.errors import Code
from protocol.messages import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, Pong
from protocol.schema import client_message_types, server_message_types, tag_of
from tests.protocol import frames
from tests.protocol.strategies import message_of

CLIENT_TYPES = client_message_types()
SERVER_TYPES = server_message_types()
ALL_TYPES = CLIENT_TYPES + SERVER_TYPES
TAGS = [tag_of(cls) for cls in ALL_TYPES]
FORMATS: tuple[Format, ...] = ("json", "msgpack")
BIG = 1 << 24
"""A max size that never gets in the way of a round trip or a deep frame."""
CODECS = {fmt: Codec(fmt, max_message_bytes=BIG) for fmt in FORMATS}
DEFAULT_CODECS = {fmt: Codec(fmt) for fmt in FORMATS}

Decode = Callable[[bytes | str], Any]
SIDES: list[Decode] = [
    side for codec in DEFAULT_CODECS.values() for side in (codec.decode_client, codec.decode_server)
]


def fuzz(examples: int) -> Any:
    """Hypothesis settings for a fuzz test of ``examples`` frames."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def encode(fmt: Format, value: object) -> bytes:
    """Encode any value (not only messages) in a format."""
    return msgspec.json.encode(value) if fmt == "json" else msgspec.msgpack.encode(value)


def code_of(decode: Decode, frame: bytes | str) -> Code:
    """The code a frame is refused with; fails if it is accepted."""
    with pytest.raises(DecodeError) as info:
        decode(frame)
    return info.value.code


def decode_everywhere(frame: bytes | str) -> None:
    """Decode a frame with every decoder: it decodes or raises DecodeError (H6).

    Any other exception propagates and fails the calling test.
    """
    for decode in SIDES:
        outcome: object
        try:
            outcome = decode(frame)
        except DecodeError as exc:
            outcome = exc
        if isinstance(outcome, DecodeError):
            assert 100 <= outcome.code <= 199, outcome.code  # a bad-request code
            assert outcome.message
        else:
            assert isinstance(outcome, ALL_TYPES)


# --- round trips -----------------------------------------------------------------


@pytest.mark.parametrize("cls", CLIENT_TYPES, ids=tag_of)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_client_message_round_trips(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    """Every client message decodes to itself in JSON (bytes and str) and MessagePack."""
    message = data.draw(message_of(cls))
    for codec in CODECS.values():
        frame = codec.encode(message)
        assert codec.decode_client(frame) == message
    json_codec = CODECS["json"]
    assert json_codec.decode_client(json_codec.encode(message).decode()) == message


@pytest.mark.parametrize("cls", SERVER_TYPES, ids=tag_of)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_server_message_round_trips(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    """Every server message decodes to itself in JSON (bytes and str) and MessagePack."""
    message = data.draw(message_of(cls))
    for codec in CODECS.values():
        frame = codec.encode(message)
        assert codec.decode_server(frame) == message
    json_codec = CODECS["json"]
    assert json_codec.decode_server(json_codec.encode(message).decode()) == message


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_side_knows_only_its_own_messages(fmt: Format) -> None:
    """A server message sent to the server is an unknown type, and vice versa."""
    codec = DEFAULT_CODECS[fmt]
    assert code_of(codec.decode_client, codec.encode(Pong())) == Code.UNKNOWN_TYPE
    assert code_of(codec.decode_server, codec.encode(Ping())) == Code.UNKNOWN_TYPE


def test_every_int_json_accepts_fits_in_msgpack() -> None:
    """A message the JSON codec accepts can be re-encoded for a MessagePack client."""
    frame = (
        b'{"type":"live_event_edit","command_id":"c","room":"r","event_id":"e",'
        b'"starts_at":' + str(2**64).encode() + b"}"
    )
    try:
        message = DEFAULT_CODECS["json"].decode_client(frame)
    except DecodeError:
        return  # refused at the edge: fine
    assert isinstance(message, LiveEventEdit)
    DEFAULT_CODECS["msgpack"].encode(message)


# --- negotiation -----------------------------------------------------------------


def test_negotiate_picks_the_first_supported_subprotocol() -> None:
    """negotiate() returns the client's first offer that we speak, else None."""
    assert negotiate(["chat", SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON]) == SUBPROTOCOL_MSGPACK
    assert negotiate([SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK]) == SUBPROTOCOL_JSON
    assert negotiate(["chat", "livepilot.v2.json"]) is None
    assert negotiate([]) is None


@pytest.mark.parametrize(
    ("name", "binary"), [(SUBPROTOCOL_JSON, False), (SUBPROTOCOL_MSGPACK, True)]
)
def test_codec_for_a_subprotocol(name: str, binary: bool) -> None:
    """codec_for() builds the subprotocol's codec: JSON in text, MessagePack in binary."""
    codec = codec_for(name)
    assert codec.subprotocol == name
    assert codec.format == SUBPROTOCOLS[name]
    assert codec.binary is binary
    assert codec.decode_client(codec.encode(Join(room="r1"))) == Join(room="r1")


def test_codec_for_an_unknown_subprotocol_is_a_key_error() -> None:
    """codec_for() refuses a subprotocol we do not speak."""
    with pytest.raises(KeyError):
        codec_for("livepilot.v2.json")


# --- specific bad input, each with its code (H6) -----------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_frame(fmt: Format) -> None:
    """A frame that is not JSON / MessagePack, is cut short or has trailing bytes is
    MALFORMED."""  # H6
    codec = DEFAULT_CODECS[fmt]
    frames = (
        [b'{"type": ', b"{'type': 'join'}", b"", b"nul", b"\x00{}"]
        if fmt == "json"
        else [b"\xc1", b"", b"\x82\xa4type", b"\x81\xa4ty"]
    )
    for frame in frames:
        assert code_of(codec.decode_client, frame) == Code.MALFORMED, frame
        assert code_of(codec.decode_server, frame) == Code.MALFORMED, frame
    trailing = b" []" if fmt == "json" else b"\x00"
    assert code_of(codec.decode_client, codec.encode(Ping()) + trailing) == Code.MALFORMED
    assert code_of(codec.decode_server, codec.encode(Pong()) + trailing) == Code.MALFORMED


@pytest.mark.parametrize("fmt", FORMATS)
def test_wrong_field_type(fmt: Format) -> None:
    """A field of the wrong type, out of range, or missing is WRONG_FIELD_TYPE."""  # H6
    codec = DEFAULT_CODECS[fmt]
    bad = [
        {"type": "join", "room": 5},
        {"type": "join", "room": ""},
        {"type": "join"},
        {"type": "ping", "nonce": -1},
        {"type": 7},
        {"room": "r1"},
        ["join", "r1"],
        # a nested enum whose value mimics the unknown-tag message
        {
            "type": "feed_violation",
            "command_id": "c",
            "room": "r",
            "violation": {"violation_id": "v", "policy": "p", "severity": "`$.type`"},
        },
    ]
    for value in bad:
        assert code_of(codec.decode_client, encode(fmt, value)) == Code.WRONG_FIELD_TYPE, value
    assert code_of(codec.decode_server, encode(fmt, {"type": "ack"})) == Code.WRONG_FIELD_TYPE


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_type(fmt: Format) -> None:
    """A frame whose type names no message is UNKNOWN_TYPE."""  # H6
    codec = DEFAULT_CODECS[fmt]
    for tag in ("nope", "", "JOIN", "hello "):
        frame = encode(fmt, {"type": tag, "room": "r1"})
        assert code_of(codec.decode_client, frame) == Code.UNKNOWN_TYPE, tag
        assert code_of(codec.decode_server, frame) == Code.UNKNOWN_TYPE, tag


def test_unknown_nested_event_type_is_a_wrong_field() -> None:
    """An unknown event body type inside a known message is a wrong field, not an
    unknown message, even when the body's type mimics msgspec's message."""  # H6
    codec = DEFAULT_CODECS["json"]
    for body_type in ("nope", "`$.type`"):
        event = {
            "type": "event",
            "room": "r",
            "seq": 1,
            "at": 1,
            "actor": "c",
            "by": {"role": "creator", "id": "c"},
            "body": {"type": body_type},
        }
        assert code_of(codec.decode_server, encode("json", event)) == Code.WRONG_FIELD_TYPE


@pytest.mark.parametrize("fmt", FORMATS)
def test_invalid_utf8(fmt: Format) -> None:
    """Invalid UTF-8 in a string field is INVALID_UTF8."""  # H6
    codec = DEFAULT_CODECS[fmt]
    if fmt == "json":
        client = b'{"type":"join","room":"r\xff"}'
        server = b'{"type":"resumed","room":"r\xff","seq":1}'
    else:
        client = b"\x82\xa4type\xa4join\xa4room\xa2r\xff"
        server = b"\x83\xa4type\xa7resumed\xa4room\xa2r\xff\xa3seq\x01"
    assert code_of(codec.decode_client, client) == Code.INVALID_UTF8
    assert code_of(codec.decode_server, server) == Code.INVALID_UTF8


def test_a_str_frame_with_a_lone_surrogate_is_invalid_utf8() -> None:
    """A str frame holding a lone surrogate (it has no UTF-8 form) is INVALID_UTF8."""  # H6
    frame = '{"type":"join","room":"r\udcff"}'
    assert code_of(DEFAULT_CODECS["json"].decode_client, frame) == Code.INVALID_UTF8


def test_a_text_frame_on_a_msgpack_session_is_the_wrong_frame_type() -> None:
    """A str (text frame) given to the MessagePack codec is WRONG_FRAME_TYPE."""  # H6
    codec = DEFAULT_CODECS["msgpack"]
    assert code_of(codec.decode_client, '{"type":"ping"}') == Code.WRONG_FRAME_TYPE
    assert code_of(codec.decode_server, "") == Code.WRONG_FRAME_TYPE


def test_a_utf8_message_from_msgspec_is_classified_invalid_utf8() -> None:
    """Should msgspec itself report bad UTF-8 as a DecodeError, it maps to INVALID_UTF8."""
    for text in (
        "invalid UTF-8 (byte 3)",
        "invalid utf-8 (byte 3)",
        "Invalid UTF-8 encoded string",
    ):  # the last: msgspec 0.23's own
        assert classify_decode_error(msgspec.DecodeError(text)).code == Code.INVALID_UTF8


def frame_of_size(fmt: Format, size: int) -> bytes:
    """A valid ping frame padded with an ignored field to exactly ``size`` bytes."""
    overhead = len(encode(fmt, {"type": "ping", "pad": "a" * 1000})) - 1000
    frame = encode(fmt, {"type": "ping", "pad": "a" * (size - overhead)})
    assert len(frame) == size
    return frame


@pytest.mark.parametrize("fmt", FORMATS)
def test_too_large(fmt: Format) -> None:
    """A frame of 64 KiB decodes; one byte more is TOO_LARGE, before any parsing."""  # H6
    codec = DEFAULT_CODECS[fmt]
    assert DEFAULT_MAX_MESSAGE_BYTES == 64 * 1024
    assert codec.decode_client(frame_of_size(fmt, 64 * 1024)) == Ping()
    too_big = frame_of_size(fmt, 64 * 1024 + 1)
    assert code_of(codec.decode_client, too_big) == Code.TOO_LARGE
    assert code_of(codec.decode_server, too_big) == Code.TOO_LARGE
    assert code_of(codec.decode_client, b"\xc1" * (64 * 1024 + 1)) == Code.TOO_LARGE


def test_too_large_counts_utf8_bytes_of_a_str_frame() -> None:
    """A text frame is measured in UTF-8 bytes, not characters."""  # H6
    decode = DEFAULT_CODECS["json"].decode_client
    ascii_frame = frame_of_size("json", 64 * 1024).decode()
    assert decode(ascii_frame) == Ping()
    # 30,000 two-byte characters: under the limit in characters, over it in bytes
    wide = '{"type":"ping","pad":"' + "\u00e9" * 33_000 + '"}'
    assert len(wide) < 64 * 1024 < len(wide.encode())
    assert code_of(decode, wide) == Code.TOO_LARGE
    narrow = '{"type":"ping","pad":"' + "\u00e9" * 30_000 + '"}'
    assert len(narrow.encode()) <= 64 * 1024
    assert decode(narrow) == Ping()
    assert code_of(decode, "x" * (64 * 1024 + 1)) == Code.TOO_LARGE


def deep_frames(fmt: Format, depth: int, tag: str = "ping") -> list[bytes]:
    """``tag`` frames carrying ``depth`` nested arrays / maps in an ignored field.

    msgspec stops at the first value of the wrong type, so nesting in a typed
    field is refused at depth one; an ignored field is skipped recursively, which
    is where depth matters (before or after the ``type`` field).
    """
    head = {"type": tag}
    if fmt == "json":
        arrays = b"[" * depth + b"]" * depth
        maps = b'{"a":' * depth + b"1" + b"}" * depth
        known = encode(fmt, head)[:-1]
        return [
            known + b',"x":' + arrays + b"}",
            b'{"x":' + arrays + b"," + known[1:] + b"}",
            known + b',"x":' + maps + b"}",
        ]
    arrays = b"\x91" * depth + b"\xc0"
    maps = b"\x81\xa1a" * depth + b"\xc0"
    known = encode(fmt, head)[1:]
    return [
        b"\x82" + known + b"\xa1x" + arrays,
        b"\x82\xa1x" + arrays + known,
        b"\x82" + known + b"\xa1x" + maps,
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_too_deep(fmt: Format) -> None:
    """10**5-deep nesting is TOO_DEEP (with a max size large enough to let it through);
    moderate nesting in an ignored field is fine."""  # H6
    codec = Codec(fmt, max_message_bytes=10**6)
    for frame in deep_frames(fmt, 10**5, "ping"):
        assert code_of(codec.decode_client, frame) == Code.TOO_DEEP
    for frame in deep_frames(fmt, 10**5, "pong"):
        assert code_of(codec.decode_server, frame) == Code.TOO_DEEP
    for frame in deep_frames(fmt, 50, "ping"):
        assert codec.decode_client(frame) == Ping()


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_same_codec_keeps_working_after_bad_input(fmt: Format) -> None:
    """A refused frame leaves the codec (and so other rooms) unaffected."""  # H6
    codec = Codec(fmt, max_message_bytes=10**6)
    for frame in [*deep_frames(fmt, 10**5), b"\xc1", encode(fmt, {"type": "nope"})]:
        with pytest.raises(DecodeError):
            codec.decode_client(frame)
        assert codec.decode_client(codec.encode(Hello(token="t"))) == Hello(token="t")


# --- fuzz: nothing but DecodeError, ever (H6) --------------------------------------
# 4,000 + 2,000 + 2,000 + 2,000 = 10,000 frames a run, each tried on four decoders.
# Structured frames are built from one drawn seed (see tests/protocol/frames.py).

seeds = st.integers(min_value=0, max_value=2**64 - 1)


@fuzz(4_000)
@given(frame=st.binary(max_size=300))
def test_fuzz_random_bytes(frame: bytes) -> None:
    """Random bytes decode or raise DecodeError, in every decoder."""  # H6
    decode_everywhere(frame)


@fuzz(2_000)
@given(seed=seeds, as_text=st.booleans())
def test_fuzz_random_json(seed: int, as_text: bool) -> None:
    """Random JSON documents (NaN, huge ints, lone surrogates, message-like objects)
    decode or raise DecodeError, as bytes and as str."""  # H6
    frame = frames.arbitrary_frame(Random(seed), "json")
    decode_everywhere(frame.decode("utf-8", "surrogatepass") if as_text else frame)


@fuzz(2_000)
@given(seed=seeds)
def test_fuzz_random_msgpack(seed: int) -> None:
    """Random MessagePack documents (bin, ext, non-string keys, message-like maps)
    decode or raise DecodeError."""  # H6
    decode_everywhere(frames.arbitrary_frame(Random(seed), "msgpack"))


@fuzz(2_000)
@given(seed=seeds, fmt=st.sampled_from(FORMATS))
def test_fuzz_near_valid_frames(seed: int, fmt: Format) -> None:
    """Valid frames with a field changed or dropped, the type changed, a byte
    flipped, bytes inserted or cut, truncated or doubled, decode or raise
    DecodeError."""  # H6
    rng = Random(seed)
    frame = CODECS[fmt].encode(frames.valid_message(rng))
    decode_everywhere(frames.mutate(rng, frame, fmt))


@settings(max_examples=60, deadline=None)
@given(message=st.sampled_from(ALL_TYPES).flatmap(message_of), fmt=st.sampled_from(FORMATS))
def test_valid_frames_cut_anywhere_raise_decode_error(message: msgspec.Struct, fmt: Format) -> None:
    """Every proper prefix of a valid frame is refused with DecodeError."""  # H6
    frame = CODECS[fmt].encode(message)
    for end in range(len(frame)):
        for decode in SIDES:
            with pytest.raises(DecodeError):
                decode(frame[:end])
