"""livepilot's load-test harness: scenarios run side by side with baselines.

``python -m loadtest SCENARIO [options]`` (or ``livepilot-loadtest``) starts each
system under test in its own server process (pinned to one core), drives it from
this process (pinned to the other core) with picows clients on uvloop, and
reports every figure next to the same figure of a raw ``websockets`` relay and a
python-socketio server doing the same job with the same clients and message
sizes. See ``docs/benchmarks.md``.

Scenarios (``loadtest.scenarios``): ``fanout``, ``relay``, ``idle``, ``durable``,
``revoke``. Systems (``loadtest.systems``): ``livepilot``, ``raw``, ``sio``.
"""

from __future__ import annotations

__all__: list[str] = []
