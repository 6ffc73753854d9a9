"""The Redis fixtures' own rule: without redis-server a test skips, except in CI."""

from __future__ import annotations

import pytest

from tests import redis_fixtures
from tests.redis_fixtures import need_redis


def test_without_redis_server_tests_skip_outside_ci_and_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing binary skips locally, but fails under CI=true: CI installs Redis, so a
    skip there would hide a broken setup."""
    monkeypatch.setattr(redis_fixtures, "REDIS_SERVER", None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        need_redis()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        need_redis()
