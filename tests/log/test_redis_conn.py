"""Connecting to Redis (a server or a Cluster, from the URL alone), the hash tags,
and the start-up check of the persistence settings acked commands rely on (H4)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from server.log.redis_conn import (
    check_persistence,
    connect,
    creator_key,
    persistence_warnings,
    warn_about_persistence,
)
from tests.redis_fixtures import RedisProcess

pytestmark = pytest.mark.redis


async def test_connect_finds_out_a_cluster(redis_url: str, redis_cluster_url: str) -> None:
    """One URL switch: a Cluster node's URL gives a Cluster client, a server's a plain one."""
    plain, cluster = await connect(redis_url), await connect(redis_cluster_url)
    assert type(plain) is Redis
    assert isinstance(cluster, RedisCluster)
    assert await plain.ping()
    await plain.aclose()
    await cluster.aclose()


def test_keys_of_a_creator_share_one_hash_tag() -> None:
    """Every key of a room or creator carries ``{creator}``: one Cluster slot."""
    assert creator_key("lp", "cr-1", "events") == "lp:{cr-1}:events"
    with pytest.raises(ValueError, match="braces"):
        creator_key("lp", "a}b", "events")


async def test_the_settings_h4_needs_raise_no_warning(redis_durable: RedisProcess) -> None:
    """appendonly yes, appendfsync always, noeviction: nothing to warn about."""
    # H4
    client = await connect(redis_durable.url)
    assert await check_persistence(client) == []
    await client.aclose()


async def test_settings_that_lose_acked_commands_are_warned(
    redis_durable: RedisProcess,
) -> None:
    """everysec (up to 1 s lost), no AOF at all, and an evicting memory policy each
    get a warning naming the server."""
    # H4
    client = await connect(redis_durable.url)
    await client.config_set("appendfsync", "everysec")
    [everysec] = await check_persistence(client)
    assert "up to 1 s of acked commands" in everysec
    assert f"127.0.0.1:{redis_durable.port}" in everysec
    await client.config_set("appendonly", "no")
    await client.config_set("maxmemory-policy", "allkeys-lru")
    warnings = await check_persistence(client)
    assert len(warnings) == 2
    assert "appendonly is not yes" in warnings[0]
    assert "evicts" in warnings[1]
    await client.aclose()


async def test_the_warnings_are_logged_loudly(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At start each warning goes to the log at WARNING level."""
    # H4
    client = await connect(redis_url)
    with caplog.at_level("WARNING", logger="livepilot.redis"):
        warnings = await warn_about_persistence(client)
    assert warnings
    assert [r.levelname for r in caplog.records] == ["WARNING"] * len(warnings)
    assert "appendonly is not yes" in caplog.records[0].getMessage()
    await client.aclose()


async def test_every_cluster_primary_is_checked(redis_cluster_url: str) -> None:
    """On a Cluster each primary's settings are read: three masters, three warnings."""
    # H4
    client = await connect(redis_cluster_url)
    warnings = await check_persistence(client)
    assert len(warnings) == 3
    assert all("appendonly is not yes" in w for w in warnings)
    await client.aclose()


def test_appendfsync_no_is_warned_as_the_os_choice() -> None:
    """appendfsync no leaves the flush to the OS: ~30 s of acked commands at risk."""
    # H4
    [warning] = persistence_warnings(
        "n1", {"appendonly": "yes", "appendfsync": "no", "maxmemory-policy": "noeviction"}
    )
    assert "~30 s" in warning


async def test_unreadable_settings_are_a_warning_too(redis_durable: RedisProcess) -> None:
    """A server that refuses CONFIG GET (a managed Redis) gets one warning: check by hand."""
    client = await connect(redis_durable.url)
    await client.execute_command(
        "ACL", "SETUSER", "limited", "on", "nopass", "+@all", "-config", "~*"
    )
    await client.aclose()
    limited = Redis.from_url(f"redis://limited@127.0.0.1:{redis_durable.port}/0")
    [warning] = await check_persistence(limited)
    assert "check by hand" in warning
    await limited.aclose()


async def test_clients_have_bounded_timeouts_the_url_can_set(
    redis_url: str, redis_cluster_url: str
) -> None:
    """Every client connects and waits for replies at most 1 s by default (or the
    given bound); ``socket_timeout`` in the URL's query wins, as redis-py does."""
    # H6: a hung Redis is a retryable refusal, never a hang
    plain = await connect(redis_url)
    assert isinstance(plain, Redis)
    kwargs = plain.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1.0, 1.0)
    await plain.aclose()
    shorter = await connect(redis_url, timeout_s=0.25)
    assert isinstance(shorter, Redis)
    assert shorter.connection_pool.connection_kwargs["socket_timeout"] == 0.25
    await shorter.aclose()
    query = await connect(f"{redis_url}?socket_timeout=0.5&socket_connect_timeout=0.3")
    assert isinstance(query, Redis)
    kwargs = query.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.5, 0.3)
    await query.aclose()
    cluster = await connect(redis_cluster_url)
    assert isinstance(cluster, RedisCluster)
    node = cluster.get_default_node()
    assert node is not None
    assert node.connection_kwargs["socket_timeout"] == 1.0
    await cluster.aclose()


async def test_a_dead_redis_fails_a_command_at_once(tmp_path: Path) -> None:
    """Redis gone: a command fails within 1 s (one try, no backoff), and the same
    client works again once Redis is back on its port (H6)."""
    server = RedisProcess(tmp_path / "r", "--save", "", "--appendonly", "no")
    server.start()
    try:
        client = await connect(server.url)
        assert await client.set("k", "1")
        server.kill()
        started = time.monotonic()
        with anyio.fail_after(5), pytest.raises(RedisError):
            await client.get("k")
        assert time.monotonic() - started < 1.0
        server.start()
        assert await client.ping()  # the pooled connection Redis dropped is replaced
        await client.aclose()
    finally:
        server.stop()
