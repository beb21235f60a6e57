"""The security tier uses the Docker tier's fixtures (real engine, runsc, MCP sessions)."""

from tests.integration.conftest import client, corral_home, home, sandbox, settings
from tests.integration.git_server import git_server

__all__ = ["client", "corral_home", "git_server", "home", "sandbox", "settings"]
