"""The SDK's errors: which closes reconnect, and the public names."""

from __future__ import annotations

import pytest

from client import ClientClosed, SessionClosed, close_is_retryable


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (4000, True),
        (4003, True),
        (4499, True),
        (4500, False),
        (4501, False),
        (4999, False),
        (1006, True),
        (1001, True),
        (1011, True),
        (1000, True),
        (1002, False),
        (1008, False),
    ],
)
def test_close_is_retryable(code: int, retryable: bool) -> None:
    """4000-4499 and connection losses reconnect; 4500-4999 and protocol faults do not."""
    assert close_is_retryable(code) is retryable


def test_session_closed_is_client_closed() -> None:
    """SessionClosed is another public name of ClientClosed: catching either catches both."""
    assert SessionClosed is ClientClosed
    with pytest.raises(SessionClosed):
        raise ClientClosed(4500, "bad token")
