"""The API's route table (server/api.py): anything else under ``/api`` is a JSON
404, a known path with another method a JSON 405 naming the allowed ones (H6)."""

from __future__ import annotations

from protocol.errors import Code
from tests.api_env import Env, env_opener, expect_error, running_env

_ = (env_opener, running_env)  # the fixtures, used by name


async def test_unknown_path_and_wrong_method(env: Env) -> None:
    """H6: unknown API paths are JSON 404s; a known path with another method is a 405."""
    expect_error(await env.client.get("/api/nothing-here"), 404, Code.NOT_FOUND)
    wrong = await env.client.delete("/api/requests", headers=env.creator())
    expect_error(wrong, 405, Code.BAD_REQUEST)
    assert wrong.headers["allow"] == "GET, HEAD, POST"
