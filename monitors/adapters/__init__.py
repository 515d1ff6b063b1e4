"""Real SDK clients behind small Protocols. Nothing outside this package imports an SDK."""
