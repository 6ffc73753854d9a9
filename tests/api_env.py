"""What the HTTP API's tests share: a real app (SQLite file, lifespan driven by hand)
on a fake clock, a client on it, and helpers to send requests, answer them and
run room commands through the hub as the WebSocket endpoint would.

The fixtures ``open_env`` and ``env`` are imported into the test modules (as
``env_opener`` and ``running_env``, so a test's ``env`` shadows no import).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from protocol.codec import Codec
from protocol.commands import RoomCommand
from protocol.errors import Code
from protocol.model import Actor
from server.app import create_app
from server.auth import mint
from server.config import Settings, load_settings
from server.hub.session import Session
from server.runtime import Runtime
from tests.actors import AGENCY, CREATOR_ID
from tests.lifespan import lifespan_running

T0 = 1_700_000_000_000
DAY = 24 * 3600 * 1000


class Clock:
    """A clock the test moves by hand (milliseconds since the epoch)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        """Move time forward."""
        self.now += ms


@dataclass
class Env:
    """A running app, a client on it and its clock."""

    app: Starlette
    client: httpx.AsyncClient
    clock: Clock
    settings: Settings

    @property
    def runtime(self) -> Runtime:
        """The app's runtime (open while the lifespan runs)."""
        runtime: Runtime = self.app.state.runtime
        return runtime

    def creator(self, creator: str = CREATOR_ID, ttl_s: int = 3600) -> dict[str, str]:
        """Headers of a creator."""
        token = mint(self.settings, creator=creator, ttl_s=ttl_s, now=self.clock())
        return {"Authorization": f"Bearer {token}"}

    def staff(self, staff: str = "ann", agency: str = AGENCY) -> dict[str, str]:
        """Headers of a staff member."""
        token = mint(self.settings, agency=agency, staff=staff, now=self.clock())
        return {"Authorization": f"Bearer {token}"}

    async def request(
        self, body: dict[str, Any], staff: str = "ann", agency: str = AGENCY
    ) -> httpx.Response:
        """A staff member sends a request."""
        return await self.client.post("/api/requests", json=body, headers=self.staff(staff, agency))

    async def link(
        self,
        *,
        with_access: bool = True,
        ends_at: int | None = None,
        agency: str = AGENCY,
        creator: str = CREATOR_ID,
        scopes: list[str] | None = None,
    ) -> str:
        """Request a link and have the creator accept it; the request id."""
        body: dict[str, Any] = {
            "type": "request_link",
            "creator": creator,
            "with_access": with_access,
            "ends_at": ends_at,
        }
        sent = await self.request(body, agency=agency)
        assert sent.status_code == 201, sent.text
        rid: str = sent.json()["request"]["request_id"]
        accept_body = None if scopes is None else {"scopes": scopes}
        accepted = await self.answer(rid, "accept", accept_body, creator=creator)
        assert accepted.status_code == 200, accepted.text
        return rid

    async def answer(
        self, rid: str, how: str, body: dict[str, Any] | None = None, creator: str = CREATOR_ID
    ) -> httpx.Response:
        """The creator accepts or declines a request."""
        return await self.client.post(
            f"/api/requests/{rid}/{how}", json=body, headers=self.creator(creator)
        )

    async def status(self, creator: str = CREATOR_ID, agency: str = AGENCY) -> dict[str, Any]:
        """The creator's entry in the agency's list."""
        answer = await self.client.get("/api/creators", headers=self.staff(agency=agency))
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = [
            c for c in answer.json()["creators"] if c["creator"] == creator
        ]
        return found[0] if found else {"status": "unknown"}

    def session(self, actor: Actor) -> Session:
        """A hub session (as the WebSocket endpoint makes one), connected."""
        session = Session(f"s-{actor.id}", actor, Codec("json"), T0 + 10 * DAY, 1 << 20)
        self.runtime.hub.connect(session)
        return session

    async def command(self, session: Session, command: RoomCommand) -> dict[str, Any]:
        """Send a room command through the hub; its answer (ack or refused)."""
        await self.runtime.hub.command(session, command)
        for frame in frames(session):
            if frame["type"] in ("ack", "refused") and frame["command_id"] == command.command_id:
                return frame
        raise AssertionError(f"no answer to {command.command_id}")


def frames(session: Session) -> Iterator[dict[str, Any]]:
    """The frames queued for a session, decoded."""
    for raw in session.take_frames():
        yield json.loads(raw)


def expect_error(answer: httpx.Response, status: int, code: Code) -> dict[str, Any]:
    """Assert an error answer and its JSON body."""
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == code
    assert body["name"] == code.name
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["retryable"] is (500 <= code < 600)
    return body


Opener = Callable[..., AsyncIterator[Env]]


@pytest.fixture(name="open_env")
def env_opener(tmp_path: Path) -> Opener:
    """A factory of running apps on one data file (a second one is a restart)."""
    clock = Clock()

    async def start(**overrides: Any) -> AsyncIterator[Env]:
        settings = load_settings({}, data_path=str(tmp_path / "db.sqlite"), **overrides)
        app = create_app(settings, clock=clock)
        async with lifespan_running(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                yield Env(app, client, clock, settings)

    return start


@pytest.fixture(name="env")
async def running_env(open_env: Opener) -> AsyncIterator[Env]:
    """A running app on a fresh data file."""
    async for running in open_env():
        yield running
