"""The audit trail: the journal's entries and the log's applied commands, read as one."""

from __future__ import annotations

from protocol.events import ProductPinned
from protocol.model import Actor
from server.hub.auditor import Auditor
from server.journal import AuditEntry, AuditQuery, MemoryJournal
from server.log.base import CommandRecord, PendingEvent
from server.log.memory import MemoryRoomLog
from tests.actors import ANN, CREATOR_ID, EVE, OTHER_AGENCY


def entry(n: int, code: int | None = None) -> AuditEntry:
    """A journal entry of ann's at time ``n`` (``c{n}``), refused with ``code`` if given."""
    return AuditEntry(
        at=n,
        creator=CREATOR_ID,
        actor=ANN,
        family="bag",
        action="bag_pin",
        command_id=f"c{n}",
        code=code,
    )


async def applied(
    log: MemoryRoomLog, n: int, *, actor: Actor = ANN, room: str = CREATOR_ID, family: str = "bag"
) -> None:
    """Append one applied command ``a{n}`` at time ``n`` with its audit record."""
    seq = await log.last_seq(room)
    event = PendingEvent(at=n, actor=room, by=actor, body=ProductPinned(product_id="p"))
    await log.append(
        room, f"a{n}", [event], seq, CommandRecord(at=n, by=actor, family=family, action="bag_pin")
    )


async def test_the_trail_merges_applied_commands_and_journal_entries_newest_first() -> None:
    """trail() is the journal's entries and the log's applied commands as one list,
    newest first, cut at the limit."""
    # R16
    log = MemoryRoomLog()
    auditor = Auditor(MemoryJournal(), log)
    for n in (1, 4, 6):
        await applied(log, n)
    await auditor.write([entry(2, code=201), entry(5, code=201)])
    trail = await auditor.trail(AuditQuery(creator=CREATOR_ID))
    assert [(e.at, e.command_id, e.code) for e in trail] == [
        (6, "a6", None),
        (5, "c5", 201),
        (4, "a4", None),
        (2, "c2", 201),
        (1, "a1", None),
    ]
    assert [e.seq for e in trail if e.code is None] == [3, 2, 1]
    assert all(e.actor == ANN and e.creator == CREATOR_ID for e in trail)
    limited = await auditor.trail(AuditQuery(creator=CREATOR_ID, limit=2))
    assert [e.command_id for e in limited] == ["a6", "c5"]


async def test_the_trail_filters_both_sources_alike() -> None:
    """Every filter of the query applies to applied commands as to journal entries."""
    # R16
    log = MemoryRoomLog()
    auditor = Auditor(MemoryJournal(), log)
    await applied(log, 1)
    await applied(log, 2, actor=EVE)
    await applied(log, 3, family="moderation")
    await applied(log, 4, room="someone-else")
    await auditor.write([entry(5, code=201)])
    by_agency = await auditor.trail(AuditQuery(creator=CREATOR_ID, agency=OTHER_AGENCY))
    assert [e.command_id for e in by_agency] == ["a2"]
    by_staff = await auditor.trail(AuditQuery(creator=CREATOR_ID, staff=ANN.id))
    assert [e.command_id for e in by_staff] == ["c5", "a3", "a1"]
    by_family = await auditor.trail(AuditQuery(creator=CREATOR_ID, family="moderation"))
    assert [e.command_id for e in by_family] == ["a3"]
    window = await auditor.trail(AuditQuery(creator=CREATOR_ID, since=2, until=5))
    assert [e.command_id for e in window] == ["a3", "a2"]
