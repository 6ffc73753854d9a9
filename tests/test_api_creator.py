"""The creator's endpoints (server/api_creator.py) end to end: answering requests
(R1-R5, R7), revoking access (R9) and the grants in force, the inbox (R14) and the
audit trail (R16), on a real app with a fake clock (tests/api_env.py). The pre- and
after-LIVE reads staff share are in tests/test_api_creator_live.py."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

from protocol.commands import BagPin, LiveEventSchedule, StartLive
from protocol.errors import Code
from protocol.model import Actor, LiveEvent
from server.domain.access import REQUEST_TTL_MS
from tests.actors import AGENCY, ANN, BOB, CREATOR_ID, EVE, OTHER_AGENCY, OTHER_CREATOR_ID
from tests.api_env import DAY, T0, Env, Opener, env_opener, expect_error, frames, running_env

_ = (env_opener, running_env)  # the fixtures, used by name


# --- R1: only the addressed creator answers -----------------------------------------------


async def test_creator_answers_only_own_requests(env: Env) -> None:
    """R1: only the addressed creator answers a request; unknown ids are 404."""
    sent = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    expect_error(await env.answer(rid, "accept", creator=OTHER_CREATOR_ID), 403, Code.FORBIDDEN)
    expect_error(await env.answer("no-such-request", "accept"), 404, Code.UNKNOWN_REQUEST)
    expect_error(await env.answer("bad id!", "decline"), 400, Code.WRONG_FIELD_TYPE)


async def test_staff_on_creator_endpoints(env: Env) -> None:
    """H6: staff cannot read a creator's inbox or trail, nor answer for the creator."""
    for path in ("/api/requests", "/api/notifications", "/api/audit"):
        expect_error(await env.client.get(path, headers=env.staff()), 403, Code.CREATOR_ONLY)
    sent = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    answer = await env.client.post(f"/api/requests/{rid}/accept", headers=env.staff())
    expect_error(answer, 403, Code.FORBIDDEN)
    revoke = await env.client.post("/api/revoke", json={"agency": AGENCY}, headers=env.staff())
    expect_error(revoke, 403, Code.FORBIDDEN)
    assert (await env.status())["status"] == "pending"


# --- R2: expiry ---------------------------------------------------------------------------


async def test_request_expires_after_seven_days(env: Env) -> None:
    """R2: accepting 7 days after sending is refused with REQUEST_EXPIRED."""
    sent = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    env.clock.advance(REQUEST_TTL_MS)
    listed = await env.client.get("/api/requests", headers=env.creator())
    assert [(r["request_id"], r["status"]) for r in listed.json()["requests"]] == [(rid, "expired")]
    hidden = await env.client.get("/api/requests?expired=0", headers=env.creator())
    assert hidden.json()["requests"] == []
    expect_error(await env.answer(rid, "accept"), 409, Code.REQUEST_EXPIRED)
    assert (await env.status())["status"] == "expired"


async def test_request_accepted_just_before_expiry(env: Env) -> None:
    """R2: one millisecond before the 7 days are up the request can still be accepted."""
    sent = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    env.clock.advance(REQUEST_TTL_MS - 1)
    accepted = await env.answer(sent.json()["request"]["request_id"], "accept")
    assert accepted.status_code == 200, accepted.text


# --- R3, R4: declining --------------------------------------------------------------------


async def test_decline_access_keeps_link(env: Env) -> None:
    """R3: declining an access request of a linked creator leaves the link as it was."""
    await env.link(with_access=False)
    sent = await env.request({"type": "request_access", "creator": CREATOR_ID})
    declined = await env.answer(sent.json()["request"]["request_id"], "decline")
    assert declined.status_code == 200, declined.text
    assert [e["type"] for e in declined.json()["events"]] == ["request_declined"]
    assert (await env.status())["status"] == "linked"
    assert env.runtime.access.grant_for(AGENCY, CREATOR_ID, env.clock()) is None


async def test_decline_bundled_request_leaves_no_link(env: Env) -> None:
    """R4: declining a bundled link+access request: no link comes into being."""
    sent = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    assert (await env.answer(rid, "decline")).status_code == 200
    assert (await env.status())["status"] == "none"
    expect_error(
        await env.request({"type": "request_access", "creator": CREATOR_ID}), 409, Code.NOT_LINKED
    )
    expect_error(await env.answer(rid, "accept"), 409, Code.REQUEST_CLOSED)


# --- R5: scopes ---------------------------------------------------------------------------


async def test_accept_with_scopes(env: Env) -> None:
    """R5: the creator limits the grant; the agency sees exactly those scopes."""
    await env.link(scopes=["planning", "bag"])
    status = await env.status()
    assert status["status"] == "access_granted"
    assert status["scopes"] == ["bag", "planning"]


async def test_accept_with_bad_scopes(env: Env) -> None:
    """R5: scopes outside what an agency may hold, or of the wrong type, are refused."""
    sent = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    expect_error(await env.answer(rid, "accept", {"scopes": ["live"]}), 400, Code.INVALID_ARGUMENT)
    expect_error(await env.answer(rid, "accept", {"scopes": ["nope"]}), 400, Code.WRONG_FIELD_TYPE)
    expect_error(await env.answer(rid, "accept", {"scopes": []}), 400, Code.INVALID_ARGUMENT)
    assert (await env.status())["status"] == "pending"


# --- R7: extension ------------------------------------------------------------------------


async def test_extension_accepted_moves_end_date(env: Env) -> None:
    """R7, R5: an accepted extension moves the link's (and access's) end date."""
    await env.link(ends_at=T0 + 30 * DAY)
    ext = await env.request(
        {"type": "request_extension", "creator": CREATOR_ID, "new_ends_at": T0 + 60 * DAY}
    )
    assert (await env.answer(ext.json()["request"]["request_id"], "accept")).status_code == 200
    env.clock.advance(45 * DAY)
    status = await env.status()
    assert (status["status"], status["ends_at"]) == ("access_granted", T0 + 60 * DAY)


# --- R9: revoke keeps the link ------------------------------------------------------------


async def test_revoke_keeps_link(env: Env) -> None:
    """R9: the creator revokes access; the link stays and staff are cut off at once."""
    await env.link()
    console = env.session(ANN)
    plan = LiveEventSchedule(
        command_id="c0",
        room=CREATOR_ID,
        event=LiveEvent(event_id="e0", title="Launch", starts_at=T0 + DAY),
    )
    assert (await env.command(console, plan))["type"] == "ack"
    revoked = await env.client.post("/api/revoke", json={"agency": AGENCY}, headers=env.creator())
    assert revoked.status_code == 200, revoked.text
    assert [e["type"] for e in revoked.json()["events"]] == ["access_revoked"]
    assert [f["status"] for f in frames(console) if f["type"] == "access_changed"] == ["revoked"]
    assert (await env.command(console, plan))["code"] == Code.NO_ACCESS
    assert (await env.status())["status"] == "revoked"  # still linked, access revoked
    again = await env.client.post("/api/revoke", json={"agency": AGENCY}, headers=env.creator())
    expect_error(again, 403, Code.NO_ACCESS)
    assert (await env.request({"type": "request_access", "creator": CREATOR_ID})).status_code == 201


# --- R5, R9: the grants in force ----------------------------------------------------------


async def grants(env: Env) -> list[dict[str, Any]]:
    """The creator's ``GET /api/grants``."""
    answer = await env.client.get("/api/grants", headers=env.creator())
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["grants"]
    return found


async def test_creator_lists_the_grants_in_force(env: Env) -> None:
    """R5, R9: the creator lists each agency holding LIVE Manager access - scopes,
    since when, the link's end date - and nothing else: not a link without access,
    not a revoked grant, not one past its link's end date."""
    assert await grants(env) == []
    rid = await env.link(scopes=["moderation", "bag"], ends_at=T0 + 30 * DAY)
    env.clock.advance(1000)
    await env.link(agency=OTHER_AGENCY, with_access=False)
    await env.link(agency="ag-3")
    env.clock.advance(1000)
    assert await grants(env) == [
        {
            "agency": AGENCY,
            "scopes": ["bag", "moderation"],
            "granted_at": T0,
            "ends_at": T0 + 30 * DAY,
            "link_id": rid,
            "request_id": rid,
        },
        {
            "agency": "ag-3",
            "scopes": ["bag", "promotion", "billboard", "moderation", "planning"],
            "granted_at": T0 + 1000,
            "ends_at": None,
            "link_id": ANY,
            "request_id": ANY,
        },
    ]
    revoked = await env.client.post("/api/revoke", json={"agency": "ag-3"}, headers=env.creator())
    assert revoked.status_code == 200, revoked.text
    assert [g["agency"] for g in await grants(env)] == [AGENCY]
    env.clock.advance(30 * DAY)  # the link's end date: access ends with it (R5)
    assert await grants(env) == []
    assert (await env.client.get("/api/grants", headers=env.creator(OTHER_CREATOR_ID))).json() == {
        "grants": []
    }


async def test_staff_cannot_list_a_creators_grants(env: Env) -> None:
    """R16: the grants are the creator's to read: staff are refused."""
    await env.link()
    expect_error(await env.client.get("/api/grants", headers=env.staff()), 403, Code.CREATOR_ONLY)


# --- R14: the inbox -----------------------------------------------------------------------


async def test_request_notified_in_inbox(env: Env) -> None:
    """R14: a request lands in the creator's inbox; it can be marked read."""
    await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    inbox = await env.client.get("/api/notifications", headers=env.creator())
    assert inbox.status_code == 200, inbox.text
    notes = inbox.json()["notifications"]
    assert len(notes) == 1
    assert notes[0]["kind"] == "agency_changed"
    assert AGENCY in notes[0]["text"]
    assert notes[0]["by"] == {"role": "staff", "id": "ann", "agency": AGENCY}
    assert notes[0]["read"] is False
    read = await env.client.post(
        "/api/notifications/read",
        json={"ids": [notes[0]["notification_id"]]},
        headers=env.creator(),
    )
    assert read.json() == {"changed": 1}
    unread = await env.client.get("/api/notifications?unread=1", headers=env.creator())
    assert unread.json()["notifications"] == []
    other = await env.client.get("/api/notifications", headers=env.creator(OTHER_CREATOR_ID))
    assert other.json()["notifications"] == []


async def test_the_inbox_keeps_every_notification_for_the_longest_ids(env: Env) -> None:
    """R14: with a creator id and agency ids as long as an Id may be (128), every
    notification lands in the inbox: none is cut short into another's id."""
    creator = "c" * 127 + "1"
    agencies = ["a" * 127 + "1", "a" * 127 + "2"]
    sent = [
        await env.request(
            {"type": "request_link", "creator": creator, "with_access": True}, agency=agency
        )
        for agency in agencies
    ]  # in the same millisecond
    assert [answer.status_code for answer in sent] == [201, 201]
    accepted = await env.answer(sent[0].json()["request"]["request_id"], "accept", creator=creator)
    assert accepted.status_code == 200, accepted.text
    ann = env.session(Actor(role="staff", id="ann", agency=agencies[0]))
    for n in range(12):
        command = LiveEventSchedule(
            command_id=f"s{n}",
            room=creator,
            event=LiveEvent(event_id=f"e{n}", title="Show", starts_at=T0 + DAY),
        )
        assert (await env.command(ann, command))["type"] == "ack"
    answer = await env.client.get("/api/notifications", headers=env.creator(creator))
    notes = answer.json()["notifications"]
    assert sorted(n["kind"] for n in notes) == ["agency_changed"] * 2 + ["agency_created"] * 12
    assert len({n["notification_id"] for n in notes}) == 14


# --- R16: the audit trail -----------------------------------------------------------------


async def test_audit_trail_keeps_real_actor_and_filters(env: Env) -> None:
    """R16: the creator reads every action with its real staff actor, filterable."""
    await env.link(scopes=["planning"])  # t0: ann sends, the creator accepts
    env.clock.advance(1000)
    await env.link(agency=OTHER_AGENCY)  # t0+1s: ann of ag-2 sends, the creator accepts
    env.clock.advance(1000)
    bob = env.session(BOB)
    schedule = LiveEventSchedule(
        command_id="c1",
        room=CREATOR_ID,
        event=LiveEvent(event_id="e1", title="Launch", starts_at=T0 + DAY),
    )
    assert (await env.command(bob, schedule))["type"] == "ack"
    pin = BagPin(command_id="c2", room=CREATOR_ID, product_id="p1")
    assert (await env.command(bob, pin))["code"] == Code.OUT_OF_SCOPE  # refused, audited

    async def trail(query: str = "") -> list[dict[str, Any]]:
        answer = await env.client.get(f"/api/audit{query}", headers=env.creator())
        assert answer.status_code == 200, answer.text
        entries: list[dict[str, Any]] = answer.json()["entries"]
        return entries

    everything = await trail()
    assert [
        (e["actor"]["id"], e["actor"].get("agency"), e["action"], e["code"]) for e in everything
    ] == [
        ("bob", AGENCY, "bag_pin", Code.OUT_OF_SCOPE),
        ("bob", AGENCY, "live_event_schedule", None),
        (CREATOR_ID, None, "accept_request", None),
        ("ann", OTHER_AGENCY, "request_link", None),
        (CREATOR_ID, None, "accept_request", None),
        ("ann", AGENCY, "request_link", None),
    ]
    assert [e["action"] for e in await trail("?staff=bob")] == ["bag_pin", "live_event_schedule"]
    assert [e["actor"]["agency"] for e in await trail("?staff=ann")] == [OTHER_AGENCY, AGENCY]
    assert [e["action"] for e in await trail(f"?agency={OTHER_AGENCY}")] == ["request_link"]
    assert [e["action"] for e in await trail("?family=planning")] == ["live_event_schedule"]
    assert [e["actor"]["id"] for e in await trail(f"?since={T0 + 1000}&until={T0 + 2000}")] == [
        CREATOR_ID,
        "ann",
    ]
    assert len(await trail("?limit=2")) == 2
    other = await env.client.get("/api/audit", headers=env.creator(OTHER_CREATOR_ID))
    assert other.json()["entries"] == []


async def test_audit_query_parameters_checked(env: Env) -> None:
    """R16: out-of-range or malformed filters are refused with INVALID_ARGUMENT."""
    for query in ("?limit=0", "?limit=1001", "?since=-1", "?until=soon", "?staff=a/b"):
        answer = await env.client.get(f"/api/audit{query}", headers=env.creator())
        expect_error(answer, 400, Code.INVALID_ARGUMENT)


# --- R16: whose refusals reach a creator's trail ------------------------------------------


async def trail(env: Env, creator: str = CREATOR_ID) -> list[tuple[str, str, int | None]]:
    """The creator's audit trail as (actor id, action, code), newest first."""
    answer = await env.client.get("/api/audit", headers=env.creator(creator))
    assert answer.status_code == 200, answer.text
    return [(e["actor"]["id"], e["action"], e["code"]) for e in answer.json()["entries"]]


def unaudited(env: Env, source: str, code: Code) -> float:
    """How many refusals of strangers the metrics counted (source: room or access)."""
    value = env.runtime.metrics.registry.get_sample_value(
        "livepilot_unaudited_refusals_total", {"source": source, "code": code.name}
    )
    return value or 0.0


def schedule(cid: str) -> LiveEventSchedule:
    """A pre-LIVE command to the creator's room."""
    return LiveEventSchedule(
        command_id=cid,
        room=CREATOR_ID,
        event=LiveEvent(event_id=cid, title="Launch", starts_at=T0 + DAY),
    )


async def test_a_strangers_refused_room_command_is_counted_not_audited(env: Env) -> None:
    """R16: staff of an agency not linked to the creator, and another creator, are
    refused without writing to the creator's trail: the refusal is counted instead."""
    eve = env.session(EVE)
    assert (await env.command(eve, schedule("c1")))["code"] == Code.NO_ACCESS
    other = env.session(Actor(role="creator", id=OTHER_CREATOR_ID))
    assert (await env.command(other, StartLive(command_id="c2", room=CREATOR_ID)))[
        "code"
    ] == Code.FORBIDDEN
    assert await trail(env) == []
    assert await trail(env, OTHER_CREATOR_ID) == []  # nor in the stranger's own
    assert unaudited(env, "room", Code.NO_ACCESS) == 1
    assert unaudited(env, "room", Code.FORBIDDEN) == 1


async def test_a_linked_agencys_refused_room_command_is_audited(env: Env) -> None:
    """R16, R10: staff of a linked agency - with access out of scope, or with access
    revoked and the link kept (R9) - have their refusals on the creator's trail."""
    await env.link(scopes=["planning"])
    ann = env.session(ANN)
    assert (await env.command(ann, StartLive(command_id="c1", room=CREATOR_ID)))[
        "code"
    ] == Code.CREATOR_ONLY
    assert (await env.command(ann, BagPin(command_id="c2", room=CREATOR_ID, product_id="p")))[
        "code"
    ] == Code.OUT_OF_SCOPE
    revoked = await env.client.post("/api/revoke", json={"agency": AGENCY}, headers=env.creator())
    assert revoked.status_code == 200, revoked.text
    bob = env.session(BOB)
    assert (await env.command(bob, schedule("c3")))["code"] == Code.NO_ACCESS
    assert (await trail(env))[:3] == [
        ("bob", "live_event_schedule", Code.NO_ACCESS),
        (CREATOR_ID, "revoke_access", None),
        ("ann", "bag_pin", Code.OUT_OF_SCOPE),
    ]
    assert ("ann", "start_live", Code.CREATOR_ONLY) in await trail(env)
    assert unaudited(env, "room", Code.NO_ACCESS) == 0


async def test_a_strangers_refused_access_command_is_counted_not_audited(env: Env) -> None:
    """R16: access commands about a creator from callers with no relation to them
    (another creator answering, an unlinked agency asking for access) stay out of
    that creator's trail; the same agency's applied request is on it (R1, R14)."""
    sent = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    expect_error(await env.answer(rid, "accept", creator=OTHER_CREATOR_ID), 403, Code.FORBIDDEN)
    asked = await env.request(
        {"type": "request_access", "creator": CREATOR_ID}, agency=OTHER_AGENCY
    )
    expect_error(asked, 409, Code.NOT_LINKED)
    again = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    expect_error(again, 409, Code.REQUEST_PENDING)  # a pending request is not a link
    assert await trail(env) == [("ann", "request_link", None)]
    assert await trail(env, OTHER_CREATOR_ID) == []
    assert unaudited(env, "access", Code.FORBIDDEN) == 1
    assert unaudited(env, "access", Code.NOT_LINKED) == 1
    assert unaudited(env, "access", Code.REQUEST_PENDING) == 1


async def test_a_linked_agencys_refused_access_command_is_audited(env: Env) -> None:
    """R16: once linked, the agency's refused access commands are on the trail."""
    await env.link()
    again = await env.request({"type": "request_access", "creator": CREATOR_ID})
    expect_error(again, 409, Code.ALREADY_GRANTED)
    assert (await trail(env))[0] == ("ann", "request_access", Code.ALREADY_GRANTED)
    assert unaudited(env, "access", Code.ALREADY_GRANTED) == 0


# --- durability ---------------------------------------------------------------------------


async def test_access_inbox_and_audit_survive_restart(open_env: Opener) -> None:
    """R5, R14, R16: after a restart on the same file, grant, inbox and trail are there."""
    async for env in open_env():
        await env.link(scopes=["bag"])
    async for env in open_env():
        grant = env.runtime.access.grant_for(AGENCY, CREATOR_ID, env.clock())
        assert grant is not None
        assert grant.scopes == frozenset({"bag"})
        inbox = (await env.client.get("/api/notifications", headers=env.creator())).json()
        assert len(inbox["notifications"]) >= 1
        audit = (await env.client.get("/api/audit", headers=env.creator())).json()
        assert [e["action"] for e in audit["entries"]] == ["accept_request", "request_link"]
