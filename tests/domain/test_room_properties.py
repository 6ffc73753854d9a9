"""Property tests of the room decider: random command sequences from random callers.

A driver starts from ``new_room``, asks ``decide`` about each (caller, command, dt)
step, wraps accepted events in :class:`protocol.messages.Event` and folds them with
``evolve``, checking the room's invariants after every step (R10-R16, H2, H5), and
at the end that the log replays - directly, through both codecs, and from a
snapshot plus the log's suffix - to the very same state.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from protocol import commands as c
from protocol.codec import Codec
from protocol.errors import Code
from protocol.events import (
    CommentPosted,
    CreatorNotified,
    EventBody,
    FlashSaleEnded,
    LiveEnded,
    LiveStarted,
    NotificationKind,
    OrderPlaced,
)
from protocol.messages import Event, RoomCommand
from protocol.model import (
    Actor,
    BagItem,
    Billboard,
    Campaign,
    Family,
    FlashSale,
    Giveaway,
    LiveEvent,
    ProductSet,
    RoomState,
    Viewer,
    Violation,
)
from server.domain import room
from server.domain.evolve import evolve, family_of, new_room
from server.domain.grants import Caller, Grant
from server.domain.refusal import Refusal

# --- the cast ----------------------------------------------------------------

ROOM = "room-p"
CREATOR = "creator-p"
AGENCY = "agency-a"
OTHER = "agency-b"
T0 = 1_700_000_000_000
MINUTE = 60_000
DAY = 24 * 60 * MINUTE
EXPIRES_AT = T0 + 20 * MINUTE
"""The "expiring" caller's link ends here: valid early in a run, ended later (R5)."""


def _staff(sid: str, agency: str = AGENCY) -> Actor:
    return Actor(role="staff", id=sid, agency=agency)


CALLERS: dict[str, Caller] = {
    "creator": Caller(actor=Actor(role="creator", id=CREATOR)),
    "stranger": Caller(actor=Actor(role="creator", id="creator-x")),
    "full": Caller(actor=_staff("s-full"), grant=Grant(agency=AGENCY, creator=CREATOR)),
    "scoped": Caller(
        actor=_staff("s-mod"),
        grant=Grant(agency=AGENCY, creator=CREATOR, scopes=frozenset({"moderation"})),
    ),
    "expiring": Caller(
        actor=_staff("s-exp"), grant=Grant(agency=AGENCY, creator=CREATOR, ends_at=EXPIRES_AT)
    ),
    "revoked": Caller(actor=_staff("s-rev"), grant=None),
    "ended": Caller(
        actor=_staff("s-end"),
        grant=Grant(agency=AGENCY, creator=CREATOR, granted_at=T0 - 9 * DAY, ends_at=T0 - 1),
    ),
    "other": Caller(actor=_staff("s-oth", OTHER), grant=Grant(agency=OTHER, creator="creator-x")),
    "stolen": Caller(actor=_staff("s-stl", OTHER), grant=Grant(agency=AGENCY, creator=CREATOR)),
}
"""Every kind of caller: the creator, a stranger creator, staff with a full, scoped
or expiring grant, and staff whose grant is gone, ended, for another creator, or
another agency's (a grant presented by staff of the wrong agency)."""

AUTH_CODES = frozenset({
    Code.FORBIDDEN, Code.CREATOR_ONLY, Code.NO_ACCESS, Code.LINK_ENDED, Code.OUT_OF_SCOPE,
    Code.FEED_CREATOR_ONLY, Code.ACCESS_REVOKED,
})  # fmt: skip


def auth_codes(who: str, family: Family, now: int) -> frozenset[Code] | None:
    """The codes authorization may refuse ``who`` with for ``family``; None if allowed."""
    if who == "creator":
        return None
    if who == "stranger":
        return frozenset({Code.FORBIDDEN})
    if family == "live":  # R10
        return frozenset({Code.CREATOR_ONLY, Code.FORBIDDEN})
    if family == "feed":  # the creator client alone feeds the platform's activity
        return frozenset({Code.FEED_CREATOR_ONLY, Code.CREATOR_ONLY, Code.FORBIDDEN})
    if who in ("revoked", "other", "stolen"):  # R6, R9
        return frozenset({Code.NO_ACCESS})
    if who == "ended" or (who == "expiring" and now >= EXPIRES_AT):  # R5
        return frozenset({Code.LINK_ENDED})
    if who == "scoped" and family != "moderation":
        return frozenset({Code.OUT_OF_SCOPE})
    return None


def may_enter(who: str, now: int) -> bool:
    """Whether staff ``who`` holds a valid grant of any scope at ``now`` (R5, R11)."""
    return who in ("full", "scoped") or (who == "expiring" and now < EXPIRES_AT)


# --- strategies ----------------------------------------------------------------


T = typing.TypeVar("T")


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """Pick a strategy with the given odds (``st.one_of`` drops repeated branches)."""
    slots = [index for index, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(slots).flatmap(lambda index: choices[index][1])


def _ids(prefix: str, n: int) -> st.SearchStrategy[str]:
    return st.sampled_from([f"{prefix}{i}" for i in range(n)])


PIDS = _ids("p", 5)
SALE_IDS = _ids("s", 2)
GIVEAWAY_IDS = _ids("g", 3)
USER_IDS = _ids("u", 4)
EVENT_IDS = _ids("e", 3)
SET_IDS = _ids("ps", 3)
CATEGORIES = st.sampled_from(["", "beauty", "food"])
SECONDS = st.integers(1, 900)
POSITIONS = st.integers(0, 6)  # bags hold 0-5 items: 6 is always out of range
OPT_BOOL = st.none() | st.booleans()
VIEWERS = st.builds(Viewer, unique_id=USER_IDS)
WHEN = st.integers(T0 - 60 * MINUTE, T0 + 3 * DAY)


def _cmd(
    cls: type[RoomCommand], **fields: st.SearchStrategy[object]
) -> st.SearchStrategy[RoomCommand]:
    """A command; the driver gives it a unique command_id and its expected_version."""
    return st.builds(cls, command_id=st.just("cmd"), room=st.just(ROOM), **fields)


BAG_ITEMS = st.builds(
    BagItem, product_id=PIDS, category=CATEGORIES, price_cents=st.integers(0, 10_000),
    stock=st.integers(0, 20),
)  # fmt: skip
SALES = st.builds(
    FlashSale, sale_id=SALE_IDS, product_id=PIDS, price_cents=st.integers(0, 10_000),
    stock=st.integers(1, 8), duration_s=st.integers(60, 900), sold=st.integers(0, 3),
    starts_at=st.none() | WHEN, ends_at=st.none() | WHEN, ended=st.booleans(),
)  # fmt: skip
GIVEAWAYS = st.builds(
    Giveaway, giveaway_id=GIVEAWAY_IDS, product_id=PIDS, winners=st.integers(1, 3),
    duration_s=SECONDS, deployed_at=st.none() | WHEN, ends_at=st.none() | WHEN,
)  # fmt: skip

COMMANDS: dict[type[RoomCommand], st.SearchStrategy[RoomCommand]] = {
    c.StartLive: _cmd(c.StartLive, title=st.sampled_from(["", "Launch"])),
    c.EndLive: _cmd(c.EndLive),
    c.BagAdd: _cmd(c.BagAdd, item=BAG_ITEMS, position=weighted((2, st.none()), (1, POSITIONS))),
    c.BagDelete: _cmd(c.BagDelete, product_id=PIDS),
    c.BagPin: _cmd(c.BagPin, product_id=PIDS),
    c.BagUnpin: _cmd(c.BagUnpin),
    c.BagMove: _cmd(c.BagMove, product_id=PIDS, position=POSITIONS),
    c.BagList: _cmd(c.BagList, category=st.none() | CATEGORIES, in_stock=OPT_BOOL),
    c.GiveawaySetUp: _cmd(c.GiveawaySetUp, giveaway=GIVEAWAYS),
    c.GiveawayDeploy: _cmd(c.GiveawayDeploy, giveaway_id=GIVEAWAY_IDS),
    c.FlashSaleSetUp: _cmd(c.FlashSaleSetUp, sale=SALES),
    c.FlashSaleDeploy: _cmd(c.FlashSaleDeploy, sale_id=SALE_IDS),
    c.FlashSaleEnd: _cmd(c.FlashSaleEnd, sale_id=SALE_IDS),
    c.BillboardDeploy: _cmd(
        c.BillboardDeploy, billboard=st.builds(Billboard, billboard_id=_ids("b", 2))
    ),
    c.BillboardTakeDown: _cmd(c.BillboardTakeDown),
    c.CommentSettingsUpdate: _cmd(
        c.CommentSettingsUpdate,
        allow_comments=OPT_BOOL,
        show_top_comment=OPT_BOOL,
        filter_spam=OPT_BOOL,
        default_mute_s=st.none() | SECONDS,
        default_block_s=st.none() | SECONDS,
    ),
    c.Mute: _cmd(c.Mute, user_id=USER_IDS, duration_s=st.none() | SECONDS),
    c.Unmute: _cmd(c.Unmute, user_id=USER_IDS),
    c.Block: _cmd(c.Block, user_id=USER_IDS, duration_s=st.none() | SECONDS),
    c.Unblock: _cmd(c.Unblock, user_id=USER_IDS),
    c.LiveEventSchedule: _cmd(
        c.LiveEventSchedule,
        event=st.builds(
            LiveEvent,
            event_id=EVENT_IDS,
            title=st.just("Show"),
            starts_at=WHEN,
            duration_s=SECONDS,
            cancelled=st.booleans(),
        ),
    ),
    c.LiveEventEdit: _cmd(
        c.LiveEventEdit,
        event_id=EVENT_IDS,
        title=st.none() | st.sampled_from(["Show", "New"]),
        starts_at=st.none() | WHEN,
        duration_s=st.none() | SECONDS,
    ),
    c.LiveEventCancel: _cmd(c.LiveEventCancel, event_id=EVENT_IDS),
    c.ProductSetSave: _cmd(
        c.ProductSetSave,
        product_set=st.builds(
            ProductSet, set_id=SET_IDS, name=st.just("Set"), product_ids=st.lists(PIDS, max_size=4)
        ),
    ),
    c.ProductSetDelete: _cmd(c.ProductSetDelete, set_id=SET_IDS),
    c.CampaignSave: _cmd(
        c.CampaignSave,
        campaign=st.builds(
            Campaign,
            campaign_id=_ids("cp", 2),
            name=st.just("Camp"),
            product_ids=st.lists(PIDS, max_size=4),
            discount_pct=st.integers(0, 100),
        ),
    ),
    c.ShowcaseUpdate: _cmd(c.ShowcaseUpdate, product_ids=st.lists(PIDS, max_size=6)),
    c.FeedComment: _cmd(
        c.FeedComment,
        comment_id=_ids("cm", 4),
        user=VIEWERS,
        content=st.sampled_from(["nice", "see www.spam.example", "!" * 25, "hi"]),
    ),
    c.FeedOrder: _cmd(
        c.FeedOrder,
        order_id=_ids("o", 4),
        user=VIEWERS,
        product_id=PIDS,
        quantity=st.integers(1, 9),
        amount_cents=st.integers(0, 5_000),
        sale_id=weighted((1, st.none()), (2, SALE_IDS)),
    ),
    c.FeedSubscription: _cmd(c.FeedSubscription, user=VIEWERS, month=st.integers(1, 12)),
    c.FeedFollow: _cmd(c.FeedFollow, user=VIEWERS),
    c.FeedGift: _cmd(
        c.FeedGift,
        user=VIEWERS,
        gift_id=st.integers(0, 5),
        repeat_count=st.integers(1, 10),
        repeat_end=st.booleans(),
    ),
    c.FeedViewers: _cmd(c.FeedViewers, total=st.integers(0, 10_000)),
    c.FeedViolation: _cmd(
        c.FeedViolation,
        violation=st.builds(
            Violation,
            violation_id=_ids("v", 3),
            policy=st.just("policy"),
            severity=st.sampled_from(["low", "medium", "high"]),
            at=st.just(0) | WHEN,
        ),
    ),
}
WHO_ELSE = ["full", "scoped", "expiring", "revoked", "ended", "other", "stolen", "stranger"]
DT = weighted(
    (14, st.integers(0, 5_000)),
    (4, st.integers(5_000, 10 * MINUTE)),
    (1, st.integers(10 * MINUTE, 3 * DAY)),  # far: mutes, sales and links expire
)


@dataclass(frozen=True)
class Step:
    """One step of a run: who acts, what they do, how much time passed before it.

    ``action`` None means the caller enters the room (``decide_enter``). ``back``
    sets expected_version to the family's current version minus ``back`` (-1: a
    future one, 0: the current one, >0: stale when the family has changed);
    ``aim`` points the command at something that exists: a flash-sale order goes
    to a running sale, for its product, with the remaining stock plus ``aim`` as
    quantity; a bag delete, pin or move names ``bag[aim]`` (the pinned product if
    ``aim`` < 0).
    """

    who: str
    action: RoomCommand | None
    dt: int
    back: int | None = None
    aim: int | None = None


BACK = weighted((4, st.none()), (1, st.integers(-1, 3)))
GO_LIVE = Step(who="creator", action=c.StartLive(command_id="cmd", room=ROOM), dt=0)
GROUPS: tuple[tuple[type[RoomCommand], ...], ...] = (
    (c.EndLive, c.StartLive),
    (c.BagAdd, c.BagDelete, c.BagPin, c.BagUnpin, c.BagMove, c.BagMove, c.BagList),
    (c.FlashSaleSetUp, c.FlashSaleDeploy, c.FlashSaleDeploy, c.FlashSaleEnd, c.FeedOrder,
     c.FeedOrder, c.FeedOrder),
    (c.GiveawaySetUp, c.GiveawayDeploy, c.BillboardDeploy, c.BillboardTakeDown),
    (c.CommentSettingsUpdate, c.Mute, c.Unmute, c.Block, c.Unblock, c.FeedComment),
    (c.LiveEventSchedule, c.LiveEventEdit, c.LiveEventCancel, c.ProductSetSave,
     c.ProductSetDelete, c.CampaignSave, c.ShowcaseUpdate),
    (c.FeedComment, c.FeedOrder, c.FeedSubscription, c.FeedFollow, c.FeedGift, c.FeedViewers,
     c.FeedViolation),
)  # fmt: skip
"""Commands that work together, so a run can go deep into one feature (repeats weigh)."""
_GROUP_ODDS = (2, 3, 3, 1, 2, 1, 1)


@st.composite
def scenarios(draw: st.DrawFn) -> list[Step]:
    """A run's steps, swarm style: each run draws from a few groups of commands and
    a few callers only, so bags fill up, sales sell out and staff collide in depth."""
    odds = [g for g, n in zip(GROUPS, _GROUP_ODDS, strict=True) for _ in range(n)]
    groups = draw(st.lists(st.sampled_from(odds), min_size=1, max_size=3, unique=True))
    # A LIVE that ends can start again, whatever the groups.
    types = [c.StartLive, *(t for g in groups for t in g)]
    others = draw(st.lists(st.sampled_from(WHO_ELSE), max_size=4, unique=True))
    action = st.sampled_from(types).flatmap(lambda t: COMMANDS[t])
    step = st.builds(
        Step,
        who=st.sampled_from(["creator"] * max(1, len(others)) + others),
        action=weighted((12, action), (1, st.none())),
        dt=DT,
        back=BACK,
        aim=weighted((1, st.none()), (3, st.integers(-2, 2))),
    )
    prefix = []
    if draw(st.integers(0, 3)) > 0:  # mostly start live, with a stocked bag
        items = draw(st.lists(BAG_ITEMS, max_size=5, unique_by=lambda i: i.product_id))
        prefix = [GO_LIVE] + [Step(who="creator", action=_stock(i), dt=0) for i in items]
    return prefix + draw(st.lists(step, min_size=20, max_size=60))


def _stock(item: BagItem) -> RoomCommand:
    return c.BagAdd(command_id="cmd", room=ROOM, item=item)


# --- the driver ----------------------------------------------------------------

_CLIENT = Codec("msgpack")


def _bytes(state: RoomState) -> bytes:
    return msgspec.msgpack.encode(state)


@dataclass
class Run:
    """A room driven step by step, with its log and the state after each event."""

    state: RoomState = field(default_factory=lambda: new_room(ROOM, CREATOR))
    now: int = T0
    log: list[Event] = field(default_factory=list)
    states: list[RoomState] = field(default_factory=list)
    """``states[k]``: the state after the first ``k`` events."""
    outcomes: list[tuple[int, RoomCommand | None, room.Decision]] = field(default_factory=list)
    """``(now, command sent, decision)`` of every step; command None for an entry."""

    def __post_init__(self) -> None:
        self.states.append(self.state)

    def append(self, caller: Caller, bodies: list[EventBody], command_id: str | None) -> None:
        """Wrap each body as the hub does and fold it (H2, R16)."""
        for body in bodies:
            event = Event(
                room=ROOM, seq=self.state.seq + 1, at=self.now, actor=CREATOR,
                by=caller.actor, body=body, command_id=command_id,
            )  # fmt: skip
            before, frozen = self.state, _bytes(self.state)
            self.state = evolve(before, event)
            assert _bytes(before) == frozen, "evolve changed the state it was given"
            check_event_versions(before, self.state, event)
            self.log.append(event)
            self.states.append(self.state)


def running(sale: FlashSale, now: int) -> bool:
    """Whether a flash sale takes orders at ``now``."""
    return sale.starts_at is not None and not sale.ended and now < (sale.ends_at or 0)


def resolve(state: RoomState, step: Step, index: int, now: int) -> RoomCommand:
    """The step's command as sent against ``state``: unique id, expected_version, and
    flash-sale orders aimed at a running sale, for around its remaining stock."""
    assert step.action is not None
    cmd = step.action
    current = state.versions.get(cmd.family, 0)
    expected = None if step.back is None else max(0, current - step.back)
    cmd = replace(cmd, command_id=f"cmd-{index}", expected_version=expected)
    if step.aim is None:
        pass
    elif isinstance(cmd, c.BagDelete | c.BagPin | c.BagMove) and state.bag:
        pid = state.pinned if step.aim < 0 else None
        pid = pid or state.bag[step.aim % len(state.bag)].product_id
        cmd = replace(cmd, product_id=pid)
    elif isinstance(cmd, c.FeedOrder) and cmd.sale_id is not None:
        open_ = [sid for sid, sale in sorted(state.flash_sales.items()) if running(sale, now)]
        sid = cmd.sale_id if cmd.sale_id in open_ or not open_ else open_[0]
        sale = state.flash_sales.get(sid)
        if sale is not None:
            left = sale.stock - sale.sold
            cmd = replace(
                cmd, sale_id=sid, product_id=sale.product_id,
                quantity=max(1, left + step.aim),
            )  # fmt: skip
    # Every command is one the edge would accept: it survives the wire unchanged (H6).
    assert _CLIENT.decode_client(_CLIENT.encode(cmd)) == cmd
    return cmd


def drive(steps: list[Step]) -> Run:
    """Run every step, checking the invariants after each one."""
    run = Run()
    for index, step in enumerate(steps):
        run.now += step.dt
        caller = CALLERS[step.who]
        before = run.state
        check_enter(before, step.who, run.now)
        if step.action is None:
            entered = room.decide_enter(before, caller, run.now)
            run.outcomes.append((run.now, None, entered))
            if not isinstance(entered, Refusal):
                run.append(caller, entered, None)
        else:
            cmd = resolve(before, step, index, run.now)
            frozen = _bytes(before)
            decision = room.decide(before, caller, cmd, run.now)
            # decide is pure: accepted or refused, the state it saw is untouched.
            assert _bytes(before) == frozen, "decide changed the state it was given"
            check_decision(before, step.who, cmd, decision, run.now)
            run.outcomes.append((run.now, cmd, decision))
            if not isinstance(decision, Refusal):
                run.append(caller, decision, cmd.command_id)
            check_step(before, run.state, who=step.who, cmd=cmd, decision=decision, now=run.now)
        check_state(run)
    return run


# --- invariants ------------------------------------------------------------------


def check_state(run: Run) -> None:
    """Invariants of every state a room can be in."""
    s = run.state
    pids = [i.product_id for i in s.bag]
    assert len(set(pids)) == len(pids), f"duplicate products in the bag: {pids}"
    assert len(pids) <= room.MAX_BAG_ITEMS
    # R13: one pinned item at most, and it is in the bag; nothing pinned or shown offline.
    assert s.pinned is None or s.pinned in pids, (s.pinned, pids)
    if s.status == "offline":
        assert (s.pinned, s.billboard, s.live_id, s.current) == (None, None, None, None)
    else:
        assert s.live_id is not None
        assert s.current is not None
    assert all(i.stock >= 0 for i in s.bag)
    for sid, sale in s.flash_sales.items():
        assert sid == sale.sale_id
        assert 0 <= sale.sold <= sale.stock, sale  # R13: never oversold
        if sale.starts_at is not None and sale.sold == sale.stock:
            assert sale.ended, f"a sold-out sale keeps running: {sale}"
        if s.status == "offline":  # no sale outlives its LIVE
            assert sale.starts_at is None or sale.ended, sale
    if s.status == "offline":  # no giveaway outlives its LIVE, and its end is an event
        for g in s.giveaways.values():
            assert g.ends_at is None or g.ended, g
    # Ended mutes and blocks leave the state with the first event at or after their
    # end; both are kept earliest end first (what makes that check O(1)).
    at = run.log[-1].at if run.log else T0
    for entries in (s.muted, s.blocked):
        ends = list(entries.values())
        assert ends == sorted(ends), entries
        assert all(until > at for until in ends), (at, entries)
    # H2: gap-free seqs, one per event.
    assert s.seq == len(run.log)
    assert [e.seq for e in run.log[-3:]] == list(range(s.seq - len(run.log[-3:]) + 1, s.seq + 1))
    assert all(0 < v <= s.seq for v in s.versions.values())


_PROJECTIONS: dict[Family, typing.Callable[[RoomState], object]] = {
    "live": lambda s: (s.status, s.live_id, s.title),
    "bag": lambda s: (s.bag, s.pinned),
    "promotion": lambda s: (s.giveaways, s.flash_sales),
    "billboard": lambda s: s.billboard,
    "moderation": lambda s: (s.comment_settings, s.muted, s.blocked),
    "planning": lambda s: (s.live_events, s.product_sets, s.campaigns, s.showcase),
}
"""The part of the room each family's version stands for (H5)."""


def check_event_versions(before: RoomState, after: RoomState, event: Event) -> None:
    """H5: an event bumps exactly its family's version, and a family's part of the
    room changes only with a bump of its version."""
    family = family_of(event.body)
    assert after.seq == event.seq
    for fam, project in _PROJECTIONS.items():
        if fam == family:
            assert after.versions[fam] == event.seq
            continue
        # Ending a LIVE clears the pin, the billboard and running giveaways, starting
        # one drops the last one's promotions: it bumps exactly the families it changed.
        if (isinstance(event.body, LiveEnded) and fam in ("bag", "billboard", "promotion")) or (
            isinstance(event.body, LiveStarted) and fam == "promotion"
        ):
            changed = project(before) != project(after)
            assert (after.versions.get(fam) == event.seq) == changed, fam
            continue
        assert after.versions.get(fam) == before.versions.get(fam)
        if project(before) == project(after):
            continue
        # Mutes and blocks that ended leave with any event, without a bump: the decider
        # already treated them as absent (decision 0018).
        if fam == "moderation" and project(_in_force(before, event.at)) == project(after):
            continue
        # Orders draw down stock (bag) and a sale's sold count (promotion) without
        # bumping those families, by design: the feed must not make staff edits stale.
        if isinstance(event.body, OrderPlaced) and fam in ("bag", "promotion"):
            continue
        raise AssertionError(f"{type(event.body).__name__} changed {fam} without a bump")


def _in_force(state: RoomState, at: int) -> RoomState:
    """``state`` without the mutes and blocks ended by ``at``."""
    return replace(
        state,
        muted={k: v for k, v in state.muted.items() if v > at},
        blocked={k: v for k, v in state.blocked.items() if v > at},
    )


def refused(decision: object, *codes: Code) -> Refusal:
    """``decision``, which must be a refusal with one of ``codes``."""
    assert isinstance(decision, Refusal), decision
    assert decision.code in codes, decision
    return decision


def check_decision(
    before: RoomState, who: str, cmd: RoomCommand, decision: object, now: int
) -> None:
    """The order of checks in decide: authorization, liveness (R13), freshness (H5)."""
    family = cmd.family
    denied = auth_codes(who, family, now)
    if denied is not None:
        # R6, R10, R5, scopes: nothing from a caller without access is ever applied.
        refused(decision, *denied)
        return
    assert not (isinstance(decision, Refusal) and decision.code in AUTH_CODES), (who, decision)
    if room.needs_live(cmd) and before.status != "live":  # R13, R12
        refused(decision, Code.NOT_LIVE)
        return
    assert not (isinstance(decision, Refusal) and decision.code == Code.NOT_LIVE), decision
    current = before.versions.get(family, 0)
    stale = cmd.expected_version is not None and cmd.expected_version < current
    if stale:  # H5: validated against the state it would apply to, refused whole
        refused(decision, Code.STALE_VERSION)
    else:
        assert not (isinstance(decision, Refusal) and decision.code == Code.STALE_VERSION)


def check_step(
    before: RoomState, after: RoomState, *, who: str, cmd: RoomCommand,
    decision: list[EventBody] | Refusal, now: int,
) -> None:  # fmt: skip
    """What one decided command did to the room."""
    if isinstance(decision, Refusal):
        assert after is before  # a refusal changes nothing
        check_refusal_reason(before, cmd, decision)
        return
    # R10: the live status changes only by the creator's own start/end.
    if after.status != before.status:
        assert who == "creator", (who, cmd)
        assert isinstance(cmd, c.StartLive | c.EndLive), cmd
    check_bag(before, after, cmd)
    check_notified(who, cmd, decision)
    match cmd:
        case c.FeedOrder(sale_id=str(sid), quantity=q):
            old, new = before.flash_sales[sid], after.flash_sales[sid]
            assert q <= old.stock - old.sold  # R13
            assert new.sold == old.sold + q
            assert new.ended == (new.sold == new.stock)
        case c.FeedComment(user=user):
            (posted,) = decision
            assert isinstance(posted, CommentPosted)
            check_hidden(before, user.unique_id, posted, now)
        case c.StartLive():
            assert (before.status, after.status) == ("offline", "live")
        case c.EndLive():
            assert (before.status, after.status) == ("live", "offline")
        case _:
            pass


def check_refusal_reason(before: RoomState, cmd: RoomCommand, refusal: Refusal) -> None:
    """Refusals that follow from the state, cross-checked against it."""
    match cmd, refusal.code:
        case c.FeedOrder(sale_id=str(sid), quantity=q), Code.SOLD_OUT:
            sale = before.flash_sales[sid]
            assert q > sale.stock - sale.sold  # R13: refused only when it would oversell
        case c.BagAdd(item=item), Code.ALREADY_EXISTS:
            assert item.product_id in [i.product_id for i in before.bag]
        case (c.BagAdd(position=int(at)), Code.POSITION_OUT_OF_RANGE):
            assert at > len(before.bag)
        case c.BagMove(position=at), Code.POSITION_OUT_OF_RANGE:
            assert at >= len(before.bag)
        case c.StartLive(), Code.ALREADY_LIVE:
            assert before.status == "live"
        case _:
            pass


def check_bag(before: RoomState, after: RoomState, cmd: RoomCommand) -> None:
    """R13, H5: the bag stays a permutation of its products, changed only as asked."""
    old = [i.product_id for i in before.bag]
    new = [i.product_id for i in after.bag]
    match cmd:
        case c.BagAdd(item=item, position=position):
            at = len(old) if position is None else position
            assert new == [*old[:at], item.product_id, *old[at:]], (old, cmd, new)
            assert after.bag[at] == item
        case c.BagDelete(product_id=pid):
            assert new == [p for p in old if p != pid]
            assert len(new) == len(old) - 1
            assert after.pinned is None if before.pinned == pid else after.pinned == before.pinned
        case c.BagMove(product_id=pid, position=at):
            assert sorted(new) == sorted(old)
            assert new[at] == pid
            assert [p for p in new if p != pid] == [p for p in old if p != pid]
            assert {i.product_id: i for i in after.bag} == {i.product_id: i for i in before.bag}
        case c.BagPin(product_id=pid):
            assert (new, after.pinned) == (old, pid)
        case c.BagUnpin():
            assert (new, after.pinned) == (old, None)
        case c.FeedOrder(product_id=pid, quantity=q):
            assert new == old
            for o, n in zip(before.bag, after.bag, strict=True):
                assert n.stock == (max(0, o.stock - q) if o.product_id == pid else o.stock)
        case _:
            assert after.bag == before.bag


NOTIFIED: dict[type[RoomCommand], NotificationKind] = {
    c.LiveEventSchedule: "agency_created", c.LiveEventEdit: "agency_changed",
    c.LiveEventCancel: "agency_changed", c.ProductSetSave: "agency_created",
    c.ProductSetDelete: "agency_changed", c.CampaignSave: "agency_created",
    c.ShowcaseUpdate: "agency_changed", c.GiveawaySetUp: "agency_created",
    c.GiveawayDeploy: "agency_created", c.FlashSaleSetUp: "agency_created",
    c.FlashSaleDeploy: "agency_created", c.BillboardDeploy: "agency_created",
}  # fmt: skip
"""R14: what an agency creates or changes before or around a LIVE, and how it is
notified (bag and moderation actions are not: the creator watches them happen)."""


def check_notified(who: str, cmd: RoomCommand, events: list[EventBody]) -> None:
    """R14: what staff create or change is notified to the creator, once, last."""
    notes = [e for e in events if isinstance(e, CreatorNotified)]
    kind = NOTIFIED.get(type(cmd))
    if who == "creator" or kind is None or not events:
        assert notes == [], (who, cmd, events)
        return
    assert len(notes) == 1, events
    assert events[-1] is notes[0], events
    assert notes[0].kind == kind


def check_hidden(before: RoomState, uid: str, posted: CommentPosted, now: int) -> None:
    """R13 moderation: blocked and muted accounts' comments are hidden until expiry."""
    if before.blocked.get(uid, 0) > now:
        assert posted.hidden == "blocked", posted
    elif before.muted.get(uid, 0) > now:
        assert posted.hidden == "muted", posted
    else:  # an expired mute or block hides nothing
        assert posted.hidden not in ("blocked", "muted"), (posted, before.muted, before.blocked)


def check_enter(state: RoomState, who: str, now: int) -> None:
    """R11, R15: who may enter the room, and the creator hears of every staff entry."""
    decision = room.decide_enter(state, CALLERS[who], now)
    if who == "creator":
        assert decision == []
    elif who == "stranger":
        refused(decision, Code.FORBIDDEN)
    elif not may_enter(who, now):
        expected = Code.LINK_ENDED if who in ("ended", "expiring") else Code.NO_ACCESS
        refused(decision, expected)
    elif state.status != "live":  # R11: staff join only a live room
        refused(decision, Code.NOT_LIVE)
    else:  # R15
        assert isinstance(decision, list), decision
        (note,) = decision
        assert isinstance(note, CreatorNotified), note
        assert note.kind == "staff_entered"


def check_replay(run: Run, midpoint: int) -> None:
    """H2, R16 and replay: the log alone rebuilds the room, through either codec and
    from a snapshot plus the rest of the log."""
    log = run.log
    assert [e.seq for e in log] == list(range(1, len(log) + 1))  # H2
    # R14, R15: the creator's inbox keeps one entry per notification id.
    notes = [e.body.notification_id for e in log if isinstance(e.body, CreatorNotified)]
    assert len(set(notes)) == len(notes), notes
    state = new_room(ROOM, CREATOR)
    for k, event in enumerate(log, start=1):
        state = evolve(state, event)
        assert state == run.states[k], f"replay diverges at seq {k}"
    assert state == run.state
    for fmt in ("msgpack", "json"):
        codec = Codec(fmt)
        wire = [codec.encode(e) for e in log]
        if fmt == "msgpack":
            decoded = [msgspec.msgpack.decode(b, type=Event) for b in wire]
        else:
            decoded = [msgspec.json.decode(b, type=Event) for b in wire]
        assert decoded == log
        state = new_room(ROOM, CREATOR)
        for event in decoded:
            # R16: the audience sees the creator; the log keeps who really acted.
            assert event.actor == CREATOR
            assert event.by in [k.actor for k in CALLERS.values()]
            state = evolve(state, event)
        assert state == run.state
    k = midpoint % (len(log) + 1)
    snapshot = msgspec.msgpack.decode(msgspec.msgpack.encode(run.states[k]), type=RoomState)
    assert snapshot == run.states[k]
    snapshot = msgspec.json.decode(msgspec.json.encode(snapshot), type=RoomState)
    for event in log[k:]:
        snapshot = evolve(snapshot, event)
    assert snapshot == run.state


# --- the tests ---------------------------------------------------------------------


def test_strategies_cover_every_room_command():
    """The generator draws every RoomCommand type of the protocol."""
    assert set(COMMANDS) == set(typing.get_args(RoomCommand))
    assert {t for group in GROUPS for t in group} == set(COMMANDS)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
@given(steps=scenarios(), midpoint=st.integers(0, 1000))
def test_random_sequences_keep_the_room_invariants(steps, midpoint):
    """Random callers, commands and clocks keep every room invariant and replay exactly."""
    run = drive(steps)
    check_replay(run, midpoint)


def _do(who: str, command: RoomCommand, dt: int = 0, aim: int | None = None) -> Step:
    return Step(who=who, action=command, dt=dt, aim=aim)


def _stocked(*pids: str) -> list[Step]:
    return [GO_LIVE] + [_do("creator", _stock(BagItem(product_id=p, stock=3))) for p in pids]


@settings(max_examples=150, deadline=None)
@given(
    stock=st.integers(1, 8),
    duration_s=st.integers(60, 600),
    orders=st.lists(
        st.tuples(st.integers(1, 9), weighted((1, st.none()), (3, st.integers(-2, 2))), DT),
        min_size=1,
        max_size=25,
    ),
    stop=st.none() | st.tuples(st.integers(0, 25), st.sampled_from(["end_live", "end_sale"])),
)
def test_flash_sale_never_oversells(stock, duration_s, orders, stop):
    """R13: a running flash sale sells at most its stock, ends when sold out, then sells nothing."""
    sale = FlashSale(sale_id="s0", product_id="p0", price_cents=500, stock=stock,
                     duration_s=duration_s)  # fmt: skip
    steps = [
        *_stocked("p0", "p1"),
        _do("full", c.FlashSaleSetUp(command_id="cmd", room=ROOM, sale=sale)),
        _do("creator", c.FlashSaleDeploy(command_id="cmd", room=ROOM, sale_id="s0")),
    ]
    setup = len(steps)
    for quantity, aim, dt in orders:
        order = c.FeedOrder(command_id="cmd", room=ROOM, order_id="o1", user=Viewer(unique_id="u0"),
                            product_id="p0", quantity=quantity, sale_id="s0")  # fmt: skip
        steps.append(_do("creator", order, dt, aim))
    if stop is not None:
        at, how = stop
        end: RoomCommand = (
            c.EndLive(command_id="cmd", room=ROOM) if how == "end_live"
            else c.FlashSaleEnd(command_id="cmd", room=ROOM, sale_id="s0")
        )  # fmt: skip
        who = "creator" if how == "end_live" else "full"
        steps.insert(setup + min(at, len(orders)), _do(who, end))
    run = drive(steps)
    # The model: what the sale must have done with each order.
    _, _, deployed = run.outcomes[setup - 1]
    assert not isinstance(deployed, Refusal)
    ends_at = T0 + duration_s * 1000
    left, open_, live, sold = stock, True, True, 0
    for now, cmd, decision in run.outcomes[setup:]:
        if isinstance(cmd, c.EndLive):
            assert not isinstance(decision, Refusal)
            live = open_ = False
        elif isinstance(cmd, c.FlashSaleEnd):
            assert (decision == [FlashSaleEnded(sale_id="s0", reason="ended")]) == (
                open_ and now < ends_at
            ), decision
            open_ = False
        elif isinstance(cmd, c.FeedOrder):
            q = cmd.quantity
            if not live:
                refused(decision, Code.NOT_LIVE)
            elif not open_ or now >= ends_at:
                refused(decision, Code.SALE_NOT_ACTIVE)
            elif q > left:  # never oversell (R13)
                refused(decision, Code.SOLD_OUT)
            else:
                assert not isinstance(decision, Refusal), decision
                left, sold = left - q, sold + q
                if left == 0:
                    assert FlashSaleEnded(sale_id="s0", reason="sold_out") in decision
                    open_ = False
    final = run.state.flash_sales["s0"]
    assert final.sold == sold == stock - left <= stock
    assert run.state.bag[0].stock == max(0, 3 - sold)  # the bag item's stock drawn down too


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(BAG_ITEMS, min_size=2, max_size=5, unique_by=lambda i: i.product_id),
    first=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    second=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    careless=st.booleans(),
)
def test_concurrent_reorders_never_corrupt_the_bag(items, first, second, careless):
    """H5: two staff reorder the bag from the same version: the later move is refused, or
    applied on top of the first when sent without a version, never half-applied."""
    run = drive([GO_LIVE] + [_do("creator", _stock(i)) for i in items])
    seen = run.state.versions.get("bag", 0)
    n = len(items)

    def move(pick: tuple[int, int], expected: int | None) -> c.BagMove:
        return c.BagMove(
            command_id=f"mv-{pick}",
            room=ROOM,
            expected_version=expected,
            product_id=items[pick[0] % n].product_id,
            position=pick[1] % n,
        )

    one = room.decide(run.state, CALLERS["full"], move(first, seen), run.now)
    assert isinstance(one, list)
    run.append(CALLERS["full"], one, "mv-1")
    mid = run.state
    two_cmd = move(second, None if careless else seen)
    two = room.decide(mid, CALLERS["expiring"], two_cmd, run.now)
    if one and not careless:
        refused(two, Code.STALE_VERSION)
        return
    assert isinstance(two, list)
    run.append(CALLERS["expiring"], two, "mv-2")
    check_bag(mid, run.state, two_cmd)
    check_state(run)


def test_notified_commands_are_the_r14_table():
    """R14: the decider notifies exactly the agency creations and changes of NOTIFIED."""
    assert {t: kind for t, (kind, _) in room._NOTIFY.items()} == NOTIFIED


# --- bugs these tests found, fixed: kept as regressions ------------------------------


def test_live_ended_bumps_the_versions_of_what_it_clears():
    """H5: ending a LIVE unpins and takes the billboard down, so bag and billboard move on."""
    billboard = Billboard(billboard_id="b0")
    run = drive([
        *_stocked("p0"),
        _do("creator", c.BagPin(command_id="cmd", room=ROOM, product_id="p0")),
        _do("creator", c.BillboardDeploy(command_id="cmd", room=ROOM, billboard=billboard)),
        _do("creator", c.EndLive(command_id="cmd", room=ROOM)),
    ])  # fmt: skip
    before, after = run.states[-2], run.state
    assert (before.pinned, before.billboard) == ("p0", billboard)
    assert (after.pinned, after.billboard) == (None, None)
    assert after.versions["bag"] > before.versions["bag"]
    assert after.versions["billboard"] > before.versions["billboard"]


def test_notification_ids_stay_unique_for_long_command_ids():
    """R14: two agency creations with distinct command ids are two distinct notifications."""
    run = Run()
    ids = []
    for last in "12":
        cmd = c.CampaignSave(command_id="x" * 127 + last, room=ROOM,
                             campaign=Campaign(campaign_id=f"cp{last}", name="Camp"))  # fmt: skip
        decision = room.decide(run.state, CALLERS["full"], cmd, run.now)
        assert isinstance(decision, list)
        run.append(CALLERS["full"], decision, cmd.command_id)
        ids += [e.notification_id for e in decision if isinstance(e, CreatorNotified)]
    assert len(ids) == 2
    assert ids[0] != ids[1], ids


def test_ending_a_live_ends_its_giveaways():
    """R12, R13: once the LIVE has ended, a giveaway it deployed can be set up again."""
    giveaway = Giveaway(giveaway_id="g0", product_id="p0", duration_s=600)
    run = drive([
        GO_LIVE,
        _do("creator", c.GiveawaySetUp(command_id="cmd", room=ROOM, giveaway=giveaway)),
        _do("creator", c.GiveawayDeploy(command_id="cmd", room=ROOM, giveaway_id="g0")),
        _do("creator", c.EndLive(command_id="cmd", room=ROOM), dt=1_000),
    ])  # fmt: skip
    assert run.state.status == "offline"
    again = c.GiveawaySetUp(command_id="again", room=ROOM, giveaway=giveaway)
    decision = room.decide(run.state, CALLERS["full"], again, run.now + 1_000)
    assert not isinstance(decision, Refusal), decision
