"""The agency staff's endpoints (server/api_agency.py) end to end: sending link,
access and extension requests (R1, R7), the agency's list of creators (R5) and
unlinking (R6), on a real app with a fake clock (tests/api_env.py)."""

from __future__ import annotations

from protocol.commands import LiveEventSchedule
from protocol.errors import Code
from protocol.model import LiveEvent
from server.domain.access import REQUEST_TTL_MS
from tests.actors import AGENCY, ANN, BOB, CREATOR_ID, OTHER_AGENCY, OTHER_CREATOR_ID
from tests.api_env import DAY, T0, Env, env_opener, expect_error, frames, running_env

_ = (env_opener, running_env)  # the fixtures, used by name


# --- R1: two ways to ask, R5: accept grants -----------------------------------------------


async def test_bundled_link_and_access_request(env: Env) -> None:
    """R1, R5: a bundled link+access request, once accepted, links and grants access."""
    sent = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
    assert sent.status_code == 201, sent.text
    request = sent.json()["request"]
    assert request["request_id"].startswith("req-")  # the server chose the id
    assert (request["kind"], request["agency"], request["sent_by"]) == (
        "link_and_access",
        AGENCY,
        "ann",
    )
    assert request["expires_at"] == T0 + REQUEST_TTL_MS
    assert [e["type"] for e in sent.json()["events"]] == ["request_sent"]
    assert (await env.status())["status"] == "pending"

    listed = await env.client.get("/api/requests", headers=env.creator())
    assert [r["request_id"] for r in listed.json()["requests"]] == [request["request_id"]]

    accepted = await env.answer(request["request_id"], "accept")
    assert accepted.status_code == 200, accepted.text
    assert [e["type"] for e in accepted.json()["events"]] == [
        "request_accepted",
        "link_created",
        "access_granted",
    ]
    status = await env.status()
    assert status["status"] == "access_granted"
    assert set(status["scopes"]) == {"bag", "promotion", "billboard", "moderation", "planning"}
    assert env.runtime.access.grant_for(AGENCY, CREATOR_ID, env.clock()) is not None


async def test_access_request_for_linked_creator(env: Env) -> None:
    """R1: an already linked creator is asked for LIVE access separately."""
    await env.link(with_access=False)
    assert (await env.status())["status"] == "linked"
    sent = await env.request({"type": "request_access", "creator": CREATOR_ID})
    assert sent.status_code == 201, sent.text
    assert sent.json()["request"]["kind"] == "access"
    accepted = await env.answer(sent.json()["request"]["request_id"], "accept")
    assert accepted.status_code == 200, accepted.text
    assert (await env.status())["status"] == "access_granted"


async def test_access_request_needs_a_link(env: Env) -> None:
    """R1: access alone cannot be asked of a creator the agency is not linked to."""
    sent = await env.request({"type": "request_access", "creator": CREATOR_ID})
    expect_error(sent, 409, Code.NOT_LINKED)


async def test_client_chosen_request_id_and_safe_retry(env: Env) -> None:
    """R1: a client-chosen id is kept; resending the same request returns it (200)."""
    body = {
        "type": "request_link",
        "creator": CREATOR_ID,
        "with_access": True,
        "request_id": "ann-0001",
    }
    first = await env.request(body)
    assert first.status_code == 201
    again = await env.request(body)
    assert again.status_code == 200, again.text
    assert again.json()["request"] == first.json()["request"]
    assert again.json()["events"] == []
    clash = await env.request({**body, "creator": OTHER_CREATOR_ID}, agency=OTHER_AGENCY)
    expect_error(clash, 409, Code.ALREADY_EXISTS)


# --- R5: the link's duration --------------------------------------------------------------


async def test_access_lasts_until_link_end_date(env: Env) -> None:
    """R5: access holds for the link's duration and ends with it."""
    await env.link(ends_at=T0 + 30 * DAY)
    assert (await env.status())["ends_at"] == T0 + 30 * DAY
    env.clock.advance(30 * DAY)
    assert (await env.status())["status"] == "ended"
    assert env.runtime.access.grant_for(AGENCY, CREATOR_ID, env.clock()) is None


# --- R6: unlinking ------------------------------------------------------------------------


async def test_unlink_by_agency_cuts_staff_off(env: Env) -> None:
    """R6: unlinking ends access at once: a staff session that worked for the creator is
    told (access_changed, the session stays open), and later commands are refused."""
    await env.link()
    ann = ANN
    console = env.session(ann)
    plan = LiveEventSchedule(
        command_id="c0",
        room=CREATOR_ID,
        event=LiveEvent(event_id="e0", title="Launch", starts_at=T0 + DAY),
    )
    assert (await env.command(console, plan))["type"] == "ack"  # pre-LIVE work (R12)
    unlinked = await env.client.post(
        "/api/unlink", json={"creator": CREATOR_ID}, headers=env.staff()
    )
    assert unlinked.status_code == 200, unlinked.text
    assert [e["type"] for e in unlinked.json()["events"]] == ["link_removed"]
    assert not console.is_closed  # decision 0015: other creators' work goes on
    assert [
        (f["status"], f["room"], f["terminal"])
        for f in frames(console)
        if f["type"] == "access_changed"
    ] == [("unlinked", CREATOR_ID, False)]
    assert (await env.status())["status"] == "none"
    later = env.session(BOB)
    schedule = LiveEventSchedule(
        command_id="c1",
        room=CREATOR_ID,
        event=LiveEvent(event_id="e1", title="Launch", starts_at=T0 + DAY),
    )
    assert (await env.command(later, schedule))["code"] == Code.NO_ACCESS


async def test_unlink_by_creator(env: Env) -> None:
    """R6: the creator unlinks too (their own side may be left out of the body)."""
    await env.link()
    unlinked = await env.client.post("/api/unlink", json={"agency": AGENCY}, headers=env.creator())
    assert unlinked.status_code == 200, unlinked.text
    assert env.runtime.access.grant_for(AGENCY, CREATOR_ID, env.clock()) is None
    again = await env.client.post("/api/unlink", json={"agency": AGENCY}, headers=env.creator())
    expect_error(again, 409, Code.NOT_LINKED)


async def test_unlink_someone_elses_link(env: Env) -> None:
    """R6: only the linked creator or agency unlinks."""
    await env.link()
    other = await env.client.post(
        "/api/unlink", json={"creator": CREATOR_ID}, headers=env.staff("eve", OTHER_AGENCY)
    )
    expect_error(other, 409, Code.NOT_LINKED)
    forged = await env.client.post(
        "/api/unlink", json={"agency": OTHER_AGENCY, "creator": CREATOR_ID}, headers=env.staff()
    )
    expect_error(forged, 403, Code.FORBIDDEN)
    assert (await env.status())["status"] == "access_granted"


# --- R7: extension / access mutual exclusion ----------------------------------------------


async def test_no_access_request_while_extension_pending(env: Env) -> None:
    """R7: an access request is refused while a link extension request is pending."""
    await env.link(with_access=False, ends_at=T0 + 30 * DAY)
    ext = await env.request(
        {"type": "request_extension", "creator": CREATOR_ID, "new_ends_at": T0 + 60 * DAY}
    )
    assert ext.status_code == 201, ext.text
    refused = await env.request({"type": "request_access", "creator": CREATOR_ID})
    expect_error(refused, 409, Code.EXTENSION_PENDING)


async def test_no_extension_request_while_access_pending(env: Env) -> None:
    """R7: an extension request is refused while a LIVE access request is pending."""
    await env.link(with_access=False, ends_at=T0 + 30 * DAY)
    assert (await env.request({"type": "request_access", "creator": CREATOR_ID})).status_code == 201
    refused = await env.request(
        {"type": "request_extension", "creator": CREATOR_ID, "new_ends_at": T0 + 60 * DAY}
    )
    expect_error(refused, 409, Code.ACCESS_PENDING)


# --- roles --------------------------------------------------------------------------------


async def test_creator_on_agency_endpoints(env: Env) -> None:
    """H6: a creator calling agency endpoints is refused (403), and nothing is sent."""
    expect_error(await env.client.get("/api/creators", headers=env.creator()), 403, Code.FORBIDDEN)
    sent = await env.client.post(
        "/api/requests",
        json={"type": "request_link", "creator": CREATOR_ID, "with_access": True},
        headers=env.creator(),
    )
    expect_error(sent, 403, Code.FORBIDDEN)
    listed = await env.client.get("/api/requests", headers=env.creator())
    assert listed.json()["requests"] == []
    audit = (await env.client.get("/api/audit", headers=env.creator())).json()["entries"]
    assert [(e["action"], e["code"]) for e in audit] == [("request_link", Code.FORBIDDEN)]
