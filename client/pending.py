"""Requests awaiting their answer: commands by ``command_id``, pings by nonce.

A command stays pending until its ``Ack``, ``BagListing`` or ``Refused``
arrives, across reconnects: it is resent on every new connection with the
same ``command_id`` (H1), so each waiter sees one answer. A ping is resent the
same way. When the client ends, every waiter fails with the reason.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

from client.errors import ClientClosed, CommandRefused
from protocol.messages import Ack, BagListing, Pong, RoomCommand

__all__ = ["Pending", "PendingCommands", "Pings", "answer_future"]


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception retrieved: nobody may be waiting any more."""
    if not future.cancelled():
        future.exception()


def answer_future() -> asyncio.Future[Any]:
    """A future for an answer, whose exception never goes unretrieved."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.add_done_callback(_consume)
    return future


@dataclass(eq=False)
class Pending:
    """A command sent (or to send) and not answered yet."""

    command: RoomCommand
    future: asyncio.Future[Ack | BagListing]
    generation: int = 0
    """The connection it was last sent on; 0: never sent."""
    waiters: int = 0

    def claim(self, generation: int) -> bool:
        """Whether to send the command on connection ``generation`` (then it counts as sent
        there): not when it was answered or was sent there already."""
        if self.future.done() or self.generation == generation:
            return False
        self.generation = generation
        return True


class PendingCommands:
    """The commands awaiting their answer, by ``command_id``."""

    def __init__(self) -> None:
        self._by_id: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def track(self, command: RoomCommand) -> Pending:
        """The pending entry of ``command`` (new, or the one in flight), with one more waiter.

        Raises ``ValueError`` if its ``command_id`` is in flight for another command.
        """
        pending = self._by_id.get(command.command_id)
        if pending is None:
            pending = Pending(command, answer_future())
            self._by_id[command.command_id] = pending
        elif pending.command != command:
            raise ValueError(f"command_id {command.command_id} is in flight for another command")
        pending.waiters += 1
        return pending

    def release(self, pending: Pending) -> None:
        """One waiter is gone; when none is left and no answer came, forget the command."""
        pending.waiters -= 1
        if pending.waiters == 0 and not pending.future.done():
            pending.future.cancel()
            if self._by_id.get(pending.command.command_id) is pending:
                del self._by_id[pending.command.command_id]

    def all(self) -> list[Pending]:
        """Every pending command, oldest first (to resend on a new connection)."""
        return list(self._by_id.values())

    def settle(self, command_id: str, answer: Ack | BagListing | CommandRefused) -> None:
        """Hand a command its answer (a refusal is raised to its waiters)."""
        pending = self._by_id.pop(command_id, None)
        if pending is None or pending.future.done():
            return  # a duplicate answer (the command was resent) or a forgotten command
        if isinstance(answer, CommandRefused):
            pending.future.set_exception(answer)
        else:
            pending.future.set_result(answer)

    def fail(self, reason: ClientClosed) -> None:
        """The client ended: fail every waiter and forget every command."""
        for pending in self._by_id.values():
            if not pending.future.done():
                pending.future.set_exception(reason)
        self._by_id.clear()


class Pings:
    """The pings awaiting their pong, by nonce."""

    def __init__(self) -> None:
        self._by_nonce: dict[int, asyncio.Future[Pong]] = {}
        self._nonces = itertools.count(1)

    def add(self) -> tuple[int, asyncio.Future[Pong]]:
        """A fresh nonce and the future its pong resolves."""
        nonce = next(self._nonces)
        future: asyncio.Future[Pong] = answer_future()
        self._by_nonce[nonce] = future
        return nonce, future

    def forget(self, nonce: int) -> None:
        """Stop waiting for the pong of ``nonce``."""
        self._by_nonce.pop(nonce, None)

    def nonces(self) -> list[int]:
        """The nonces still waiting (to ping again on a new connection)."""
        return list(self._by_nonce)

    def answer(self, pong: Pong) -> None:
        """Resolve the ping a pong answers, if it is still waited for."""
        ping = self._by_nonce.pop(pong.nonce, None)
        if ping is not None and not ping.done():
            ping.set_result(pong)

    def fail(self, reason: ClientClosed) -> None:
        """The client ended: fail every ping still waiting."""
        for ping in self._by_nonce.values():
            if not ping.done():
                ping.set_exception(reason)
