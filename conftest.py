"""Root hooks: the Redis servers every test package may use (tests/redis_fixtures.py),
registered once as a plugin so the session's servers start once."""

pytest_plugins = ["tests.redis_fixtures"]
