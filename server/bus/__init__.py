"""The bus between server nodes (multi-node mode): wake-ups, presence, access notices."""
