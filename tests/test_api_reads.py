"""The HTTP API end to end, for a console: whose refusals reach a creator's audit
trail (R16), the grants in force a creator can revoke (R5, R9) and the pre-LIVE
plan staff list (R12). A real app on a fake clock, as in :mod:`tests.test_api`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from protocol.commands import BagPin, LiveEventSchedule, StartLive
from protocol.errors import Code
from protocol.model import Actor, LiveEvent
from server.app import create_app
from server.config import load_settings
from tests.lifespan import lifespan_running
from tests.test_api import AGENCY, CREATOR, DAY, OTHER_AGENCY, T0, Clock, Env, expect_error


@pytest.fixture(name="env")
async def running_env(tmp_path: Path) -> AsyncIterator[Env]:
    """A running app on a fresh data file (as :mod:`tests.test_api`'s ``env``)."""
    settings = load_settings({}, data_path=str(tmp_path / "db.sqlite"))
    clock = Clock()
    app = create_app(settings, clock=clock)
    async with lifespan_running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            yield Env(app, client, clock, settings)


async def trail(env: Env, creator: str = CREATOR) -> list[tuple[str, str, int | None]]:
    """The creator's audit trail as (actor id, action, code), newest first."""
    answer = await env.client.get("/api/audit", headers=env.creator(creator))
    assert answer.status_code == 200, answer.text
    return [(e["actor"]["id"], e["action"], e["code"]) for e in answer.json()["entries"]]


def unaudited(env: Env, source: str, code: Code) -> float:
    """How many refusals of strangers the metrics counted (source: room or access)."""
    value = env.runtime.metrics.registry.get_sample_value(
        "livepilot_unaudited_refusals_total", {"source": source, "code": code.name})
    return value or 0.0


def schedule(cid: str) -> LiveEventSchedule:
    """A pre-LIVE command to the creator's room."""
    return LiveEventSchedule(command_id=cid, room=CREATOR, event=LiveEvent(
        event_id=cid, title="Launch", starts_at=T0 + DAY))


# --- R16: whose refusals reach a creator's trail ----------------------------------------


async def test_a_strangers_refused_room_command_is_counted_not_audited(env: Env) -> None:
    """R16: staff of an agency not linked to the creator, and another creator, are
    refused without writing to the creator's trail: the refusal is counted instead."""
    eve = env.session(Actor(role="staff", id="eve", agency=OTHER_AGENCY))
    assert (await env.command(eve, schedule("c1")))["code"] == Code.NO_ACCESS
    other = env.session(Actor(role="creator", id="cr-2"))
    assert (await env.command(other, StartLive(command_id="c2", room=CREATOR)))[
        "code"] == Code.FORBIDDEN
    assert await trail(env) == []
    assert await trail(env, "cr-2") == []  # nor in the stranger's own
    assert unaudited(env, "room", Code.NO_ACCESS) == 1
    assert unaudited(env, "room", Code.FORBIDDEN) == 1


async def test_a_linked_agencys_refused_room_command_is_audited(env: Env) -> None:
    """R16, R10: staff of a linked agency - with access out of scope, or with access
    revoked and the link kept (R9) - have their refusals on the creator's trail."""
    await env.link(scopes=["planning"])
    ann = env.session(Actor(role="staff", id="ann", agency=AGENCY))
    assert (await env.command(ann, StartLive(command_id="c1", room=CREATOR)))[
        "code"] == Code.CREATOR_ONLY
    assert (await env.command(ann, BagPin(command_id="c2", room=CREATOR, product_id="p")))[
        "code"] == Code.OUT_OF_SCOPE
    revoked = await env.client.post("/api/revoke", json={"agency": AGENCY},
                                    headers=env.creator())
    assert revoked.status_code == 200, revoked.text
    bob = env.session(Actor(role="staff", id="bob", agency=AGENCY))
    assert (await env.command(bob, schedule("c3")))["code"] == Code.NO_ACCESS
    assert (await trail(env))[:3] == [
        ("bob", "live_event_schedule", Code.NO_ACCESS),
        (CREATOR, "revoke_access", None),
        ("ann", "bag_pin", Code.OUT_OF_SCOPE),
    ]
    assert ("ann", "start_live", Code.CREATOR_ONLY) in await trail(env)
    assert unaudited(env, "room", Code.NO_ACCESS) == 0


async def test_a_strangers_refused_access_command_is_counted_not_audited(env: Env) -> None:
    """R16: access commands about a creator from callers with no relation to them
    (another creator answering, an unlinked agency asking for access) stay out of
    that creator's trail; the same agency's applied request is on it (R1, R14)."""
    sent = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    expect_error(await env.answer(rid, "accept", creator="cr-2"), 403, Code.FORBIDDEN)
    asked = await env.request({"type": "request_access", "creator": CREATOR},
                              agency=OTHER_AGENCY)
    expect_error(asked, 409, Code.NOT_LINKED)
    again = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    expect_error(again, 409, Code.REQUEST_PENDING)  # a pending request is not a link
    assert await trail(env) == [("ann", "request_link", None)]
    assert await trail(env, "cr-2") == []
    assert unaudited(env, "access", Code.FORBIDDEN) == 1
    assert unaudited(env, "access", Code.NOT_LINKED) == 1
    assert unaudited(env, "access", Code.REQUEST_PENDING) == 1


async def test_a_linked_agencys_refused_access_command_is_audited(env: Env) -> None:
    """R16: once linked, the agency's refused access commands are on the trail."""
    await env.link()
    again = await env.request({"type": "request_access", "creator": CREATOR})
    expect_error(again, 409, Code.ALREADY_GRANTED)
    assert (await trail(env))[0] == ("ann", "request_access", Code.ALREADY_GRANTED)
    assert unaudited(env, "access", Code.ALREADY_GRANTED) == 0
