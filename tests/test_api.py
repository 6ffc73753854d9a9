"""The HTTP API end to end: the access story (R1-R9) over HTTP, the inbox (R14),
the audit trail (R16), after-LIVE figures and account health (R12), auth and bad
input (H6). Each test runs a real app (SQLite file, lifespan driven by hand) on
a fake clock."""

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
from protocol.commands import (
    BagPin,
    EndLive,
    FeedOrder,
    FeedViewers,
    FeedViolation,
    LiveEventSchedule,
    RoomCommand,
    StartLive,
)
from protocol.errors import Code
from protocol.model import Actor, LiveEvent, Viewer, Violation
from server.app import create_app
from server.auth import mint
from server.config import Settings, load_settings
from server.domain.access import REQUEST_TTL_MS
from server.hub.session import Session
from server.runtime import Runtime
from tests.lifespan import lifespan_running

T0 = 1_700_000_000_000
DAY = 24 * 3600 * 1000
CREATOR = "cr-1"
AGENCY = "ag-1"
OTHER_AGENCY = "ag-2"
FOREIGN_SECRET = "someone-elses-secret-of-enough-bytes!!"


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

    def creator(self, creator: str = CREATOR, ttl_s: int = 3600) -> dict[str, str]:
        """Headers of a creator."""
        token = mint(self.settings, creator=creator, ttl_s=ttl_s, now=self.clock())
        return {"Authorization": f"Bearer {token}"}

    def staff(self, staff: str = "ann", agency: str = AGENCY) -> dict[str, str]:
        """Headers of a staff member."""
        token = mint(self.settings, agency=agency, staff=staff, now=self.clock())
        return {"Authorization": f"Bearer {token}"}

    async def request(self, body: dict[str, Any], staff: str = "ann",
                      agency: str = AGENCY) -> httpx.Response:
        """A staff member sends a request."""
        return await self.client.post("/api/requests", json=body,
                                      headers=self.staff(staff, agency))

    async def link(self, *, with_access: bool = True, ends_at: int | None = None,
                   agency: str = AGENCY, creator: str = CREATOR,
                   scopes: list[str] | None = None) -> str:
        """Request a link and have the creator accept it; the request id."""
        body: dict[str, Any] = {"type": "request_link", "creator": creator,
                                "with_access": with_access, "ends_at": ends_at}
        sent = await self.request(body, agency=agency)
        assert sent.status_code == 201, sent.text
        rid: str = sent.json()["request"]["request_id"]
        accept_body = None if scopes is None else {"scopes": scopes}
        accepted = await self.answer(rid, "accept", accept_body, creator=creator)
        assert accepted.status_code == 200, accepted.text
        return rid

    async def answer(self, rid: str, how: str, body: dict[str, Any] | None = None,
                     creator: str = CREATOR) -> httpx.Response:
        """The creator accepts or declines a request."""
        return await self.client.post(f"/api/requests/{rid}/{how}", json=body,
                                      headers=self.creator(creator))

    async def status(self, creator: str = CREATOR, agency: str = AGENCY) -> dict[str, Any]:
        """The creator's entry in the agency's list."""
        answer = await self.client.get("/api/creators", headers=self.staff(agency=agency))
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = [c for c in answer.json()["creators"]
                                       if c["creator"] == creator]
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


@pytest.fixture
def open_env(tmp_path: Path) -> Opener:
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


@pytest.fixture
async def env(open_env: Opener) -> AsyncIterator[Env]:
    """A running app on a fresh data file."""
    async for running in open_env():
        yield running


# --- R1: two ways to ask, R5: accept grants -----------------------------------------------


async def test_bundled_link_and_access_request(env: Env) -> None:
    """R1, R5: a bundled link+access request, once accepted, links and grants access."""
    sent = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    assert sent.status_code == 201, sent.text
    request = sent.json()["request"]
    assert request["request_id"].startswith("req-")  # the server chose the id
    assert (request["kind"], request["agency"], request["sent_by"]) == (
        "link_and_access", AGENCY, "ann")
    assert request["expires_at"] == T0 + REQUEST_TTL_MS
    assert [e["type"] for e in sent.json()["events"]] == ["request_sent"]
    assert (await env.status())["status"] == "pending"

    listed = await env.client.get("/api/requests", headers=env.creator())
    assert [r["request_id"] for r in listed.json()["requests"]] == [request["request_id"]]

    accepted = await env.answer(request["request_id"], "accept")
    assert accepted.status_code == 200, accepted.text
    assert [e["type"] for e in accepted.json()["events"]] == [
        "request_accepted", "link_created", "access_granted"]
    status = await env.status()
    assert status["status"] == "access_granted"
    assert set(status["scopes"]) == {"bag", "promotion", "billboard", "moderation", "planning"}
    assert env.runtime.access.grant_for(AGENCY, CREATOR, env.clock()) is not None


async def test_access_request_for_linked_creator(env: Env) -> None:
    """R1: an already linked creator is asked for LIVE access separately."""
    await env.link(with_access=False)
    assert (await env.status())["status"] == "linked"
    sent = await env.request({"type": "request_access", "creator": CREATOR})
    assert sent.status_code == 201, sent.text
    assert sent.json()["request"]["kind"] == "access"
    accepted = await env.answer(sent.json()["request"]["request_id"], "accept")
    assert accepted.status_code == 200, accepted.text
    assert (await env.status())["status"] == "access_granted"


async def test_access_request_needs_a_link(env: Env) -> None:
    """R1: access alone cannot be asked of a creator the agency is not linked to."""
    sent = await env.request({"type": "request_access", "creator": CREATOR})
    expect_error(sent, 409, Code.NOT_LINKED)


async def test_client_chosen_request_id_and_safe_retry(env: Env) -> None:
    """R1: a client-chosen id is kept; resending the same request returns it (200)."""
    body = {"type": "request_link", "creator": CREATOR, "with_access": True,
            "request_id": "ann-0001"}
    first = await env.request(body)
    assert first.status_code == 201
    again = await env.request(body)
    assert again.status_code == 200, again.text
    assert again.json()["request"] == first.json()["request"]
    assert again.json()["events"] == []
    clash = await env.request({**body, "creator": "cr-2"}, agency=OTHER_AGENCY)
    expect_error(clash, 409, Code.ALREADY_EXISTS)


# --- R2: expiry ----------------------------------------------------------------------


async def test_request_expires_after_seven_days(env: Env) -> None:
    """R2: accepting 7 days after sending is refused with REQUEST_EXPIRED."""
    sent = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    env.clock.advance(REQUEST_TTL_MS)
    listed = await env.client.get("/api/requests", headers=env.creator())
    assert [(r["request_id"], r["status"]) for r in listed.json()["requests"]] == [
        (rid, "expired")]
    hidden = await env.client.get("/api/requests?expired=0", headers=env.creator())
    assert hidden.json()["requests"] == []
    expect_error(await env.answer(rid, "accept"), 409, Code.REQUEST_EXPIRED)
    assert (await env.status())["status"] == "expired"


async def test_request_accepted_just_before_expiry(env: Env) -> None:
    """R2: one millisecond before the 7 days are up the request can still be accepted."""
    sent = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    env.clock.advance(REQUEST_TTL_MS - 1)
    accepted = await env.answer(sent.json()["request"]["request_id"], "accept")
    assert accepted.status_code == 200, accepted.text


# --- R3, R4: declining -------------------------------------------------------------------


async def test_decline_access_keeps_link(env: Env) -> None:
    """R3: declining an access request of a linked creator leaves the link as it was."""
    await env.link(with_access=False)
    sent = await env.request({"type": "request_access", "creator": CREATOR})
    declined = await env.answer(sent.json()["request"]["request_id"], "decline")
    assert declined.status_code == 200, declined.text
    assert [e["type"] for e in declined.json()["events"]] == ["request_declined"]
    assert (await env.status())["status"] == "linked"
    assert env.runtime.access.grant_for(AGENCY, CREATOR, env.clock()) is None


async def test_decline_bundled_request_leaves_no_link(env: Env) -> None:
    """R4: declining a bundled link+access request: no link comes into being."""
    sent = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    assert (await env.answer(rid, "decline")).status_code == 200
    assert (await env.status())["status"] == "none"
    expect_error(await env.request({"type": "request_access", "creator": CREATOR}),
                 409, Code.NOT_LINKED)
    expect_error(await env.answer(rid, "accept"), 409, Code.REQUEST_CLOSED)


# --- R5: scopes and the link's duration ----------------------------------------------


async def test_accept_with_scopes(env: Env) -> None:
    """R5: the creator limits the grant; the agency sees exactly those scopes."""
    await env.link(scopes=["planning", "bag"])
    status = await env.status()
    assert status["status"] == "access_granted"
    assert status["scopes"] == ["bag", "planning"]


async def test_accept_with_bad_scopes(env: Env) -> None:
    """R5: scopes outside what an agency may hold, or of the wrong type, are refused."""
    sent = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    expect_error(await env.answer(rid, "accept", {"scopes": ["live"]}), 400,
                 Code.INVALID_ARGUMENT)
    expect_error(await env.answer(rid, "accept", {"scopes": ["nope"]}), 400,
                 Code.WRONG_FIELD_TYPE)
    expect_error(await env.answer(rid, "accept", {"scopes": []}), 400, Code.INVALID_ARGUMENT)
    assert (await env.status())["status"] == "pending"


async def test_access_lasts_until_link_end_date(env: Env) -> None:
    """R5: access holds for the link's duration and ends with it."""
    await env.link(ends_at=T0 + 30 * DAY)
    assert (await env.status())["ends_at"] == T0 + 30 * DAY
    env.clock.advance(30 * DAY)
    assert (await env.status())["status"] == "ended"
    assert env.runtime.access.grant_for(AGENCY, CREATOR, env.clock()) is None


# --- R6: unlinking -------------------------------------------------------------------------


async def test_unlink_by_agency_cuts_staff_off(env: Env) -> None:
    """R6: unlinking ends access at once: a staff session that worked for the creator is
    told (access_changed, the session stays open), and later commands are refused."""
    await env.link()
    ann = Actor(role="staff", id="ann", agency=AGENCY)
    console = env.session(ann)
    plan = LiveEventSchedule(command_id="c0", room=CREATOR, event=LiveEvent(
        event_id="e0", title="Launch", starts_at=T0 + DAY))
    assert (await env.command(console, plan))["type"] == "ack"  # pre-LIVE work (R12)
    unlinked = await env.client.post("/api/unlink", json={"creator": CREATOR},
                                     headers=env.staff())
    assert unlinked.status_code == 200, unlinked.text
    assert [e["type"] for e in unlinked.json()["events"]] == ["link_removed"]
    assert not console.is_closed  # decision 0015: other creators' work goes on
    assert [(f["status"], f["room"], f["terminal"]) for f in frames(console)
            if f["type"] == "access_changed"] == [("unlinked", CREATOR, False)]
    assert (await env.status())["status"] == "none"
    later = env.session(Actor(role="staff", id="bob", agency=AGENCY))
    schedule = LiveEventSchedule(command_id="c1", room=CREATOR, event=LiveEvent(
        event_id="e1", title="Launch", starts_at=T0 + DAY))
    assert (await env.command(later, schedule))["code"] == Code.NO_ACCESS


async def test_unlink_by_creator(env: Env) -> None:
    """R6: the creator unlinks too (their own side may be left out of the body)."""
    await env.link()
    unlinked = await env.client.post("/api/unlink", json={"agency": AGENCY},
                                     headers=env.creator())
    assert unlinked.status_code == 200, unlinked.text
    assert env.runtime.access.grant_for(AGENCY, CREATOR, env.clock()) is None
    again = await env.client.post("/api/unlink", json={"agency": AGENCY},
                                  headers=env.creator())
    expect_error(again, 409, Code.NOT_LINKED)


async def test_unlink_someone_elses_link(env: Env) -> None:
    """R6: only the linked creator or agency unlinks."""
    await env.link()
    other = await env.client.post("/api/unlink", json={"creator": CREATOR},
                                  headers=env.staff("eve", OTHER_AGENCY))
    expect_error(other, 409, Code.NOT_LINKED)
    forged = await env.client.post("/api/unlink", json={"agency": OTHER_AGENCY,
                                                        "creator": CREATOR},
                                   headers=env.staff())
    expect_error(forged, 403, Code.FORBIDDEN)
    assert (await env.status())["status"] == "access_granted"


# --- R7: extension / access mutual exclusion ---------------------------------------------


async def test_no_access_request_while_extension_pending(env: Env) -> None:
    """R7: an access request is refused while a link extension request is pending."""
    await env.link(with_access=False, ends_at=T0 + 30 * DAY)
    ext = await env.request({"type": "request_extension", "creator": CREATOR,
                             "new_ends_at": T0 + 60 * DAY})
    assert ext.status_code == 201, ext.text
    refused = await env.request({"type": "request_access", "creator": CREATOR})
    expect_error(refused, 409, Code.EXTENSION_PENDING)


async def test_no_extension_request_while_access_pending(env: Env) -> None:
    """R7: an extension request is refused while a LIVE access request is pending."""
    await env.link(with_access=False, ends_at=T0 + 30 * DAY)
    assert (await env.request({"type": "request_access", "creator": CREATOR})).status_code == 201
    refused = await env.request({"type": "request_extension", "creator": CREATOR,
                                 "new_ends_at": T0 + 60 * DAY})
    expect_error(refused, 409, Code.ACCESS_PENDING)


async def test_extension_accepted_moves_end_date(env: Env) -> None:
    """R7, R5: an accepted extension moves the link's (and access's) end date."""
    await env.link(ends_at=T0 + 30 * DAY)
    ext = await env.request({"type": "request_extension", "creator": CREATOR,
                             "new_ends_at": T0 + 60 * DAY})
    assert (await env.answer(ext.json()["request"]["request_id"], "accept")).status_code == 200
    env.clock.advance(45 * DAY)
    status = await env.status()
    assert (status["status"], status["ends_at"]) == ("access_granted", T0 + 60 * DAY)


# --- R8: cross-border via the platform endpoint ---------------------------------------


async def test_cross_border_needs_sharing(env: Env) -> None:
    """R8: a cross-border agency gets access only with a sharing relationship."""
    registered = await env.client.post("/api/platform", json={
        "type": "register_agency", "agency": AGENCY, "cross_border": True})
    assert registered.status_code == 200, registered.text
    assert [e["type"] for e in registered.json()["events"]] == ["agency_registered"]
    refused = await env.request({"type": "request_link", "creator": CREATOR,
                                 "with_access": True})
    expect_error(refused, 403, Code.CROSS_BORDER_NOT_ALLOWED)
    shared = await env.client.post("/api/platform", json={
        "type": "record_sharing", "agency": AGENCY, "creator": CREATOR, "kind": "data"})
    assert shared.status_code == 200, shared.text
    await env.link()
    assert (await env.status())["status"] == "access_granted"


async def test_platform_facts_only_from_the_node(env: Env) -> None:
    """R8: no party can vouch for itself: remote or proxied callers are refused."""
    body = {"type": "register_agency", "agency": AGENCY, "cross_border": False}
    remote = httpx.ASGITransport(app=env.app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://node") as outsider:
        expect_error(await outsider.post("/api/platform", json=body, headers=env.staff()),
                     403, Code.FORBIDDEN)
    proxied = await env.client.post("/api/platform", json=body,
                                    headers={"X-Forwarded-For": "203.0.113.7"})
    expect_error(proxied, 403, Code.FORBIDDEN)
    staff_says = await env.client.post("/api/requests", json=body, headers=env.staff())
    expect_error(staff_says, 400, Code.UNKNOWN_TYPE)


# --- R9: revoke keeps the link ---------------------------------------------------------


async def test_revoke_keeps_link(env: Env) -> None:
    """R9: the creator revokes access; the link stays and staff are cut off at once."""
    await env.link()
    console = env.session(Actor(role="staff", id="ann", agency=AGENCY))
    plan = LiveEventSchedule(command_id="c0", room=CREATOR, event=LiveEvent(
        event_id="e0", title="Launch", starts_at=T0 + DAY))
    assert (await env.command(console, plan))["type"] == "ack"
    revoked = await env.client.post("/api/revoke", json={"agency": AGENCY},
                                    headers=env.creator())
    assert revoked.status_code == 200, revoked.text
    assert [e["type"] for e in revoked.json()["events"]] == ["access_revoked"]
    assert [f["status"] for f in frames(console) if f["type"] == "access_changed"] == [
        "revoked"]
    assert (await env.command(console, plan))["code"] == Code.NO_ACCESS
    assert (await env.status())["status"] == "revoked"  # still linked, access revoked
    again = await env.client.post("/api/revoke", json={"agency": AGENCY},
                                  headers=env.creator())
    expect_error(again, 403, Code.NO_ACCESS)
    assert (await env.request({"type": "request_access", "creator": CREATOR})).status_code == 201


# --- R14: the inbox --------------------------------------------------------------------------


async def test_request_notified_in_inbox(env: Env) -> None:
    """R14: a request lands in the creator's inbox; it can be marked read."""
    await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    inbox = await env.client.get("/api/notifications", headers=env.creator())
    assert inbox.status_code == 200, inbox.text
    notes = inbox.json()["notifications"]
    assert len(notes) == 1
    assert notes[0]["kind"] == "agency_changed"
    assert AGENCY in notes[0]["text"]
    assert notes[0]["by"] == {"role": "staff", "id": "ann", "agency": AGENCY}
    assert notes[0]["read"] is False
    read = await env.client.post("/api/notifications/read",
                                 json={"ids": [notes[0]["notification_id"]]},
                                 headers=env.creator())
    assert read.json() == {"changed": 1}
    unread = await env.client.get("/api/notifications?unread=1", headers=env.creator())
    assert unread.json()["notifications"] == []
    other = await env.client.get("/api/notifications", headers=env.creator("cr-2"))
    assert other.json()["notifications"] == []


# --- R16: the audit trail -----------------------------------------------------------------


async def test_audit_trail_keeps_real_actor_and_filters(env: Env) -> None:
    """R16: the creator reads every action with its real staff actor, filterable."""
    await env.link(scopes=["planning"])  # t0: ann sends, the creator accepts
    env.clock.advance(1000)
    await env.link(agency=OTHER_AGENCY)  # t0+1s: ann of ag-2 sends, the creator accepts
    env.clock.advance(1000)
    bob = env.session(Actor(role="staff", id="bob", agency=AGENCY))
    schedule = LiveEventSchedule(command_id="c1", room=CREATOR, event=LiveEvent(
        event_id="e1", title="Launch", starts_at=T0 + DAY))
    assert (await env.command(bob, schedule))["type"] == "ack"
    pin = BagPin(command_id="c2", room=CREATOR, product_id="p1")
    assert (await env.command(bob, pin))["code"] == Code.OUT_OF_SCOPE  # refused, audited

    async def trail(query: str = "") -> list[dict[str, Any]]:
        answer = await env.client.get(f"/api/audit{query}", headers=env.creator())
        assert answer.status_code == 200, answer.text
        entries: list[dict[str, Any]] = answer.json()["entries"]
        return entries

    everything = await trail()
    assert [(e["actor"]["id"], e["actor"].get("agency"), e["action"], e["code"])
            for e in everything] == [
        ("bob", AGENCY, "bag_pin", Code.OUT_OF_SCOPE),
        ("bob", AGENCY, "live_event_schedule", None),
        (CREATOR, None, "accept_request", None),
        ("ann", OTHER_AGENCY, "request_link", None),
        (CREATOR, None, "accept_request", None),
        ("ann", AGENCY, "request_link", None),
    ]
    assert [e["action"] for e in await trail("?staff=bob")] == ["bag_pin", "live_event_schedule"]
    assert [e["actor"]["agency"] for e in await trail("?staff=ann")] == [OTHER_AGENCY, AGENCY]
    assert [e["action"] for e in await trail(f"?agency={OTHER_AGENCY}")] == ["request_link"]
    assert [e["action"] for e in await trail("?family=planning")] == ["live_event_schedule"]
    assert [e["actor"]["id"] for e in await trail(f"?since={T0 + 1000}&until={T0 + 2000}")] == [
        CREATOR, "ann"]
    assert len(await trail("?limit=2")) == 2
    other = await env.client.get("/api/audit", headers=env.creator("cr-2"))
    assert other.json()["entries"] == []


async def test_audit_query_parameters_checked(env: Env) -> None:
    """R16: out-of-range or malformed filters are refused with INVALID_ARGUMENT."""
    for query in ("?limit=0", "?limit=1001", "?since=-1", "?until=soon", "?staff=a/b"):
        answer = await env.client.get(f"/api/audit{query}", headers=env.creator())
        expect_error(answer, 400, Code.INVALID_ARGUMENT)


# --- post-LIVE figures and account health (R12) ------------------------------------------


async def run_a_live(env: Env) -> Session:
    """The creator goes live, sees viewers and orders, a violation, and ends."""
    me = env.session(Actor(role="creator", id=CREATOR))
    buyer = Viewer(unique_id="v1")
    assert (await env.command(me, StartLive(command_id="s", room=CREATOR, title="Hi")))[
        "type"] == "ack"
    env.clock.advance(60_000)
    for cmd in (
        FeedViewers(command_id="f1", room=CREATOR, total=40),
        FeedOrder(command_id="f2", room=CREATOR, order_id="o1", user=buyer, product_id="p1",
                  quantity=2, amount_cents=3000),
        FeedViolation(command_id="f3", room=CREATOR, violation=Violation(
            violation_id="v-1", policy="Prohibited product", severity="medium", at=env.clock())),
    ):
        assert (await env.command(me, cmd))["type"] == "ack"
    return me


async def test_lives_current_then_ended(env: Env) -> None:
    """R12: the running LIVE's figures, then post-LIVE figures once it ends."""
    me = await run_a_live(env)
    during = (await env.client.get("/api/lives", headers=env.creator())).json()
    assert during["status"] == "live"
    assert (during["current"]["orders"], during["current"]["gmv_cents"]) == (1, 3000)
    assert during["lives"] == []
    env.clock.advance(60_000)
    assert (await env.command(me, EndLive(command_id="e", room=CREATOR)))["type"] == "ack"
    after = (await env.client.get("/api/lives", headers=env.creator())).json()
    assert (after["status"], after["current"]) == ("offline", None)
    [live] = after["lives"]
    assert (live["orders"], live["units"], live["gmv_cents"], live["peak_viewers"]) == (
        1, 2, 3000, 40)
    assert live["violations"] == 1
    assert live["conversion"] == pytest.approx(1 / 40)
    assert live["ended_at"] == T0 + 120_000


async def test_account_health(env: Env) -> None:
    """R12: account health lists every reported violation."""
    await run_a_live(env)
    health = await env.client.get("/api/health", headers=env.creator())
    assert health.status_code == 200, health.text
    assert [(v["violation_id"], v["severity"]) for v in health.json()["violations"]] == [
        ("v-1", "medium")]


async def test_staff_read_figures_only_with_access(env: Env) -> None:
    """R12: staff read a creator's figures and health with access, not without."""
    await run_a_live(env)
    expect_error(await env.client.get(f"/api/health?creator={CREATOR}", headers=env.staff()),
                 403, Code.NO_ACCESS)
    await env.link()
    health = await env.client.get(f"/api/health?creator={CREATOR}", headers=env.staff())
    assert [v["violation_id"] for v in health.json()["violations"]] == ["v-1"]
    lives = await env.client.get(f"/api/lives?creator={CREATOR}", headers=env.staff())
    assert lives.json()["status"] == "live"
    expect_error(await env.client.get("/api/lives", headers=env.staff()), 400,
                 Code.INVALID_ARGUMENT)
    expect_error(await env.client.get("/api/lives?creator=cr-2", headers=env.creator()),
                 403, Code.FORBIDDEN)


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer not-a-jwt", "Basic dXNlcg=="])
async def test_missing_or_malformed_token(env: Env, header: str | None) -> None:
    """H6: no usable bearer token: 401 BAD_TOKEN with a challenge."""
    headers = {} if header is None else {"Authorization": header}
    answer = await env.client.get("/api/creators", headers=headers)
    expect_error(answer, 401, Code.BAD_TOKEN)
    assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_forged_token(env: Env) -> None:
    """H6: a token signed with another secret: 401 BAD_TOKEN."""
    forger = load_settings({}, data_path=":memory:", jwt_secret=FOREIGN_SECRET)
    token = mint(forger, agency=AGENCY, staff="ann", now=env.clock())
    answer = await env.client.post("/api/requests", json={
        "type": "request_link", "creator": CREATOR, "with_access": True},
        headers={"Authorization": f"Bearer {token}"})
    expect_error(answer, 401, Code.BAD_TOKEN)
    assert (await env.status())["status"] == "unknown"


async def test_expired_token(env: Env) -> None:
    """H6: an expired token: 401 TOKEN_EXPIRED (retryable with a fresh token)."""
    headers = env.creator(ttl_s=60)
    env.clock.advance((60 + env.settings.token_leeway_s) * 1000)
    expect_error(await env.client.get("/api/notifications", headers=headers), 401,
                 Code.TOKEN_EXPIRED)


# --- roles --------------------------------------------------------------------------------


async def test_creator_on_agency_endpoints(env: Env) -> None:
    """H6: a creator calling agency endpoints is refused (403), and nothing is sent."""
    expect_error(await env.client.get("/api/creators", headers=env.creator()), 403,
                 Code.FORBIDDEN)
    sent = await env.client.post("/api/requests", json={
        "type": "request_link", "creator": CREATOR, "with_access": True},
        headers=env.creator())
    expect_error(sent, 403, Code.FORBIDDEN)
    listed = await env.client.get("/api/requests", headers=env.creator())
    assert listed.json()["requests"] == []
    audit = (await env.client.get("/api/audit", headers=env.creator())).json()["entries"]
    assert [(e["action"], e["code"]) for e in audit] == [("request_link", Code.FORBIDDEN)]


async def test_staff_on_creator_endpoints(env: Env) -> None:
    """H6: staff cannot read a creator's inbox or trail, nor answer for the creator."""
    for path in ("/api/requests", "/api/notifications", "/api/audit"):
        expect_error(await env.client.get(path, headers=env.staff()), 403, Code.CREATOR_ONLY)
    sent = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    answer = await env.client.post(f"/api/requests/{rid}/accept", headers=env.staff())
    expect_error(answer, 403, Code.FORBIDDEN)
    revoke = await env.client.post("/api/revoke", json={"agency": AGENCY}, headers=env.staff())
    expect_error(revoke, 403, Code.FORBIDDEN)
    assert (await env.status())["status"] == "pending"


async def test_creator_answers_only_own_requests(env: Env) -> None:
    """R1: only the addressed creator answers a request; unknown ids are 404."""
    sent = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    expect_error(await env.answer(rid, "accept", creator="cr-2"), 403, Code.FORBIDDEN)
    expect_error(await env.answer("no-such-request", "accept"), 404, Code.UNKNOWN_REQUEST)
    expect_error(await env.answer("bad id!", "decline"), 400, Code.WRONG_FIELD_TYPE)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "code"), [
    (b"{not json", Code.MALFORMED),
    (b"", Code.MALFORMED),
    (b'{"type": "request_link", "creator": "\xff"}', Code.INVALID_UTF8),
    (b"[1, 2]", Code.WRONG_FIELD_TYPE),
    (b'{"type": "request_link", "creator": 7, "with_access": true}', Code.WRONG_FIELD_TYPE),
    (b'{"type": "request_link", "creator": "cr-1"}', Code.WRONG_FIELD_TYPE),
    (b'{"creator": "cr-1", "with_access": true}', Code.WRONG_FIELD_TYPE),
    (b'{"type": "request_link", "creator": "a/b", "with_access": true}', Code.WRONG_FIELD_TYPE),
    (b'{"type": "hack_the_planet", "creator": "cr-1"}', Code.UNKNOWN_TYPE),
    (b'{"type": "request_link", "creator": "cr-1", "with_access": true,'
     b' "ends_at": 100000000000000000000000}', Code.WRONG_FIELD_TYPE),
])
async def test_bad_bodies(env: Env, content: bytes, code: Code) -> None:
    """H6: a malformed, mistyped or unknown body: 400 with its code, nothing changes."""
    answer = await env.client.post("/api/requests", content=content, headers={
        **env.staff(), "Content-Type": "application/json"})
    expect_error(answer, 400, code)
    assert (await env.status())["status"] == "unknown"


async def test_oversized_body(env: Env) -> None:
    """H6: a body over max_message_bytes: 400 TOO_LARGE, declared or streamed."""
    big = json.dumps({"type": "request_link", "creator": CREATOR, "with_access": True,
                      "pad": "x" * env.settings.max_message_bytes}).encode()
    declared = await env.client.post("/api/requests", content=big, headers=env.staff())
    expect_error(declared, 400, Code.TOO_LARGE)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    streamed = await env.client.post("/api/requests", content=chunks(), headers=env.staff())
    assert "content-length" not in streamed.request.headers
    expect_error(streamed, 400, Code.TOO_LARGE)


async def test_deeply_nested_body(open_env: Opener) -> None:
    """H6: 10**5 levels of nesting: 400 TOO_DEEP, not a crash."""
    async for env in open_env(max_message_bytes=1 << 20):
        deep = b'{"type": "request_link", "pad": ' + b"[" * 10**5 + b"]" * 10**5 + b"}"
        answer = await env.client.post("/api/requests", content=deep, headers=env.staff())
        expect_error(answer, 400, Code.TOO_DEEP)
        ok = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
        assert ok.status_code == 201


async def test_unknown_path_and_wrong_method(env: Env) -> None:
    """H6: unknown API paths are JSON 404s; a known path with another method is a 405."""
    expect_error(await env.client.get("/api/nothing-here"), 404, Code.NOT_FOUND)
    wrong = await env.client.delete("/api/requests", headers=env.creator())
    expect_error(wrong, 405, Code.BAD_REQUEST)
    assert wrong.headers["allow"] == "GET, HEAD, POST"


# --- durability ------------------------------------------------------------------------------


async def test_access_inbox_and_audit_survive_restart(open_env: Opener) -> None:
    """R5, R14, R16: after a restart on the same file, grant, inbox and trail are there."""
    async for env in open_env():
        await env.link(scopes=["bag"])
    async for env in open_env():
        grant = env.runtime.access.grant_for(AGENCY, CREATOR, env.clock())
        assert grant is not None
        assert grant.scopes == frozenset({"bag"})
        inbox = (await env.client.get("/api/notifications", headers=env.creator())).json()
        assert len(inbox["notifications"]) >= 1
        audit = (await env.client.get("/api/audit", headers=env.creator())).json()
        assert [e["action"] for e in audit["entries"]] == ["accept_request", "request_link"]
