"""The layer that speaks to the outside: Docker (+ gVisor), images, the in-sandbox agent, SQLite."""
