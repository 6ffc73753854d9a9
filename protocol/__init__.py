"""livepilot protocol v1: the wire contract, pure and importable by any client."""
