"""server.domain.feed: the spam heuristic behind the comment filter (R13)."""

from __future__ import annotations

import pytest

from server.domain.feed import is_spam


@pytest.mark.parametrize(
    ("content", "spam"),
    [
        ("visit www.example.com", True),
        ("see HTTPS://x.example", True),
        ("a" * 19, False),  # too short to call a flood
        ("a" * 20, True),
        ("ab" * 15, True),  # two characters flooded
        ("aab" + "a" * 20, True),
        ("abc" + "a" * 20, False),  # three distinct in the first three
        ("aa" + "b" * 20 + "c", False),  # the third distinct one comes last
        ("nice jacket, what size is it?", False),
    ],
)
def test_links_and_floods_are_spam(content: str, spam: bool) -> None:
    """Links, and comments of at least 20 characters made of one or two, are spam."""
    # R13
    assert is_spam(content) is spam
