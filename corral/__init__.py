"""Corral: an MCP server that gives AI agents real Linux sandboxes (Docker + gVisor)."""

__version__ = "0.1.0"
