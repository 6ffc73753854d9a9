"""Fixtures every test package may use: the Redis servers (tests/redis_fixtures.py)."""

from tests.redis_fixtures import redis_cluster_url, redis_durable, redis_url

__all__ = ["redis_cluster_url", "redis_durable", "redis_url"]
