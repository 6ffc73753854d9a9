"""Prometheus metrics of one server, on the app's own registry (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    """Every metric the server exports on ``/metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.connections = Gauge("livepilot_connections", "Open WebSocket sessions.", registry=r)
        self.rooms = Gauge("livepilot_rooms", "Rooms loaded in memory.", registry=r)
        self.commands = Counter(
            "livepilot_commands",
            "Room commands by type and result (ok or refusal code).",
            ["type", "result"],
            registry=r,
        )
        self.fanout_seconds = Histogram(
            "livepilot_fanout_seconds",
            "Time to fold and fan out one command's events.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=r,
        )
        self.slow_consumers = Counter(
            "livepilot_slow_consumer_disconnects",
            "Sessions closed for a full send queue.",
            registry=r,
        )
        self.rate_limited = Counter(
            "livepilot_rate_limit_refusals",
            "Messages refused by a rate limit: a connection's, its actor's (shared by its "
            "connections) or the HTTP API's writes (decision 0021).",
            ["limit"],
            registry=r,
        )
        for limit in ("connection", "actor", "http"):  # exported at 0 from the start
            self.rate_limited.labels(limit)
        self.connection_refusals = Counter(
            "livepilot_connection_refusals",
            "WebSocket connections refused after hello, by reason (too_many_connections: "
            "the actor's cap, close code 4006).",
            ["reason"],
            registry=r,
        )
        self.connection_refusals.labels("too_many_connections")
        self.revocations = Counter(
            "livepilot_revocations", "Sessions cut off because access ended.", registry=r
        )
        self.unaudited_refusals = Counter(
            "livepilot_unaudited_refusals",
            "Refused commands of callers with no relation to the creator they name (R16): "
            "logged and counted here, not written to that creator's audit trail.",
            ["source", "code"],
            registry=r,
        )
        self.unreadable_records = Counter(
            "livepilot_unreadable_records",
            "Stored events or snapshots that did not decode on load, by kind.",
            ["kind"],
            registry=r,
        )
        self.unreadable_rooms = Gauge(
            "livepilot_unreadable_rooms",
            "Rooms whose stored log does not decode (/readyz answers 503 while any).",
            registry=r,
        )
        self._command_counters: dict[tuple[str, str], Counter] = {}
        self.decode_errors = Counter(
            "livepilot_decode_errors",
            "Frames refused by the decoder, by code.",
            ["code"],
            registry=r,
        )
        self.connections_refused = Counter(
            "livepilot_connections_refused",
            "Connections answered HTTP 503 at accept: max_connections were open.",
            registry=r,
        )
        self.accept_errors = Counter(
            "livepilot_accept_errors",
            "Accepts the event loop reported failed for lack of descriptors or memory "
            "(EMFILE, ENFILE, ENOBUFS, ENOMEM).",
            registry=r,
        )
        self.handshake_timeouts = Counter(
            "livepilot_handshake_timeouts",
            "Connections closed for not sending their HTTP request or completing the "
            "WebSocket handshake within handshake_timeout_s.",
            registry=r,
        )
        self.hello_timeouts = Counter(
            "livepilot_hello_timeouts",
            "WebSockets closed for not sending hello within hello_timeout_s.",
            registry=r,
        )
        self.open_connections = Gauge(
            "livepilot_open_connections",
            "Client connections admitted and still open (HTTP and WebSocket).",
            registry=r,
        )

    def command_done(self, command_type: str, result: str) -> None:
        """Count one command by type and result; children are cached (hot path)."""
        key = (command_type, result)
        counter = self._command_counters.get(key)
        if counter is None:
            counter = self._command_counters[key] = self.commands.labels(command_type, result)
        counter.inc()
