"""The security tier reuses the Docker tier's fixtures: the real engine and runsc, real MCP sessions,
the shared sandbox and the real git server on a test network's gateway."""

from __future__ import annotations

from tests.integration.conftest import client, corral_home, git_server, home, sandbox, settings

__all__ = ["client", "corral_home", "git_server", "home", "sandbox", "settings"]
