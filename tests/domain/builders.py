"""Small builders for room tests: callers, a room driven through decide/evolve."""

from __future__ import annotations

from protocol import commands as c
from protocol.events import EventBody
from protocol.messages import Event, RoomCommand
from protocol.model import Actor, BagItem, Family, RoomState, Viewer
from server.domain.grants import Caller, Grant
from server.domain.refusal import Refusal
from server.domain.room import decide, evolve, new_room

ROOM = "room-1"
CREATOR_ID = "creator-1"
T0 = 1_700_000_000_000

CREATOR = Caller(actor=Actor(role="creator", id=CREATOR_ID))
STAFF = Caller(
    actor=Actor(role="staff", id="staff-1", agency="agency-1"),
    grant=Grant(agency="agency-1", creator=CREATOR_ID),
)
MODERATOR = Caller(
    actor=Actor(role="staff", id="staff-2", agency="agency-1"),
    grant=Grant(agency="agency-1", creator=CREATOR_ID, scopes=frozenset({"moderation"})),
)
REVOKED = Caller(actor=Actor(role="staff", id="staff-3", agency="agency-1"), grant=None)
ENDED = Caller(
    actor=Actor(role="staff", id="staff-4", agency="agency-1"),
    grant=Grant(agency="agency-1", creator=CREATOR_ID, ends_at=T0 - 1),
)
OTHER_AGENCY = Caller(
    actor=Actor(role="staff", id="staff-9", agency="agency-9"),
    grant=Grant(agency="agency-9", creator="creator-2"),
)
STRANGER = Caller(actor=Actor(role="creator", id="creator-2"))

VIEWER = Viewer(unique_id="viewer-1", nickname="Vi")


def item(pid: str, category: str = "shoes", stock: int = 10, price: int = 1000) -> BagItem:
    """A bag item."""
    return BagItem(
        product_id=pid, title=pid.upper(), category=category, price_cents=price, stock=stock
    )


class Room:
    """A room driven through decide and evolve, keeping its log like the hub would."""

    def __init__(self) -> None:
        self.state: RoomState = new_room(ROOM, CREATOR_ID)
        self.log: list[Event] = []
        self.now = T0
        self._ids = 0

    def next_id(self) -> str:
        self._ids += 1
        return f"cmd-{self._ids}"

    def send(self, caller: Caller, command: RoomCommand) -> list[EventBody] | Refusal:
        """Decide and, if accepted, append and fold the events."""
        decision = decide(self.state, caller, command, self.now)
        if isinstance(decision, Refusal):
            return decision
        for body in decision:
            event = Event(
                room=ROOM,
                seq=self.state.seq + 1,
                at=self.now,
                actor=CREATOR_ID,
                by=caller.actor,
                body=body,
                command_id=command.command_id,
            )
            self.state = evolve(self.state, event)
            self.log.append(event)
        return decision

    def ok(self, caller: Caller, command: RoomCommand) -> list[EventBody]:
        """Send a command that must be accepted."""
        result = self.send(caller, command)
        assert not isinstance(result, Refusal), result
        return result

    def live(self) -> Room:
        """Go live as the creator."""
        self.ok(CREATOR, c.StartLive(command_id=self.next_id(), room=ROOM, title="Show"))
        return self

    def stock(self, *pids: str) -> Room:
        """Add products to the bag as the creator."""
        for pid in pids:
            self.ok(CREATOR, c.BagAdd(command_id=self.next_id(), room=ROOM, item=item(pid)))
        return self

    def bag(self) -> list[str]:
        return [i.product_id for i in self.state.bag]


def family_versions(state: RoomState, family: Family) -> int:
    """The version a client would send as expected_version for a family."""
    return state.versions.get(family, 0)
