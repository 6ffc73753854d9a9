"""Talking to Redis: connecting (one server or a Cluster, found out from the URL's
server), running Lua scripts by SHA, the key layout, and the start-up check of the
persistence settings an acked command's durability depends on (H4, decision 0024).

Every key of a room or a creator carries the hash tag ``{<id>}`` (room id =
creator id), so everything one room append touches - its stream, keys, grants -
is in one Cluster slot. Ids cannot contain braces (``protocol.model.Id``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.typing import EncodableT

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "RedisClient",
    "Script",
    "check_persistence",
    "client_options",
    "connect",
    "creator_key",
    "run_batch",
    "tagged",
    "warn_about_persistence",
]

logger = logging.getLogger("livepilot.redis")

RedisClient = Redis | RedisCluster
"""One Redis server, or a Redis Cluster (every command here runs on either)."""


DEFAULT_TIMEOUT_S: Final = 1.0
"""How long a connect, or a command's reply, may take before it fails (H6: Redis down
is a retryable refusal within 1 s, never a hang)."""


def client_options(timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """The options every client to Redis gets: bounded connect and reply times, and
    one immediate retry on a broken connection only - a pooled connection Redis
    closed when it restarted is replaced at once, while a Redis that is down fails
    in one try, not after redis-py's default ten with backoff. A timeout is never
    retried (that would double the wait). ``socket_timeout`` and
    ``socket_connect_timeout`` in the URL's query win over these (redis-py)."""
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }


async def connect(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> RedisClient:
    """A client for ``url``: a :class:`RedisCluster` when that server is a Cluster
    node, else a plain :class:`Redis` (the one switch: ``--redis-url``). Replies
    are bytes. redis-py uses the hiredis parser when ``hiredis`` is installed.
    Every connect and reply is bounded by ``timeout_s`` (:func:`client_options`)."""
    options = client_options(timeout_s)
    plain = Redis.from_url(url, **options)
    try:
        info = await plain.info("cluster")
    except BaseException:
        await plain.aclose()
        raise
    if not info.get("cluster_enabled"):
        return plain
    await plain.aclose()
    cluster = RedisCluster.from_url(url, **options)
    await cluster.initialize()
    return cluster


def tagged(prefix: str, owner: str) -> str:
    """The start of every key of a room or creator: ``<prefix>:{<owner>}``."""
    if "{" in owner or "}" in owner:
        raise ValueError(f"an id cannot contain braces: {owner!r}")
    return f"{prefix}:{{{owner}}}"


def creator_key(prefix: str, creator: str, name: str) -> str:
    """The key ``name`` of a creator (or of their room): ``<prefix>:{<creator>}:<name>``."""
    return f"{tagged(prefix, creator)}:{name}"


class Script:
    """A Lua script run by SHA (loaded once per server; loaded again when a server
    answers NOSCRIPT: a restart or a failover empties the script cache)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def load(self, client: RedisClient) -> None:
        """Load the script on the server (on every primary of a Cluster)."""
        await client.script_load(self.source)

    async def __call__(
        self, client: RedisClient, keys: Sequence[str], args: Sequence[EncodableT]
    ) -> object:
        """Run the script with ``keys`` (all in one slot) and ``args``."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.load(client)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


Call = tuple[Sequence[str], Sequence[EncodableT]]
"""The keys and arguments of one run of a script."""


async def run_batch(client: RedisClient, script: Script, calls: Sequence[Call]) -> list[object]:
    """Run ``script`` once per call, in order, in one pipeline (one round trip per
    server); each reply, or the error of that call, in call order. Calls that found
    the script missing are sent again, in order, once it is loaded: every script
    here is safe to resend when it did not run (the room append is conditional
    on its seq anyway). A broken connection raises."""
    replies = await _pipeline(client, script, calls)
    again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if again:
        await script.load(client)
        resent = await _pipeline(client, script, [calls[i] for i in again])
        for i, reply in zip(again, resent, strict=True):
            replies[i] = reply
    return replies


async def _pipeline(client: RedisClient, script: Script, calls: Sequence[Call]) -> list[object]:
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


# --- the persistence check ----------------------------------------------------------

SETTINGS: Final = ("appendonly", "appendfsync", "maxmemory-policy")


def persistence_warnings(node: str, settings: dict[str, str]) -> list[str]:
    """What ``settings`` (of CONFIG GET) of one server can lose of acked commands (H4)."""
    warnings: list[str] = []
    if settings.get("appendonly") != "yes":
        warnings.append(
            f"{node}: appendonly is not yes: a restart of Redis loses every acked command "
            "since its last RDB snapshot (H4 needs appendonly yes, appendfsync always)"
        )
    else:
        match settings.get("appendfsync"):
            case "always":
                pass
            case "everysec":
                warnings.append(
                    f"{node}: appendfsync is everysec: a crash of the Redis host can lose "
                    "up to 1 s of acked commands (H4 needs appendfsync always)"
                )
            case other:
                warnings.append(
                    f"{node}: appendfsync is {other}: the OS writes the AOF when it likes, "
                    "a crash of the Redis host can lose ~30 s of acked commands "
                    "(H4 needs appendfsync always)"
                )
    policy = settings.get("maxmemory-policy")
    if policy != "noeviction":
        warnings.append(
            f"{node}: maxmemory-policy is {policy}: under memory pressure Redis evicts "
            "keys - room logs, grants, the audit trail (use noeviction)"
        )
    return warnings


async def check_persistence(client: RedisClient) -> list[str]:
    """Read the persistence settings of the server (every primary of a Cluster) and
    say, one line each, what they can lose of acked commands; ``[]`` when nothing.

    Call at start and log each line as a warning: an ack is durable only as far
    as Redis persists the append it waited for (decision 0024)."""
    try:
        if isinstance(client, RedisCluster):
            answers: object = await client.config_get(
                *SETTINGS, target_nodes=RedisCluster.PRIMARIES
            )
            per_node = dict(answers) if isinstance(answers, dict) else {}
        else:
            kwargs = client.connection_pool.connection_kwargs
            name = f"{kwargs.get('host', 'redis')}:{kwargs.get('port', '')}"
            per_node = {name: await client.config_get(*SETTINGS)}
    except RedisError as exc:
        return [
            f"cannot read the Redis persistence settings ({exc}): check by hand that "
            "appendonly is yes, appendfsync always and maxmemory-policy noeviction"
        ]
    warnings: list[str] = []
    for node, raw in sorted(per_node.items(), key=lambda item: _text(item[0])):
        pairs = raw.items() if isinstance(raw, dict) else ()
        settings = {_text(k): _text(v) for k, v in pairs}
        warnings.extend(persistence_warnings(_text(node), settings))
    return warnings


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def warn_about_persistence(client: RedisClient) -> list[str]:
    """:func:`check_persistence`, each line logged as a warning: call it at start."""
    warnings = await check_persistence(client)
    for line in warnings:
        logger.warning("Redis can lose acknowledged commands: %s", line)
    return warnings
