"""``livepilot demo``: a live room in one command.

Serves on the given settings, links a demo agency to a demo creator with LIVE
Manager access, and runs a simulated creator client (the SDK) that goes live
and streams a realistic feed: comments, orders, gifts, follows, viewer counts.
It prints the tokens and how to open a console session, then runs until
interrupted (or for ``duration`` seconds).
"""

from __future__ import annotations

import random
import shlex
import socket
import sys
from collections.abc import Callable

import anyio

from client import Client
from protocol import access as a
from protocol import commands as c
from protocol.model import Actor, BagItem, FlashSale, Viewer
from server.auth import mint
from server.config import Settings
from server.runtime import Runtime
from server.serve import build_server
from server.startup import bind_listener

__all__ = ["CREATOR", "STAFF", "feed", "grant_demo_access", "page_urls", "run_demo"]

CREATOR = Actor(role="creator", id="demo-creator")
STAFF = Actor(role="staff", id="demo-staff", agency="demo-agency")
PRODUCTS = [
    BagItem(
        product_id="sku-dress",
        title="Linen summer dress",
        category="apparel",
        price_cents=3900,
        stock=120,
    ),
    BagItem(
        product_id="sku-serum",
        title="Vitamin C serum",
        category="beauty",
        price_cents=2450,
        stock=300,
    ),
    BagItem(
        product_id="sku-bottle",
        title="Insulated bottle 750 ml",
        category="home",
        price_cents=1899,
        stock=0,
    ),
]
VIEWERS = [
    Viewer(unique_id=f"fan_{i:03d}", nickname=name, member_level=i % 7)
    for i, name in enumerate(["Mia", "Leo", "Zoe", "Kai", "Ana", "Noah", "Ivy", "Sam"])
]
COMMENTS = [
    "love this!",
    "how much is the dress?",
    "does it come in blue?",
    "size M please",
    "just ordered 🎉",
    "hi from Manila",
    "restock the bottle pls",
    "🔥🔥🔥",
]
GIFTS = [(5655, "Rose"), (5269, "TikTok"), (6064, "GG"), (7934, "Heart Me")]


async def grant_demo_access(runtime: Runtime) -> None:
    """The demo agency requests link + LIVE access; the demo creator accepts (R1, R5)."""
    if runtime.access.grant_for(STAFF.agency or "", CREATOR.id, runtime.clock()) is not None:
        return
    request_id = f"demo-{runtime.clock()}"
    await runtime.access.submit(
        STAFF, a.RequestLink(request_id=request_id, creator=CREATOR.id, with_access=True)
    )
    await runtime.access.submit(CREATOR, a.AcceptRequest(request_id=request_id))


async def feed(
    client: Client, room: str, rng: random.Random, steps: int | None, pause: Callable[[], float]
) -> int:
    """The simulated creator client: go live, stock the bag, stream activity.

    Returns how many feed commands were acknowledged.
    """
    snapshot = await client.join(room)
    if snapshot.state.status != "live":
        await client.send(client.command(c.StartLive, room=room, title="Summer drop LIVE"))
    bag = {item.product_id for item in (await client.join(room)).state.bag}
    for item in PRODUCTS:
        if item.product_id not in bag:
            await client.send(client.command(c.BagAdd, room=room, item=item))
    sale = FlashSale(
        sale_id="demo-sale", product_id="sku-serum", price_cents=1500, stock=25, duration_s=600
    )
    await client.send(client.command(c.FlashSaleSetUp, room=room, sale=sale))
    viewers = 40
    sent = 0
    while steps is None or sent < steps:
        user = rng.choice(VIEWERS)
        roll = rng.random()
        command: c.Command
        if roll < 0.55:
            command = client.command(
                c.FeedComment,
                room=room,
                comment_id=f"cm-{rng.getrandbits(48)}",
                user=user,
                content=rng.choice(COMMENTS),
            )
        elif roll < 0.70:
            viewers = max(1, viewers + rng.randint(-5, 12))
            command = client.command(c.FeedViewers, room=room, total=viewers)
        elif roll < 0.82:
            item = rng.choice(PRODUCTS[:2])
            qty = rng.randint(1, 2)
            command = client.command(
                c.FeedOrder,
                room=room,
                order_id=f"o-{rng.getrandbits(48)}",
                user=user,
                product_id=item.product_id,
                quantity=qty,
                amount_cents=item.price_cents * qty,
            )
        elif roll < 0.92:
            gift_id, name = rng.choice(GIFTS)
            command = client.command(
                c.FeedGift,
                room=room,
                user=user,
                gift_id=gift_id,
                gift_name=name,
                repeat_count=rng.randint(1, 10),
            )
        else:
            command = client.command(c.FeedFollow, room=room, user=user)
        await client.send(command)
        sent += 1
        await anyio.sleep(pause())
    return sent


def page_urls(
    settings: Settings, port: int, staff_token: str, creator_token: str
) -> tuple[str, str]:
    """The console (straight into the demo room) and creator page URLs, signed in."""
    base = f"http://{settings.host}:{port}"
    return (
        f"{base}/console#token={staff_token}&room={CREATOR.id}",
        f"{base}/creator#token={creator_token}",
    )


def _banner(settings: Settings, port: int, now: int) -> str:
    url = f"ws://{settings.host}:{port}/ws"
    creator = mint(settings, creator=CREATOR.id, ttl_s=12 * 3600, now=now)
    staff = mint(settings, agency=STAFF.agency, staff=STAFF.id, ttl_s=12 * 3600, now=now)
    # The interpreter running livepilot: a bare `python` may lack the client package.
    python = shlex.quote(sys.executable)
    return f"""
livepilot demo: {CREATOR.id} is LIVE at {url}
  agency {STAFF.agency} has LIVE Manager access (staff {STAFF.id}).

Open in a browser (the token rides in the #fragment, which is never sent to the server):
  Live Manager: {page_urls(settings, port, staff, creator)[0]}
  Creator page: {page_urls(settings, port, staff, creator)[1]}

  creator token: {creator}
  staff token:   {staff}

Open a console session as the staff member (in another terminal; Ctrl-C to stop):

  {python} - <<'PY'
  import asyncio
  from client import Client, CommandRefused
  from protocol.commands import BagPin
  async def main():
      async with Client() as client:
          await client.connect("{url}", "{staff}")
          snap = await client.join("{CREATOR.id}")
          print("bag:", [i.product_id for i in snap.state.bag], "pinned:", snap.state.pinned)
          try:
              await client.send(client.command(BagPin, room="{CREATOR.id}", product_id="sku-dress"))
          except CommandRefused as refused:  # e.g. 310: it is pinned already
              print("refused:", refused.code, refused)
          async for event in client.events("{CREATOR.id}"):
              print(event)
  asyncio.run(main())
  PY

HTTP: curl -H "Authorization: Bearer <creator token>" http://{settings.host}:{port}/api/notifications
Press Ctrl-C to stop.
"""


async def run_demo(
    settings: Settings,
    sock: socket.socket | None = None,
    *,
    duration: float | None = None,
    seed: int | None = None,
) -> None:
    """Serve, grant the demo agency, stream a feed; stop after ``duration`` seconds.

    ``sock``: the socket to serve on, already bound (``livepilot demo`` binds it
    before anything else); by default one is bound to the settings' host and port.
    """
    if sock is None:
        sock = bind_listener(settings.host, settings.port)
    port: int = sock.getsockname()[1]
    server = build_server(settings)
    rng = random.Random(seed)
    async with anyio.create_task_group() as tg:

        async def serve() -> None:
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()  # stopped by Ctrl-C or SIGTERM: stop the feed too

        tg.start_soon(serve)
        await server.ready.wait()
        runtime: Runtime = server.app.state.runtime
        await grant_demo_access(runtime)
        print(_banner(settings, port, runtime.clock()), flush=True)
        token = mint(settings, creator=CREATOR.id, ttl_s=12 * 3600, now=runtime.clock())
        url = f"ws://{settings.host}:{port}/ws"
        with anyio.move_on_after(duration if duration is not None else float("inf")):
            async with Client() as client:
                await client.connect(url, token)
                await feed(client, CREATOR.id, rng, None, lambda: rng.uniform(0.05, 0.6))
        server.should_exit = True
