"""Seeded generators of arbitrary and near-valid frames, for the codec fuzz.

Hypothesis spends a few milliseconds per drawn tree; ten thousand frames a run
would take minutes. So the fuzz tests draw one seed each from Hypothesis and
build the frame here with ``random.Random(seed)``: cheap, reproducible (the
falsifying seed is reported), and biased towards the values that break
decoders: edge integers, NaN, lone surrogates, the protocol's own tags and
field names, deep and odd nesting.
"""

from __future__ import annotations

import json
import math
import re
import typing
from random import Random
from typing import Any, Literal

import msgspec
from msgspec import inspect as mi

from protocol.events import EventBody
from protocol.schema import client_message_types, server_message_types, tag_of

Format = Literal["json", "msgpack"]

MESSAGE_TYPES = client_message_types() + server_message_types()
EVENT_TYPES = typing.get_args(EventBody)
TAGS = sorted({tag_of(cls) for cls in (*MESSAGE_TYPES, *EVENT_TYPES)})
FIELD_NAMES = sorted(
    {
        f.encode_name
        for cls in (*MESSAGE_TYPES, *EVENT_TYPES)
        for f in typing.cast(mi.StructType, mi.type_info(cls)).fields
    }
    | {"type"}
)
EDGE_INTS = (
    0,
    1,
    -1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    10**9,
    10**9 + 1,
    10**12,
    10**12 + 1,
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -(2**31),
    -(2**63),
)
HUGE_INTS = (2**64, -(2**63) - 1, 10**40)
"""Beyond MessagePack; JSON only."""
EDGE_FLOATS = (0.0, -0.0, 0.5, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan)
EDGE_TEXT = (
    "",
    " ",
    "a",
    "\x00",
    "\u00e9",
    "\u202e",
    "\U0001f600",
    "\ufeff",
    "\ud800",
    "\udfff",
    "`$.type`",
    "Invalid value",
    "null",
    "r1",
    "a" * 129,
    "x" * 2001,
)


def _text(rng: Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(EDGE_TEXT)
    if roll < 0.55:
        return rng.choice(TAGS)
    if roll < 0.7:
        return rng.choice(FIELD_NAMES)
    alphabet = rng.choice(("abcXYZ019_.:@-", '\x00\x7f\u00e9\u4e2d\U0001f600\ud800 "\\'))
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))


def scalar(rng: Random, fmt: Format) -> Any:
    """One arbitrary scalar of a format."""
    kind = rng.randrange(9 if fmt == "msgpack" else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        pool = EDGE_INTS + (HUGE_INTS if fmt == "json" else ())
        return rng.choice(pool) if rng.random() < 0.7 else rng.randrange(-(2**63), 2**64)
    if kind == 3:
        return rng.choice(EDGE_FLOATS) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6)
    if kind in (4, 5, 6):
        return _text(rng)
    if kind == 7:
        return rng.randbytes(rng.randrange(10))
    return msgspec.msgpack.Ext(rng.randrange(-128, 128), rng.randbytes(rng.randrange(10)))


def tree(rng: Random, fmt: Format, depth: int = 0) -> Any:
    """An arbitrary value: scalars, lists and maps nested up to a few levels."""
    roll = rng.random()
    if depth >= 4 or roll < 0.45:
        return scalar(rng, fmt)
    size = rng.randrange(5)
    if roll < 0.65:
        return [tree(rng, fmt, depth + 1) for _ in range(size)]
    keys = [rng.choice(FIELD_NAMES) if rng.random() < 0.7 else _text(rng) for _ in range(size)]
    if fmt == "msgpack" and rng.random() < 0.1:
        return {scalar(rng, "json"): tree(rng, fmt, depth + 1) for _ in range(size)} | {
            "type": rng.choice(TAGS)
        }
    return {key: tree(rng, fmt, depth + 1) for key in keys}


def message_like(rng: Random, fmt: Format) -> dict[str, Any]:
    """An object with a (nearly) known type and the protocol's field names."""
    value: dict[str, Any] = {"type": rng.choice(TAGS) if rng.random() < 0.9 else _text(rng)}
    for _ in range(rng.randrange(7)):
        value[rng.choice(FIELD_NAMES)] = tree(rng, fmt, 1)
    return value


def encode(rng: Random, value: Any, fmt: Format) -> bytes:
    """Encode an arbitrary value. JSON keeps what ``json`` writes: NaN and Infinity
    (not JSON), and lone surrogates escaped or raw (not UTF-8)."""
    if fmt == "json":
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        return text.encode("utf-8", "surrogatepass")
    try:
        return msgspec.msgpack.encode(value)
    except (OverflowError, TypeError, UnicodeEncodeError):
        return msgspec.msgpack.encode(repr(value))


def arbitrary_frame(rng: Random, fmt: Format) -> bytes:
    """A frame of arbitrary content, half the time shaped like a message."""
    value = message_like(rng, fmt) if rng.random() < 0.5 else tree(rng, fmt)
    return encode(rng, value, fmt)


# --- valid messages ------------------------------------------------------------------

_ONE_CLASS = re.compile(r"\^(\[[^\]]+\])\+\$")


def valid(rng: Random, t: mi.Type) -> Any:
    """A random valid value of a msgspec type (lists and maps kept short)."""
    match t:
        case mi.StructType():
            kwargs = {
                f.name: valid(rng, f.type) for f in t.fields if f.required or rng.random() < 0.5
            }
            return t.cls(**kwargs)
        case mi.UnionType():
            return valid(rng, rng.choice(t.types))
        case mi.LiteralType():
            return rng.choice(t.values)
        case mi.NoneType():
            return None
        case mi.BoolType():
            return rng.random() < 0.5
        case mi.IntType():
            low = t.ge if t.ge is not None else -(2**63)
            high = t.le if t.le is not None else 2**64 - 1
            edges = [v for v in (low, high, low + 1, 0, 1) if low <= v <= high]
            if rng.random() < 0.3:
                return rng.choice(edges)
            return rng.randint(low, min(high, low + 10**6))
        case mi.FloatType():
            return rng.choice((0.0, 1.5, 30.0, 1e-3))
        case mi.StrType():
            return _valid_str(rng, t)
        case mi.ListType():
            return [valid(rng, t.item_type) for _ in range(rng.randrange(3))]
        case mi.DictType():
            size = rng.randrange(3)
            return {valid(rng, t.key_type): valid(rng, t.value_type) for _ in range(size)}
    raise NotImplementedError(f"no generator for {t!r}")


def _valid_str(rng: Random, t: mi.StrType) -> str:
    low = t.min_length or 0
    high = min(t.max_length if t.max_length is not None else 40, 40)
    size = rng.randint(max(low, 1) if t.pattern else low, max(low, high))
    if t.pattern is None:
        alphabet = 'abc XYZ\u00e9\u4e2d\U0001f600"\\\n'
    else:
        one_class = _ONE_CLASS.fullmatch(t.pattern)
        assert one_class, f"no generator for pattern {t.pattern!r}"
        alphabet = "".join(c for c in map(chr, range(128)) if re.fullmatch(one_class[1], c))
    return "".join(rng.choice(alphabet) for _ in range(size))


def valid_message(rng: Random) -> msgspec.Struct:
    """A random valid message of a random type."""
    cls = rng.choice(MESSAGE_TYPES)
    return typing.cast(msgspec.Struct, valid(rng, mi.type_info(cls)))


MUTATIONS = ("field", "drop", "retag", "flip", "insert", "cut", "truncate", "dup")


def mutate(rng: Random, frame: bytes, fmt: Format) -> bytes:
    """A frame near a valid ``frame``: one field replaced or dropped, the type
    changed, a byte flipped, bytes inserted or cut, truncated, or duplicated."""
    kind = rng.choice(MUTATIONS)
    if kind in ("field", "drop", "retag"):
        decoded = msgspec.json.decode(frame) if fmt == "json" else msgspec.msgpack.decode(frame)
        key = rng.choice(sorted(decoded))
        if kind == "drop":
            del decoded[key]
        elif kind == "retag":
            decoded["type"] = rng.choice(TAGS)
        else:
            decoded[key] = tree(rng, fmt, 2) if rng.random() < 0.5 else scalar(rng, fmt)
        return encode(rng, decoded, fmt)
    at = rng.randrange(len(frame) + 1)
    if kind == "flip":
        at = min(at, len(frame) - 1)
        return frame[:at] + bytes([rng.randrange(256)]) + frame[at + 1 :]
    if kind == "insert":
        return frame[:at] + rng.randbytes(rng.randint(1, 4)) + frame[at:]
    if kind == "cut":
        return frame[:at] + frame[at + rng.randint(1, 8) :]
    if kind == "dup":
        return frame + frame
    return frame[:at]
