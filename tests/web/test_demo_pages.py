"""`livepilot demo` prints the two page URLs, signed in and ready to open."""

from __future__ import annotations

import re
from typing import Any

import pytest

from server.auth import verify
from server.demo import CREATOR, STAFF, _banner, grant_demo_access, page_urls
from tests.e2e.conftest import Server


def test_the_banner_prints_both_page_urls_with_ready_tokens(server: Server) -> None:
    """The demo banner names /console (into the demo room) and /creator, each with a
    token that verifies, carried in the URL fragment."""
    banner = _banner(server.settings, server.settings.port, server.clock())
    console = re.search(r"Live Manager: (\S+)", banner)
    creator = re.search(r"Creator page: (\S+)", banner)
    assert console is not None
    assert creator is not None
    assert "/console#token=" in console.group(1)
    assert f"&room={CREATOR.id}" in console.group(1)
    assert "/creator#token=" in creator.group(1)
    for url, actor in ((console.group(1), STAFF), (creator.group(1), CREATOR)):
        token = url.split("#token=", 1)[1].split("&", 1)[0]
        principal = verify(token, server.runtime.keys, now=server.clock())
        assert getattr(principal, "actor", None) == actor


@pytest.mark.browser
async def test_the_demo_urls_open_signed_in(browser: Any, server: Server) -> None:
    """Opening the printed URLs: the console lands in the demo creator's room, the creator
    page is signed in as the demo creator; neither keeps the token in the address bar."""
    await grant_demo_access(server.runtime)
    staff = server.token(agency=STAFF.agency, staff=STAFF.id)
    creator = server.token(creator=CREATOR.id)
    console_url, creator_url = page_urls(server.settings, server.settings.port, staff, creator)
    page = await browser.new_page()
    await page.goto(console_url)
    await page.wait_for_selector(f"#room-title >> text={CREATOR.id}")
    assert "token" not in page.url
    other = await browser.new_page()
    await other.goto(creator_url)
    await other.wait_for_selector(f"#who >> text=creator {CREATOR.id}")
    assert "token" not in other.url
