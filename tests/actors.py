"""The test suite's common cast: one creator, two agencies and their staff.

Tests that need other ids (several creators in one room test, the long ids of the
end-to-end stories) keep their own, named for who they are.
"""

from __future__ import annotations

from protocol.model import Actor

CREATOR_ID = "cr-1"
"""The creator whose room, requests, inbox and trail the tests are about."""
OTHER_CREATOR_ID = "cr-2"
"""A second creator, a stranger to the first's room and requests."""
AGENCY = "ag-1"
"""The agency that asks for (and mostly gets) a link and LIVE access."""
OTHER_AGENCY = "ag-2"
"""A second agency, linked only when a test says so."""

CREATOR = Actor(role="creator", id=CREATOR_ID)
ANN = Actor(role="staff", id="ann", agency=AGENCY)
"""The agency's staff member who sends the requests."""
BOB = Actor(role="staff", id="bob", agency=AGENCY)
"""Another staff member of the same agency."""
ANN_ELSEWHERE = Actor(role="staff", id="ann", agency=OTHER_AGENCY)
"""A staff member of the other agency who happens to share ann's id."""
EVE = Actor(role="staff", id="eve", agency=OTHER_AGENCY)
"""Staff of the other agency."""
