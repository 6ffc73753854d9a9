"""Hypothesis strategies for protocol messages, built from msgspec's type info.

``st.from_type`` ignores msgspec's ``Meta`` constraints (lengths, patterns,
bounds), so most instances it builds are invalid on the wire. This walks
``msgspec.inspect`` instead and draws only values the decoders accept: every
drawn message must survive ``decode(encode(m)) == m``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from hypothesis import strategies as st
from msgspec import inspect as mi

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""What both formats carry: MessagePack stops at int64/uint64."""
MAX_ITEMS = 3
"""Collections are kept short so a nested snapshot stays small and fast."""

_cache: dict[type, st.SearchStrategy[Any]] = {}


def message_of(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Valid instances of one Struct class."""
    if cls not in _cache:
        _cache[cls] = for_type(mi.type_info(cls))
    return _cache[cls]


def for_type(t: mi.Type) -> st.SearchStrategy[Any]:
    """Valid values of one msgspec type."""
    match t:
        case mi.StructType():
            return _struct(t)
        case mi.UnionType():
            return st.one_of([for_type(member) for member in t.types])
        case mi.LiteralType():
            return st.sampled_from(t.values)
        case mi.NoneType():
            return st.none()
        case mi.BoolType():
            return st.booleans()
        case mi.IntType():
            low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else INT_MIN)
            high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else INT_MAX)
            return st.integers(min_value=low, max_value=high)
        case mi.FloatType():
            return st.floats(
                min_value=t.ge if t.ge is not None else t.gt,
                max_value=t.le if t.le is not None else t.lt,
                exclude_min=t.gt is not None,
                exclude_max=t.lt is not None,
                allow_nan=False,
                allow_infinity=False,
            )
        case mi.StrType():
            return _str(t)
        case mi.ListType():
            low = t.min_length or 0
            return st.lists(
                for_type(t.item_type),
                min_size=low,
                max_size=max(low, min(t.max_length or MAX_ITEMS, MAX_ITEMS)),
            )
        case mi.DictType():
            return st.dictionaries(for_type(t.key_type), for_type(t.value_type), max_size=MAX_ITEMS)
    raise NotImplementedError(f"no strategy for {t!r}")


_ONE_CLASS = re.compile(r"\^(\[[^\]]+\])\+\$")
"""A pattern that is one character class repeated, like ``Id``'s."""


def _str(t: mi.StrType) -> st.SearchStrategy[str]:
    low = t.min_length or 0
    high = t.max_length
    if t.pattern is None:
        return st.text(min_size=low, max_size=high)
    one_class = _ONE_CLASS.fullmatch(t.pattern)
    ascii_chars = "".join(
        c for c in map(chr, range(128)) if one_class and re.fullmatch(one_class.group(1), c)
    )
    if ascii_chars:  # fast path: an ASCII class repeated; draw from its characters
        return st.text(alphabet=ascii_chars, min_size=max(low, 1), max_size=high)
    return st.from_regex(t.pattern, fullmatch=True).filter(
        lambda s: low <= len(s) and (high is None or len(s) <= high)
    )


def _struct(t: mi.StructType) -> st.SearchStrategy[Any]:
    cls = t.cls
    if cls not in _cache:
        required = {f.name: for_type(f.type) for f in t.fields if f.required}
        optional = {f.name: for_type(f.type) for f in t.fields if not f.required}
        _cache[cls] = st.fixed_dictionaries(required, optional=optional).map(
            lambda kwargs: cls(**kwargs)
        )
    return _cache[cls]
