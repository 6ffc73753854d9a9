"""The hub: sessions, rooms in memory, ordered fan-out with backpressure."""
