"""One settings object, from environment variables with command-line flags on top.

Every setting has one name used three ways: the :class:`Settings` attribute
(``send_buffer_bytes``), the environment variable (``LIVEPILOT_SEND_BUFFER_BYTES``)
and the flag (``--send-buffer-bytes``). :data:`OPTIONS` lists them all, with their
meaning; :func:`settings_table` renders that list for the README and the CLI
may build its argument parser from it.

The parsers behind each option are in :mod:`server.config_parsers`.

:func:`load_settings` is the validated way in: it reads a mapping (pass
``os.environ``), applies overrides (parsed flags; ``None`` means "not given"),
and raises :class:`ConfigError` naming every offending variable or flag.
Building :class:`Settings` directly skips validation; its defaults are valid.

Origins: ``allowed_origins`` empty means a request that carries an ``Origin``
header (that is, one made by a browser page) is refused, while a request
without one (the creator client, native consoles, the load tester, the CLI) is
accepted. ``Origin`` only protects browser users against other sites opening a
socket in their name; any non-browser client can send whatever it likes, and
authentication is by the token in ``hello``, never by cookies. So the safe
default is to trust no web page until one is listed, without locking out the
clients that send no ``Origin`` at all. ``*`` allows every origin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec

from server.config_parsers import (
    LOG_LEVELS,
    MIN_JWT_SECRET_BYTES,
    LogLevel,
    Parser,
    boolean,
    integer,
    log_level,
    normalize_origin,
    number,
    optional_text,
    origins,
    redis_url,
    secret,
    text,
)

__all__ = [
    "DEFAULT_JWT_AUDIENCE",
    "DEV_JWT_SECRET",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "MIN_JWT_SECRET_BYTES",
    "OPTIONS",
    "ConfigError",
    "LogLevel",
    "Option",
    "Settings",
    "load_settings",
    "option",
    "settings_table",
    "unknown_variables",
]

ENV_PREFIX = "LIVEPILOT_"

DEV_JWT_SECRET = "livepilot-dev-secret-change-me-please"
"""The development HS256 secret. Public by definition: never use it in production.

It is 37 bytes long because RFC 7518 (and PyJWT, which warns otherwise) wants an
HS256 key of at least 32 bytes."""


DEFAULT_JWT_AUDIENCE = "livepilot"
"""The ``aud`` claim tokens must carry unless ``jwt_audience`` is set."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting of a livepilot server node. Immutable; see :data:`OPTIONS`."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_path: str = "./livepilot.db"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_public_key_path: str | None = None
    jwt_audience: str = DEFAULT_JWT_AUDIENCE
    token_leeway_s: int = 30
    allowed_origins: tuple[str, ...] = ()
    max_message_bytes: int = 65536
    permessage_deflate: bool = False
    rate_per_s: float = 50.0
    rate_burst: int = 100
    abuse_refusals: int = 20
    abuse_window_s: float = 10.0
    actor_rate_per_s: float = 100.0
    actor_rate_burst: int = 200
    max_connections_per_actor: int = 10
    api_rate_per_s: float = 5.0
    api_rate_burst: int = 20
    send_buffer_bytes: int = 1_048_576
    heartbeat_s: float = 20.0
    idle_timeout_s: float = 60.0
    max_connections: int = 0
    handshake_timeout_s: float = 5.0
    hello_timeout_s: float = 5.0
    history_retention: int = 10_000
    snapshot_interval: int = 1000
    room_idle_s: float = 300.0
    log_level: LogLevel = "INFO"
    redis_url: str | None = None
    redis_timeout_s: float = 1.0

    @property
    def is_dev_secret(self) -> bool:
        """Whether tokens are checked with the public development secret.

        False when RS256 is configured: the secret is then unused."""
        return self.jwt_public_key_path is None and self.jwt_secret == DEV_JWT_SECRET

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a handshake with this ``Origin`` header (None: absent) is accepted."""
        if origin is None:
            return True
        if "*" in self.allowed_origins:
            return True
        return normalize_origin(origin) in self.allowed_origins

    def __repr__(self) -> str:
        """Like the default, with the secret and any Redis password masked."""
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name == "jwt_secret":
                value = "<dev secret>" if value == DEV_JWT_SECRET else "<secret>"
            elif name == "redis_url" and value is not None:
                value = _mask_url(value)
            parts.append(f"{name}={value!r}")
        return f"Settings({', '.join(parts)})"

    __str__ = __repr__


class ConfigError(ValueError):
    """Invalid settings; ``problems`` pairs each variable or flag with what is wrong."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in problems))


@dataclass(frozen=True)
class Option:
    """One setting: its attribute, environment variable, flag, parser and meaning."""

    name: str
    meaning: str
    parse: Parser
    has_flag: bool = True

    @property
    def env(self) -> str:
        """The environment variable, e.g. ``LIVEPILOT_PORT``."""
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str | None:
        """The command-line flag, e.g. ``--port``; None for env-only settings."""
        return "--" + self.name.replace("_", "-") if self.has_flag else None

    @property
    def default(self) -> object:
        """The value when neither the environment nor a flag sets it."""
        return getattr(_DEFAULTS, self.name)


_DEFAULTS = Settings()

OPTIONS: tuple[Option, ...] = (
    Option("host", "Interface to listen on.", text),
    Option("port", "TCP port to listen on (0: any free port).", integer(0, 65535)),
    Option(
        "data_path",
        "SQLite file of the embedded store (`:memory:` for a throw-away one); one "
        "process at a time, held by a lock on `<path>.lock`.",
        text,
    ),
    Option(
        "jwt_secret",
        f"HS256 secret tokens are signed with, at least {MIN_JWT_SECRET_BYTES} bytes. "
        "The default is public, for development only. Environment only: a flag would "
        "show in the process list.",
        secret,
        has_flag=False,
    ),
    Option(
        "jwt_public_key_path",
        "PEM file of an RSA public key: when set, tokens must be RS256 signed by the "
        "matching private key and the HS256 secret is not used.",
        optional_text,
    ),
    Option(
        "jwt_audience",
        "The `aud` claim every token must carry (a string, or a list containing it); "
        "`livepilot token` writes it.",
        text,
    ),
    Option(
        "token_leeway_s",
        "Clock skew tolerated on a token's `exp`, `iat` and `nbf`, in seconds.",
        integer(0, 600),
    ),
    Option(
        "allowed_origins",
        "Comma-separated browser origins allowed to open a WebSocket (`*`: any). "
        "Empty: no browser page, but clients that send no `Origin` are accepted.",
        origins,
    ),
    Option(
        "max_message_bytes",
        "Largest frame accepted; bigger ones are refused with TOO_LARGE.",
        integer(1024, 16 * 1024 * 1024),
    ),
    Option(
        "permessage_deflate",
        "Offer WebSocket compression (costs CPU and memory per connection).",
        boolean,
    ),
    Option(
        "rate_per_s",
        "Messages per second a connection may send (token bucket refill rate).",
        number(0.0, 1_000_000.0),
    ),
    Option(
        "rate_burst",
        "Token bucket size: messages a connection may send at once.",
        integer(1, 1_000_000),
    ),
    Option(
        "abuse_refusals",
        "Rate-limit refusals within `abuse_window_s` after which the connection is "
        "closed for abuse (terminal).",
        integer(1, 1_000_000),
    ),
    Option("abuse_window_s", "Window of `abuse_refusals`, in seconds.", number(0.0, 3600.0)),
    Option(
        "actor_rate_per_s",
        "Messages per second one actor (a creator, or a staff member of an agency) may "
        "send over all its connections together (decision 0021).",
        number(0.0, 1_000_000.0),
    ),
    Option("actor_rate_burst", "Size of an actor's shared token bucket.", integer(1, 1_000_000)),
    Option(
        "max_connections_per_actor",
        "WebSocket connections one actor may have open at once; one more is closed "
        "with the retryable 4006 TOO_MANY_CONNECTIONS.",
        integer(1, 1_000_000),
    ),
    Option(
        "api_rate_per_s",
        "Writes (POST) per second one actor may make to the HTTP API; more are "
        "answered 429 RATE_LIMITED with `Retry-After`.",
        number(0.0, 1_000_000.0),
    ),
    Option(
        "api_rate_burst",
        "Writes one actor may make to the HTTP API at once.",
        integer(1, 1_000_000),
    ),
    Option(
        "send_buffer_bytes",
        "Bytes waiting to be sent to one connection before it is closed as a slow consumer.",
        integer(1024, 1 << 30),
    ),
    Option("heartbeat_s", "Seconds between server pings.", number(0.0, 3600.0)),
    Option(
        "idle_timeout_s",
        "Seconds without any traffic from a client before it is closed; more than `heartbeat_s`.",
        number(0.0, 86400.0),
    ),
    Option(
        "max_connections",
        "Open client connections (HTTP and WebSocket) past which a new one is answered "
        "HTTP 503 at once and closed. 0: 90 % of the file descriptors left after 64 for "
        "files, once `serve` has raised its soft limit to the hard limit.",
        integer(0, 10_000_000),
    ),
    Option(
        "handshake_timeout_s",
        "Seconds a connection has to send a whole HTTP request, or to complete the "
        "WebSocket handshake, from its first byte (from accept for the first request).",
        number(0.0, 600.0),
    ),
    Option(
        "hello_timeout_s",
        "Seconds a WebSocket has after the handshake to send `hello` before it is closed (4005).",
        number(0.0, 600.0),
    ),
    Option(
        "history_retention",
        "Events kept per room beyond the latest snapshot, for resume; older resumes "
        "get a snapshot instead.",
        integer(0, 100_000_000),
    ),
    Option("snapshot_interval", "Events between two snapshots of a room.", integer(1, 100_000_000)),
    Option(
        "room_idle_s",
        "Seconds a room goes unused (no member, no command, nothing being written) "
        "before it may leave memory; it is loaded again from its log when used.",
        number(1.0, 604800.0),
    ),
    Option("log_level", f"One of {', '.join(LOG_LEVELS)}.", log_level),
    Option(
        "redis_url",
        "Many nodes: everything nodes share (room logs, access, inbox, presence, the "
        "bus between nodes) goes to this Redis (`redis://`, `rediss://`, a password in "
        "the URL); the data path is then unused.",
        redis_url,
    ),
    Option(
        "redis_timeout_s",
        "Many nodes: seconds a connect to Redis, or a reply, may take before the command "
        "waiting for it is refused with the retryable 504 (never a hang); "
        "`socket_timeout` / `socket_connect_timeout` in the URL's query win.",
        number(0.0, 60.0),
    ),
)

_BY_NAME = {opt.name: opt for opt in OPTIONS}


def option(name: str) -> Option:
    """The option of a :class:`Settings` attribute (KeyError if there is none)."""
    return _BY_NAME[name]


def load_settings(env: Mapping[str, str], **overrides: object) -> Settings:
    """Settings from ``env`` (variables ``LIVEPILOT_*``), then ``overrides`` on top.

    Overrides are keyed by attribute name (``port=9000``) and may be typed values
    or strings (parsed as the environment's are); ``None`` means "not given", so
    parsed command-line flags can be passed as they come. Raises
    :class:`ConfigError` naming every bad variable or flag.
    """
    values: dict[str, object] = {}
    problems: list[tuple[str, str]] = []
    for opt in OPTIONS:
        if opt.env in env:
            try:
                values[opt.name] = opt.parse(env[opt.env])
            except ValueError as e:
                problems.append((opt.env, str(e)))
    for name, raw in overrides.items():
        given = _BY_NAME.get(name)
        if given is None:
            problems.append((name, "no such setting"))
            continue
        if raw is None:
            continue
        try:
            values[name] = given.parse(raw)
        except ValueError as e:
            problems.append((given.flag or name, str(e)))
    if problems:
        raise ConfigError(problems)
    settings = msgspec.convert(values, Settings)

    def source(name: str) -> str:
        opt = _BY_NAME[name]
        if overrides.get(name) is not None:
            return opt.flag or name
        return opt.env

    if settings.idle_timeout_s <= settings.heartbeat_s:
        idle_set = "idle_timeout_s" in values or "heartbeat_s" not in values
        raise ConfigError(
            [
                (
                    source("idle_timeout_s" if idle_set else "heartbeat_s"),
                    f"idle_timeout_s ({settings.idle_timeout_s:g} s) must be more than "
                    f"heartbeat_s ({settings.heartbeat_s:g} s)",
                )
            ]
        )
    return settings


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """``LIVEPILOT_*`` variables in ``env`` that name no setting (likely typos)."""
    known = {opt.env for opt in OPTIONS}
    return sorted(key for key in env if key.startswith(ENV_PREFIX) and key not in known)


def _show_default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return "`" + ",".join(value) + "`" if value else "empty"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def settings_table() -> str:
    """The configuration reference as a markdown table, for the README."""
    rows = [
        "| Environment variable | Flag | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for opt in OPTIONS:
        flag = f"`{opt.flag}`" if opt.flag else "—"
        meaning = opt.meaning.replace("|", "\\|")
        rows.append(f"| `{opt.env}` | {flag} | {_show_default(opt.default)} | {meaning} |")
    return "\n".join(rows) + "\n"


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
