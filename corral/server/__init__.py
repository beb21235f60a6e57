"""The MCP server: tool registration, lifespan, and the stdio / SSE / Streamable HTTP transports."""

from corral.server.app import ServiceHolder, build_server

__all__ = ["ServiceHolder", "build_server"]
