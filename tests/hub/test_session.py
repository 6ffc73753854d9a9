"""A session's outbox: bounded, never waits, closes a slow consumer."""

from __future__ import annotations

from protocol.codec import Codec
from protocol.errors import CloseCode
from protocol.messages import Pong
from server.hub.session import Session
from tests.actors import CREATOR


def test_overflow_closes_the_session_as_slow() -> None:
    """Delivering into a full outbox closes the session with SLOW_CONSUMER, without waiting."""
    # H6 (backpressure)
    session = Session("s1", CREATOR, Codec("json"), expires_at=0, max_buffered=2)
    session.deliver(b"a")
    session.deliver(b"b")
    assert not session.is_closed
    session.deliver(b"c")
    assert session.is_closed
    assert session.close_code == CloseCode.SLOW_CONSUMER
    assert session.pending() == 2
    session.deliver(b"d")  # after close: dropped, not queued
    assert session.pending() == 2


def test_first_close_wins() -> None:
    """A second close request does not change the code of the first."""
    session = Session("s1", CREATOR, Codec("json"), expires_at=0, max_buffered=2)
    session.close(CloseCode.ABUSE, "abuse")
    session.close(CloseCode.GOING_AWAY, "bye")
    assert (session.close_code, session.close_reason) == (CloseCode.ABUSE, "abuse")


def test_frames_follow_the_session_format() -> None:
    """JSON sessions queue text frames; MessagePack sessions queue bytes."""
    text = Session("s1", CREATOR, Codec("json"), expires_at=0, max_buffered=64)
    binary = Session("s2", CREATOR, Codec("msgpack"), expires_at=0, max_buffered=64)
    text.send(Pong(nonce=1))
    binary.send(Pong(nonce=1))
    assert text.take_frames() == [b'{"type":"pong","nonce":1}']
    [frame] = binary.take_frames()
    assert isinstance(frame, bytes)
    assert Codec("msgpack").decode_server(frame) == Pong(nonce=1)


def test_one_frame_bigger_than_the_bound_goes_to_a_client_that_keeps_up() -> None:
    """A frame bigger than the bound is queued when nothing is waiting (a large
    snapshot); only what comes on top of it closes the session as slow."""
    # H6 (backpressure bounds what waits, not what is sent)
    session = Session("s1", CREATOR, Codec("json"), expires_at=0, max_buffered=4)
    session.deliver(b"0123456789")
    assert not session.is_closed
    assert session.pending() == 10
    session.deliver(b"x")
    assert session.close_code == CloseCode.SLOW_CONSUMER
