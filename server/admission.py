"""Admission of client connections: a bound on how many are open, a deadline on handshakes.

``serve`` puts an :class:`Admission` in front of uvicorn's HTTP protocol factory
(decision 0022). Every accepted socket first meets a :class:`_Gate`: the transport's
protocol while the connection speaks HTTP, passing everything on to uvicorn's HTTP
protocol; on an upgrade livepilot's WebSocket protocol (:mod:`server.wire`) takes the
connection over from it and tells it when the connection is lost.

- Past ``max_connections`` open connections a new one is answered HTTP 503 with
  ``Retry-After`` at once, without an HTTP protocol being built for it, then closed.
- Every HTTP request must arrive whole (its headers, and the body its
  ``Content-Length`` announces) within ``handshake_timeout_s`` of its first byte
  (of accept, for a connection's first request), and a WebSocket upgrade must be
  accepted by then; otherwise the socket is aborted. Trickling bytes does not extend
  the deadline: it is not an idle timeout.
- Descriptor exhaustion the event loop reports (EMFILE on accept) is counted and
  logged once per interval instead of a traceback per failed accept.
- With a ``websocket`` protocol, a connection whose first bytes are a request for
  ``/ws`` goes to it straight away, without an HTTP protocol being built (decision
  0023): uvicorn's HTTP protocol costs a WebSocket connection about a fifth of its
  set-up. Anything else is HTTP, built on its first bytes.

The descriptor budget: ``serve`` raises its soft ``RLIMIT_NOFILE`` to the hard limit
(:func:`raise_fd_limit`); ``max_connections`` 0 means :func:`default_max_connections`
of that limit, well below it, so accepting never runs out of descriptors.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Final, cast

from server.metrics import Metrics

__all__ = [
    "FD_HEADROOM", "LINGER_S", "LOG_INTERVAL_S", "REFUSAL", "Admission",
    "default_max_connections",
    "fd_limit", "raise_fd_limit",
]  # fmt: skip

logger = logging.getLogger("livepilot.admission")

FD_HEADROOM: Final = 64
"""Descriptors kept for what is not a client: the SQLite file, its WAL and shared memory,
the listening socket, the event loop's own, stdio (and Redis, when it lands)."""
FD_SHARE: Final = 0.9
"""Share of the descriptors left after :data:`FD_HEADROOM` that clients may hold; the
rest absorbs refused connections while they read their 503 and bursts of accepts."""
NO_FD_LIMIT_DEFAULT: Final = 10_000
"""``max_connections`` 0 where the descriptor limit is unknown or unlimited."""
LINGER_S: Final = 1.0
"""How long a refused connection may take to read its 503 and close before it is cut."""
LOG_INTERVAL_S: Final = 10.0
"""At most one log line per this many seconds about refusals, and about accept errors."""
RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
MAX_HEAD_BYTES: Final = 64 * 1024
"""Bytes of one request's head held while waiting for its end; the HTTP parser (h11:
16 KB) answers 400 long before, so a longer head is cut."""

_BODY: Final = b"too many connections; retry later\n"
REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 1\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)
"""What a connection past ``max_connections`` reads before it is closed. Clients treat
an HTTP status >= 500 at the handshake as retryable (client/driver.py)."""

_END_OF_HEAD = re.compile(rb"\n\r?\n")  # h11 accepts bare LF line ends too
WS_REQUEST_LINES: Final = (b"GET /ws ", b"GET /ws?")
"""How a connection's first bytes start when it asks for ``/ws`` (the WebSocket route)."""


def fd_limit() -> int | None:
    """This process's soft descriptor limit; None where unknown or unlimited."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def raise_fd_limit() -> int | None:
    """Raise this process's soft descriptor limit to its hard limit; the soft limit after.

    An unlimited hard limit cannot become the soft one (Linux caps it at
    ``fs.nr_open``, macOS at ``OPEN_MAX``): large finite values are tried instead.
    Where nothing can be raised the limit stays as it is.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    targets = (hard,) if hard != resource.RLIM_INFINITY else (1 << 20, 10_240)
    for target in targets:
        if soft == resource.RLIM_INFINITY or target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        break
    return fd_limit()


def default_max_connections(limit: int | None) -> int:
    """``max_connections`` for a soft descriptor ``limit`` (the setting's 0): the share
    :data:`FD_SHARE` of what :data:`FD_HEADROOM` leaves, at least 1."""
    if limit is None:
        return NO_FD_LIMIT_DEFAULT
    return max(1, int((limit - FD_HEADROOM) * FD_SHARE))


class _Quiet:
    """Counts occurrences of something and says when to log it: at most once per
    :data:`LOG_INTERVAL_S`, with how many happened since the last line."""

    __slots__ = ("_count", "_next")

    def __init__(self) -> None:
        self._count = 0
        self._next = 0.0

    def hit(self) -> int:
        """Count one; the number to log now, or 0 to stay quiet."""
        self._count += 1
        now = time.monotonic()
        if now < self._next:
            return 0
        self._next = now + LOG_INTERVAL_S
        count, self._count = self._count, 0
        return count


class Admission:
    """The open client connections of one server: bounded in number, handshakes in time.

    ``open`` counts connections admitted and not yet closed, HTTP and WebSocket
    alike: each holds a descriptor, whatever it speaks.
    """

    def __init__(
        self,
        max_connections: int,
        handshake_timeout_s: float,
        metrics: Metrics,
        *,
        websocket: Callable[..., asyncio.Protocol] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.websocket = websocket
        """What serves a connection that asks for ``/ws`` first, called with the HTTP
        protocol's keywords (uvicorn's ``config``, ``server_state``, ``app_state``);
        None: every connection starts as HTTP."""
        self.handshake_timeout_s = handshake_timeout_s
        self.metrics = metrics
        self.open = 0
        """Connections admitted and not closed yet."""
        self.lingering = 0
        """Refused connections still reading their 503 (each holds a descriptor too)."""
        self.max_lingering = max(16, max_connections // 10)
        """Past this many, a refused connection is cut at once instead of lingering."""
        self._refusals = _Quiet()
        self._accept_errors = _Quiet()
        self._previous: Any = None
        metrics.open_connections.set_function(lambda: self.open)

    def protocol_factory(
        self, inner: Callable[..., asyncio.Protocol]
    ) -> Callable[..., asyncio.Protocol]:
        """A protocol factory, called as ``inner`` is, whose protocols are gates in front
        of the ones ``inner`` makes (made only for connections admitted)."""

        def gate(*args: Any, **kwargs: Any) -> asyncio.Protocol:
            return _Gate(self, inner, args, kwargs)

        return gate

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle the loop's reports of descriptor exhaustion (see :meth:`loop_error`);
        anything else goes to the handler the loop had."""
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self.loop_error)

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give the loop its previous exception handler back."""
        if loop.get_exception_handler() == self.loop_error:
            loop.set_exception_handler(self._previous)

    def loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """A loop exception handler: an OSError of exhausted descriptors or memory (the
        loop's "socket.accept() out of system resource", retried by the loop a second
        later) is counted and logged once per interval, without a traceback."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
            self.metrics.accept_errors.inc()
            count = self._accept_errors.hit()
            if count:
                logger.warning(
                    "out of file descriptors or memory: accepting paused",
                    extra={
                        "error": errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                        "errors": count,
                        "open": self.open,
                        "max_connections": self.max_connections,
                    },
                )
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def refuse(self, transport: asyncio.Transport) -> bool:
        """Answer 503 on a connection past the bound; True if it lingers to read it.

        It lingers (its request is read and dropped) until the client closes or
        :data:`LINGER_S` passes: closing a socket with unread input sends a reset,
        which may destroy the 503 before the client reads it.
        """
        self.metrics.connections_refused.inc()
        count = self._refusals.hit()
        if count:
            logger.warning(
                "refusing connections: max_connections open",
                extra={
                    "refused": count,
                    "max_connections": self.max_connections,
                },
            )
        transport.write(REFUSAL)
        if self.lingering >= self.max_lingering or not transport.can_write_eof():
            transport.abort()
            return False
        self.lingering += 1
        transport.write_eof()
        return True


_NEW, _REFUSED, _LINGERING, _PENDING, _HTTP, _UNTRACKED, _UPGRADED, _GONE = range(8)


class _Gate(asyncio.Protocol):
    """One client connection: refused, or admitted and handed to the protocol behind it.

    While it speaks HTTP the gate is the transport's protocol and passes everything
    on to uvicorn's HTTP protocol; it follows request boundaries (reading what the
    HTTP protocol read, after it) to arm the deadline at a request's first byte and
    disarm it once the request is whole. A request with a chunked body is not
    followed further: its end is not known without parsing the chunks (livepilot's
    clients send none).

    When the HTTP protocol upgrades the connection (or the first bytes ask for
    ``/ws`` and the admission has a ``websocket`` protocol), the WebSocket protocol
    calls :meth:`hand_over` from its ``connection_made`` (whether the upgrade comes
    with new bytes or after a pipelined response): the transport talks to it directly
    from then on (no hop on the WebSocket read path), the deadline stands until its
    handshake is accepted, and it calls back when the connection is lost, so the
    gate counts it out.
    """

    __slots__ = (
        "_admission",
        "_body_left",
        "_deadline",
        "_head",
        "_inner",
        "_make",
        "_state",
        "_transport",
    )

    def __init__(
        self,
        admission: Admission,
        factory: Callable[..., asyncio.Protocol],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._admission = admission
        self._make: (
            tuple[Callable[..., asyncio.Protocol], tuple[Any, ...], dict[str, Any]] | None
        ) = (factory, args, kwargs)
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._head: bytearray | None = None
        self._body_left = 0
        self._state = _NEW

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is one without the class
        self._transport = transport
        admission = self._admission
        make, self._make = self._make, None
        if admission.open >= admission.max_connections:
            if admission.refuse(transport):
                self._state = _LINGERING
                self._deadline = asyncio.get_running_loop().call_later(LINGER_S, transport.abort)
            else:
                self._state = _REFUSED
            return
        admission.open += 1
        self._arm()
        if admission.websocket is not None:  # which protocol: known from the first bytes
            self._state = _PENDING
            self._make = make
            return
        self._state = _HTTP
        assert make is not None
        factory, args, kwargs = make
        inner = self._inner = factory(*args, **kwargs)
        inner.connection_made(transport)

    def _route(self, data: bytes) -> bool:
        """The first bytes: to the WebSocket protocol (True: it has them), or build the
        HTTP protocol (False: the caller hands them on)."""
        make, self._make = self._make, None
        transport = self._transport
        websocket = self._admission.websocket
        assert make is not None
        assert transport is not None
        assert websocket is not None
        factory, args, kwargs = make
        self._state = _HTTP
        if data.startswith(WS_REQUEST_LINES):
            protocol = websocket(*args, **kwargs)
            protocol.connection_made(transport)  # takes the connection over: hand_over
            transport.set_protocol(protocol)
            protocol.data_received(data)
            return True
        inner = self._inner = factory(*args, **kwargs)
        inner.connection_made(transport)
        return False

    def hand_over(self, protocol: asyncio.Protocol) -> Callable[[], None]:
        """The connection was upgraded to ``protocol``, which the transport calls from
        now on; the deadline stands until ``protocol.accepted``. Returns what
        ``protocol`` must call once the connection is lost."""
        self._inner = protocol
        self._state = _UPGRADED
        self._head = None
        if self._deadline is None:  # the upgrade came after a pipelined request
            self._arm()
        return self._gone

    def data_received(self, data: bytes) -> None:
        if self._state == _PENDING and self._route(data):
            return
        inner = self._inner
        if inner is None:  # refused: what it sends is read and dropped
            return
        inner.data_received(data)
        if self._state != _HTTP:
            return
        transport = self._transport
        assert transport is not None
        if transport.get_protocol() is self:
            self._follow(data)
        else:  # upgraded to a protocol that does not hand over: it cannot be followed
            logger.debug(
                "connection upgraded past the gate",
                extra={"protocol": repr(transport.get_protocol())},
            )
            self._gone()

    def eof_received(self) -> bool | None:
        inner = self._inner
        if inner is None:
            return None  # refused: the client read its 503 and closed; so do we
        return inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == _LINGERING:
            self._admission.lingering -= 1
        inner = self._inner
        self._gone()
        if inner is not None:
            inner.connection_lost(exc)

    def _gone(self) -> None:
        """The connection is closed (or beyond following): count it out, once."""
        self._disarm()
        if self._state in (_PENDING, _HTTP, _UNTRACKED, _UPGRADED):
            self._admission.open -= 1
        self._state = _GONE
        self._inner = None

    # --- the deadline ------------------------------------------------------------------

    def _arm(self) -> None:
        self._deadline = asyncio.get_running_loop().call_later(
            self._admission.handshake_timeout_s, self._expired
        )

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._state == _UPGRADED and getattr(self._inner, "accepted", True):
            return  # the WebSocket handshake is over; ws.py's hello deadline takes over
        if self._state == _GONE:
            return
        self._admission.metrics.handshake_timeouts.inc()
        assert self._transport is not None
        self._transport.abort()  # not close(): a client that does not read would keep it

    def _follow(self, data: bytes) -> None:
        """Follow request boundaries in ``data``: the deadline runs from a request's
        first byte until its head and announced body are in."""
        while data:
            if self._body_left:
                taken = min(self._body_left, len(data))
                self._body_left -= taken
                data = data[taken:]
                if not self._body_left:
                    self._disarm()
                continue
            if self._deadline is None:
                self._arm()  # the first byte of the next request
            head = self._head
            if head is None:
                head = self._head = bytearray()
            start = max(0, len(head) - 2)
            head += data
            end = _END_OF_HEAD.search(head, start)
            if end is None:
                if len(head) > MAX_HEAD_BYTES:
                    assert self._transport is not None
                    self._transport.abort()
                return
            data = bytes(head[end.end() :])
            self._head = None
            length = _body_length(head[: end.start()])
            if length is None:
                self._state = _UNTRACKED
                self._disarm()
                return
            self._body_left = length
            if not length:
                self._disarm()


def _body_length(head: bytes | bytearray) -> int | None:
    """The body length a request head announces: 0 without one, None if chunked (or
    any transfer coding, whose length is unknown until it ends)."""
    length = 0
    for line in head.split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            try:
                length = max(0, int(value.strip()))
            except ValueError:  # the HTTP parser answers 400 and closes
                length = 0
    return length
