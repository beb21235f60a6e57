"""What a feature needs of the sandboxes: find one, make it ready, talk to its agent.

Features (execution, files, processes, ports, git) depend on this Protocol, not on
`SandboxService` itself, so none of them can reach the store, the engine or the lifecycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from corral.sandbox_backend.store import SandboxRecord

OnEvent = Callable[[dict[str, Any]], Awaitable[None]]


class SandboxAccess(Protocol):
    async def resolve(self, ref: str) -> SandboxRecord:
        """The caller's sandbox with this id or name (SandboxNotFound otherwise, also for another
        tenant's); nothing is started."""
        ...

    async def list_all(self) -> list[SandboxRecord]:
        """The caller's sandboxes."""
        ...

    async def use(self, ref: str) -> SandboxRecord:
        """Resolve and make ready (a stopped sandbox is started; a lost one is SandboxLost)."""
        ...

    async def request(
        self,
        ref: str,
        op: str,
        params: dict[str, Any],
        *,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
    ) -> dict[str, Any]:
        """One request to the sandbox's agent (docs/agent-protocol.md); agent errors arrive as
        AgentRefused / AgentFailure / SandboxBusy / PayloadTooLarge with their `kind`."""
        ...

    def agent_argv(self, rec: SandboxRecord, mode: str, *args: str) -> list[str]:
        """The command line that runs the sandbox's installed agent in `mode` (by absolute path)."""
        ...

    def agent_started(self, sandbox_id: str) -> float | None:
        """Start time of the sandbox's agent daemon, once connected."""
        ...
