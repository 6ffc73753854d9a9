"""JSON Schema and AsyncAPI export of protocol v1, and writing the protocol docs.

Everything here is derived from the msgspec Structs and :mod:`protocol.errors`,
so the documents cannot drift from the code: ``livepilot schema`` regenerates
them and ``tests/protocol/test_schema.py`` fails when the committed copies are
stale. Output is deterministic (sorted keys, trailing newline) so a diff of the
docs is a diff of the contract.

* ``protocol/livepilot.v1.schema.json`` - JSON Schema (2020-12) of every frame:
  ``#/$defs/ClientMessage``, ``#/$defs/ServerMessage`` and every type they use,
  plus the access workflow's HTTP bodies (what ``protocol.access`` exports, when
  that module exists), indexed by ``x-http-bodies``.
* ``protocol/asyncapi.json`` - AsyncAPI 3.0 description of the ``/ws`` channel,
  written from the client's side: it *sends* client messages and *receives*
  server messages. ``x-error-codes`` carries the error table.
* ``protocol/errors.md`` - the error and close codes with their ranges, from
  :mod:`protocol.error_table` (whose names are re-exported here).
"""

from __future__ import annotations

import importlib
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any, Final

import msgspec

from protocol.error_table import (
    ERROR_RANGES,
    ErrorRange,
    error_range,
    error_rows,
    errors_markdown,
)
from protocol.messages import (
    PROTOCOL_VERSION,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    ClientMessage,
    ServerMessage,
)

__all__ = [
    "ASYNCAPI_FILE",
    "ERRORS_FILE",
    "ERROR_RANGES",
    "SCHEMA_FILE",
    "ErrorRange",
    "asyncapi",
    "client_message_types",
    "error_range",
    "error_rows",
    "errors_markdown",
    "http_body_types",
    "json_schema",
    "render_json",
    "server_message_types",
    "tag_of",
    "write_schema",
]

SCHEMA_FILE: Final = Path("protocol", f"livepilot.v{PROTOCOL_VERSION}.schema.json")
ASYNCAPI_FILE: Final = Path("protocol", "asyncapi.json")
ERRORS_FILE: Final = Path("protocol", "errors.md")
"""Where :func:`write_schema` puts each document, relative to the docs directory."""

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
CHANNEL: Final = "ws"
CHANNEL_ADDRESS: Final = "/ws"
LOCAL_HOST: Final = "localhost:8080"
"""The ``local`` server: ``livepilot serve``'s default port (a test keeps them in step)."""
ACCESS_MODULE: Final = "protocol.access"

JSONObject = dict[str, Any]
StructType = type[msgspec.Struct]


# --- the contract's types ----------------------------------------------------


def client_message_types() -> tuple[StructType, ...]:
    """Every message a client may send, in union order."""
    return typing.get_args(ClientMessage)


def server_message_types() -> tuple[StructType, ...]:
    """Every message the server may send, in union order."""
    return typing.get_args(ServerMessage)


def tag_of(cls: StructType) -> str:
    """The wire ``type`` of a message class."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    assert isinstance(info.tag, str)
    return info.tag


def _is_struct(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, msgspec.Struct)


def http_body_types(module_name: str = ACCESS_MODULE) -> dict[str, Any]:
    """The Structs and unions of Structs a module exports (``__all__``), by name.

    These are the access workflow's HTTP bodies. An absent module gives none, so
    the export works before that module exists.
    """
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists but is broken: say so, do not hide it
        return {}
    found: dict[str, Any] = {}
    for name in sorted(getattr(module, "__all__", ())):
        obj = getattr(module, name)
        members = typing.get_args(obj) if isinstance(obj, types.UnionType) else ()
        if _is_struct(obj) or (members and all(_is_struct(m) for m in members)):
            found[name] = obj
    return found


def _summary(cls: type) -> str:
    return inspect.cleandoc(cls.__doc__ or cls.__name__).split("\n\n")[0].replace("\n", " ")


def _tidy(node: Any, *, asyncapi: bool = False) -> Any:
    """A copy of a msgspec schema with dedented descriptions.

    Docstring indentation differs between Python versions (3.13 strips it), so
    descriptions are dedented to keep the output the same everywhere. For
    AsyncAPI, whose Schema Object takes ``discriminator`` as a property name,
    msgspec's OpenAPI-style discriminator object is reduced to that name.
    """
    if isinstance(node, list):
        return [_tidy(item, asyncapi=asyncapi) for item in node]
    if not isinstance(node, dict):
        return node
    out: JSONObject = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):  # keys are field names here
            out[key] = {name: _tidy(sub, asyncapi=asyncapi) for name, sub in value.items()}
        elif key == "description" and isinstance(value, str):
            out[key] = inspect.cleandoc(value)
        elif key == "discriminator" and asyncapi and isinstance(value, dict):
            out[key] = value["propertyName"]
        else:
            out[key] = _tidy(value, asyncapi=asyncapi)
    return out


def _components(
    ref_template: str, *, asyncapi: bool = False, extras: dict[str, Any] | None = None
) -> tuple[JSONObject, JSONObject]:
    """(the unions' schemas, every named schema) under ``ref_template``.

    The unions are ClientMessage, ServerMessage and any union among ``extras``
    (Structs among them get their own schema, named after the class).
    """
    extras = extras or {}
    roots: list[Any] = [ClientMessage, ServerMessage, *extras.values()]
    (client, server, *rest), named = msgspec.json.schema_components(
        roots, ref_template=ref_template
    )
    schemas = {name: _tidy(schema, asyncapi=asyncapi) for name, schema in named.items()}
    unions = {
        "ClientMessage": {
            "title": "ClientMessage",
            "description": "Any frame a client sends; `type` names the message.",
            **_tidy(client, asyncapi=asyncapi),
        },
        "ServerMessage": {
            "title": "ServerMessage",
            "description": "Any frame the server sends; `type` names the message.",
            **_tidy(server, asyncapi=asyncapi),
        },
    }
    for (name, typ), schema in zip(extras.items(), rest, strict=True):
        if not _is_struct(typ):
            unions[name] = {
                "title": name,
                "description": f"Any {name}; `type` names which.",
                **_tidy(schema, asyncapi=asyncapi),
            }
    return unions, schemas


# --- the documents -------------------------------------------------------------


_FRAMING = (
    f"A client offers one or both subprotocols in `Sec-WebSocket-Protocol`; the server "
    f"picks the first it speaks. `{SUBPROTOCOL_JSON}` carries JSON in text frames, "
    f"`{SUBPROTOCOL_MSGPACK}` the same messages as MessagePack maps in binary frames. "
    "Every message is an object whose `type` field names it. Unknown fields are ignored "
    "and new fields always get defaults, so older clients keep working."
)


def json_schema() -> JSONObject:
    """The JSON Schema document of the whole contract."""
    bodies = http_body_types()
    unions, schemas = _components("#/$defs/{name}", extras=bodies)
    doc: JSONObject = {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"livepilot protocol v{PROTOCOL_VERSION}",
        "description": (
            "Every frame of the livepilot WebSocket protocol: a ClientMessage or a "
            "ServerMessage (see `$defs`). " + _FRAMING
        ),
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": {**schemas, **unions},
    }
    if bodies:
        doc["description"] += (
            " The access workflow's HTTP bodies are defined alongside; `x-http-bodies` lists them."
        )
        doc["x-http-bodies"] = {
            name: f"#/$defs/{typ.__name__ if _is_struct(typ) else name}"
            for name, typ in bodies.items()
        }
    return doc


def asyncapi() -> JSONObject:
    """The AsyncAPI 3.0 document of the ``/ws`` channel, from the client's side."""
    unions, schemas = _components("#/components/schemas/{name}", asyncapi=True)
    sent, received = client_message_types(), server_message_types()
    messages = {
        cls.__name__: {
            "name": tag_of(cls),
            "title": cls.__name__,
            "summary": _summary(cls),
            "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
        }
        for cls in (*sent, *received)
    }
    subprotocols = [
        {"name": SUBPROTOCOL_JSON, "contentType": "application/json", "frames": "text"},
        {"name": SUBPROTOCOL_MSGPACK, "contentType": "application/msgpack", "frames": "binary"},
    ]
    server_description = "The livepilot hub. " + _FRAMING

    def operation(action: str, types: tuple[StructType, ...], summary: str) -> JSONObject:
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "summary": summary,
            "messages": [
                {"$ref": f"#/channels/{CHANNEL}/messages/{cls.__name__}"} for cls in types
            ],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "livepilot",
            "version": f"{PROTOCOL_VERSION}.0.0",
            "description": (
                "Real-time co-pilot hub for TikTok Shop LIVE: agency staff and the creator "
                "client operate a creator's LIVE room over one WebSocket. This document is "
                "written from the client's side: the client *sends* ClientMessages and "
                "*receives* ServerMessages. " + _FRAMING + " Error and close codes are in "
                "`x-error-codes`; their range says whether to retry (see errors.md)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": LOCAL_HOST,
                "protocol": "ws",
                "description": server_description,
                "x-subprotocols": subprotocols,
            },
            "production": {
                "host": "{host}",
                "protocol": "wss",
                "description": server_description,
                "variables": {"host": {"description": "host[:port] of the deployment"}},
                "x-subprotocols": subprotocols,
            },
        },
        "channels": {
            CHANNEL: {
                "address": CHANNEL_ADDRESS,
                "title": "LIVE room session",
                "description": (
                    "One session: hello (authenticate), then join or resume rooms and "
                    "send commands; the server answers and streams room events."
                ),
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "headers": {
                            "type": "object",
                            "properties": {
                                "Sec-WebSocket-Protocol": {
                                    "type": "string",
                                    "description": (
                                        "Comma-separated subprotocols the client speaks, "
                                        "preferred first: "
                                        f"`{SUBPROTOCOL_JSON}`, `{SUBPROTOCOL_MSGPACK}`."
                                    ),
                                    "examples": [f"{SUBPROTOCOL_MSGPACK}, {SUBPROTOCOL_JSON}"],
                                }
                            },
                            "required": ["Sec-WebSocket-Protocol"],
                        },
                        "bindingVersion": "0.1.0",
                    }
                },
            }
        },
        "operations": {
            "send": operation("send", sent, "Messages the client sends to the hub."),
            "receive": operation("receive", received, "Messages the hub sends to the client."),
        },
        "components": {"schemas": {**schemas, **unions}, "messages": messages},
        "x-error-codes": error_rows(),
    }


def render_json(doc: JSONObject) -> str:
    """A document as deterministic JSON: sorted keys, two-space indent, final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schema(docs_dir: Path) -> list[Path]:
    """Write the three documents under ``docs_dir``; returns the paths written."""
    outputs = {
        SCHEMA_FILE: render_json(json_schema()),
        ASYNCAPI_FILE: render_json(asyncapi()),
        ERRORS_FILE: errors_markdown(),
    }
    written: list[Path] = []
    for relative, text in outputs.items():
        path = docs_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written
