"""The JSON Schema / AsyncAPI export and the committed protocol docs."""

from __future__ import annotations

import functools
import importlib
import json
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import schema
from protocol.commands import BagAdd, Hello, Join
from protocol.errors import CloseCode, Code, describe, is_retryable
from protocol.messages import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, Ack
from protocol.model import BagItem
from protocol.schema import (
    ASYNCAPI_FILE,
    ERRORS_FILE,
    SCHEMA_FILE,
    asyncapi,
    client_message_types,
    http_body_types,
    json_schema,
    server_message_types,
    tag_of,
    write_schema,
)
from tests.protocol.strategies import message_of

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CLIENT_TAGS = {tag_of(cls) for cls in client_message_types()}
SERVER_TAGS = {tag_of(cls) for cls in server_message_types()}


def walk(node: Any) -> Iterator[Any]:
    """Every dict and list in a JSON document, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def resolve(doc: Any, ref: str) -> Any:
    """Follow a local JSON pointer (``#/a/b``)."""
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(doc: Any) -> list[str]:
    """Every ``$ref`` in a document."""
    return [node["$ref"] for node in walk(doc) if isinstance(node, dict) and "$ref" in node]


# --- the committed docs ---------------------------------------------------------------


def test_committed_docs_are_up_to_date(tmp_path: Path) -> None:
    """docs/protocol/* are byte for byte what the code generates (else run
    `livepilot schema`)."""
    written = write_schema(tmp_path)
    assert [p.relative_to(tmp_path) for p in written] == [SCHEMA_FILE, ASYNCAPI_FILE, ERRORS_FILE]
    for path in written:
        committed = DOCS / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run `livepilot schema`"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed} is stale: run `livepilot schema` and commit the result"
        )


def test_output_is_deterministic(tmp_path: Path) -> None:
    """Two runs write the same bytes: sorted keys, two-space indent, final newline."""
    first = [p.read_bytes() for p in write_schema(tmp_path / "a")]
    second = [p.read_bytes() for p in write_schema(tmp_path / "b")]
    assert first == second
    for data in first:
        assert data.endswith(b"\n")
        assert not data.endswith(b"\n\n")
    for data in first[:2]:
        doc = json.loads(data)
        assert json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n" == data.decode()


def test_write_schema_creates_missing_directories(tmp_path: Path) -> None:
    """write_schema() makes docs_dir/protocol when it does not exist yet."""
    out = tmp_path / "deep" / "docs"
    paths = write_schema(out)
    assert all(p.is_file() and p.parent == out / "protocol" for p in paths)


# --- the JSON Schema ----------------------------------------------------------------


def test_json_schema_covers_both_unions() -> None:
    """The schema's $defs hold ClientMessage and ServerMessage, whose discriminator
    maps every tag to its message's definition."""
    doc = json_schema()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["anyOf"] == [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}]
    for union, classes in (
        ("ClientMessage", client_message_types()),
        ("ServerMessage", server_message_types()),
    ):
        definition = doc["$defs"][union]
        assert definition["discriminator"]["propertyName"] == "type"
        assert definition["discriminator"]["mapping"] == {
            tag_of(cls): f"#/$defs/{cls.__name__}" for cls in classes
        }
        assert definition["anyOf"] == [{"$ref": f"#/$defs/{cls.__name__}"} for cls in classes]


@pytest.mark.parametrize(
    "cls", client_message_types() + server_message_types(), ids=lambda c: c.__name__
)
def test_each_message_definition_matches_its_struct(cls: type[msgspec.Struct]) -> None:
    """A message's definition fixes its type tag and requires its required fields."""
    definition = json_schema()["$defs"][cls.__name__]
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    assert definition["properties"]["type"] == {"enum": [tag_of(cls)]}
    required = {f.encode_name for f in info.fields if f.required}
    assert set(definition["required"]) == {"type"} | required
    assert set(definition["properties"]) == {"type"} | {f.encode_name for f in info.fields}


def test_every_ref_resolves() -> None:
    """Every $ref in both documents points at something that exists."""
    for doc in (json_schema(), asyncapi()):
        for ref in refs(doc):
            assert isinstance(resolve(doc, ref), dict), ref


def test_descriptions_are_dedented() -> None:
    """Descriptions carry no docstring indentation (the same on every Python)."""
    for doc in (json_schema(), asyncapi()):
        for node in walk(doc):
            if isinstance(node, dict) and isinstance(node.get("description"), str):
                assert "\n " not in node["description"], node["description"]


def test_a_field_named_like_a_keyword_keeps_its_schema() -> None:
    """Violation's ``description`` field stays a schema, not a dedented string."""
    for doc, defs in ((json_schema(), "$defs"), (asyncapi(), "components")):
        schemas = doc[defs] if defs == "$defs" else doc[defs]["schemas"]
        field = schemas["Violation"]["properties"]["description"]
        assert field["type"] == "string"


# --- jsonschema validation (only when the optional package is installed) -------------


@functools.cache
def _validator() -> Any:
    import jsonschema  # type: ignore[import-untyped, unused-ignore]

    doc = json_schema()
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc)


def validator() -> Any:
    """A jsonschema validator of the contract, or skip when jsonschema is absent."""
    pytest.importorskip("jsonschema")
    return _validator()


def as_json(message: msgspec.Struct) -> Any:
    """A message as the JSON value the wire carries."""
    return json.loads(msgspec.json.encode(message))


def test_sample_messages_validate() -> None:
    """Hand-built messages validate; broken ones do not."""
    check = validator()
    for message in (
        Hello(token="t"),
        Join(room="r1"),
        BagAdd(command_id="c1", room="r1", item=BagItem(product_id="p1", price_cents=100)),
        Ack(command_id="c1", seq=3),
    ):
        assert check.is_valid(as_json(message)), message
    for broken in (
        {"type": "join"},
        {"type": "join", "room": 5},
        {"type": "join", "room": "has space"},
        {"type": "nope"},
        {"type": "ack", "command_id": "c1", "seq": -1},
    ):
        assert not check.is_valid(broken), broken


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=st.sampled_from(client_message_types() + server_message_types()).flatmap(message_of))
def test_generated_messages_validate(message: msgspec.Struct) -> None:
    """Any valid message is valid against the exported schema."""
    check = validator()
    assert check.is_valid(as_json(message)), list(check.iter_errors(as_json(message)))


# --- the AsyncAPI document ----------------------------------------------------------


def test_asyncapi_header_servers_and_channel() -> None:
    """AsyncAPI 3.0.0 with ws servers, both subprotocols, and the /ws channel."""
    doc = asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    assert {server["protocol"] for server in doc["servers"].values()} <= {"ws", "wss"}
    assert "ws" in {server["protocol"] for server in doc["servers"].values()}
    for server in doc["servers"].values():
        names = [sub["name"] for sub in server["x-subprotocols"]]
        assert names == [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK]
    (channel,) = doc["channels"].values()
    assert channel["address"] == "/ws"
    header = channel["bindings"]["ws"]["headers"]["properties"]["Sec-WebSocket-Protocol"]
    assert SUBPROTOCOL_JSON in header["description"]
    assert SUBPROTOCOL_MSGPACK in header["description"]


def test_asyncapi_lists_every_tag_in_the_right_operation() -> None:
    """send carries every ClientMessage tag, receive every ServerMessage tag."""
    doc = asyncapi()
    assert {op["action"] for op in doc["operations"].values()} == {"send", "receive"}

    def tags(operation: str) -> set[str]:
        op = doc["operations"][operation]
        assert resolve(doc, op["channel"]["$ref"]) is doc["channels"]["ws"]
        messages = [resolve(doc, resolve(doc, m["$ref"])["$ref"]) for m in op["messages"]]
        for message in messages:
            payload = resolve(doc, message["payload"]["$ref"])
            assert payload["properties"]["type"] == {"enum": [message["name"]]}
        return {message["name"] for message in messages}

    assert tags("send") == CLIENT_TAGS
    assert tags("receive") == SERVER_TAGS
    assert len(doc["components"]["messages"]) == len(CLIENT_TAGS) + len(SERVER_TAGS)


def test_asyncapi_discriminators_are_property_names() -> None:
    """AsyncAPI's Schema Object takes discriminator as a property name, not an object."""
    discriminators = [
        node["discriminator"]
        for node in walk(asyncapi()["components"]["schemas"])
        if isinstance(node, dict) and "discriminator" in node
    ]
    assert discriminators
    assert set(discriminators) == {"type"}


def test_asyncapi_error_codes_table() -> None:
    """x-error-codes has every Code and CloseCode: code, name, retryable, meaning."""
    rows = asyncapi()["x-error-codes"]
    expected = [*Code, *CloseCode]
    assert [(row["code"], row["name"]) for row in rows] == [(int(c), c.name) for c in expected]
    for row, code in zip(rows, expected, strict=True):
        assert row["retryable"] is is_retryable(code)
        assert row["meaning"] == describe(code)
        assert row["kind"] == ("close" if isinstance(code, CloseCode) else "error")


# --- the access module's HTTP bodies -------------------------------------------------


class _Body(msgspec.Struct, tag="body_a", kw_only=True):
    """A stand-in HTTP body."""

    creator: str


class _OtherBody(msgspec.Struct, tag="body_b", kw_only=True):
    """Another stand-in HTTP body."""

    agency: str


def fake_module(monkeypatch: pytest.MonkeyPatch, exports: Mapping[str, object] | None) -> str:
    """Register a module exporting ``exports`` (None: no ``__all__``); returns its name."""
    module = types.ModuleType("fake_access")
    module.__dict__.update(
        {
            "FakeBody": _Body,
            "FakeUnion": _Body | _OtherBody,
            "Kind": Literal["a", "b"],
            "Optional": _Body | None,
            "LIMIT": 3,
            **(exports or {}),
        }
    )
    if exports is not None:
        module.__all__ = sorted(exports)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_access", module)
    return "fake_access"


def test_http_bodies_of_an_absent_module_are_none() -> None:
    """A module that does not exist contributes no HTTP bodies."""
    assert http_body_types("protocol.no_such_module") == {}


def test_http_bodies_of_a_broken_module_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that exists but fails to import is reported, not skipped."""

    def fail(name: str) -> types.ModuleType:
        raise ModuleNotFoundError("No module named 'missing_dependency'", name="missing_dependency")

    monkeypatch.setattr(importlib, "import_module", fail)
    with pytest.raises(ModuleNotFoundError):
        http_body_types("protocol.access")


def test_http_bodies_are_the_exported_structs_and_struct_unions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exported Structs and unions of Structs count; aliases, optionals, constants
    and anything not in ``__all__`` do not."""
    exported = {
        "FakeBody": _Body,
        "FakeUnion": _Body | _OtherBody,
        "Kind": Literal["a"],
        "Optional": _Body | None,
        "LIMIT": 3,
    }
    name = fake_module(monkeypatch, exported)
    assert http_body_types(name) == {"FakeBody": _Body, "FakeUnion": _Body | _OtherBody}
    assert http_body_types(fake_module(monkeypatch, None)) == {}


def test_http_bodies_join_the_json_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """The access module's bodies are defined in the JSON Schema and indexed by
    x-http-bodies; without any, there is no index."""
    bodies = {"FakeBody": _Body, "FakeUnion": _Body | _OtherBody}
    monkeypatch.setattr(schema, "http_body_types", lambda: bodies)
    doc = json_schema()
    assert doc["x-http-bodies"] == {"FakeBody": "#/$defs/_Body", "FakeUnion": "#/$defs/FakeUnion"}
    assert doc["$defs"]["_Body"]["required"] == ["type", "creator"]
    assert doc["$defs"]["FakeUnion"]["discriminator"]["mapping"] == {
        "body_a": "#/$defs/_Body",
        "body_b": "#/$defs/_OtherBody",
    }
    for ref in refs(doc):
        resolve(doc, ref)
    assert "FakeUnion" not in json.dumps(asyncapi())  # AsyncAPI is the WebSocket only

    monkeypatch.setattr(schema, "http_body_types", dict)
    assert "x-http-bodies" not in json_schema()


def test_the_real_access_bodies_are_in_the_committed_schema() -> None:
    """Whatever protocol.access exports (if it exists) is defined in the schema."""
    doc = json_schema()
    for name, ref in doc.get("x-http-bodies", {}).items():
        assert isinstance(resolve(doc, ref), dict), name
    assert set(doc.get("x-http-bodies", {})) == set(http_body_types())


def test_local_server_is_on_the_default_port() -> None:
    """The AsyncAPI `local` server names the port `livepilot serve` listens on by default."""
    from server.config import Settings

    doc = schema.asyncapi()
    host, _, port = doc["servers"]["local"]["host"].partition(":")
    assert (host, int(port)) == ("localhost", Settings().port)
