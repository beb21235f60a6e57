"""Corral's exceptions: one root, translated at the boundary they cross.

    CorralError
    ├── InvalidRequest          bad input the model can fix (language, path, size, name, ...)
    │   ├── PayloadTooLarge     more bytes than a limit allows
    │   └── AgentRefused        the in-sandbox agent refused the request; `.kind` says why
    │                           (not_found, permission, exists, not_running, timeout, ...)
    ├── SandboxNotFound         no sandbox has that id or name (message lists the known ones)
    ├── SandboxLost             the record exists but its container vanished from the engine
    ├── SandboxBusy             the sandbox (or one of its contexts) is in use or changing state
    ├── SandboxCrashed          the sandbox stopped during the call (out of memory, too many
    │                           processes, ...); `.oom` says which; it restarts on the next call
    ├── QuotaExceeded           a server-side limit (number of sandboxes, ports, processes, ...)
    ├── BackendError            the container engine failed or refused
    │   ├── BackendUnavailable  the engine is not reachable
    │   ├── ImageNotFound       the image is not present and cannot be pulled
    │   ├── RuntimeMissing      gVisor (runsc) is not registered with the engine
    │   ├── DiskQuotaUnavailable  a sandbox's disk limit cannot be enforced here (not root, no loop devices)
    │   ├── NetworkUnavailable  the host cannot fence sandbox networks (iptables, br_netfilter)
    │   └── CheckpointUnavailable  memory could not be saved, copied or restored (the reason
    │                           says why); callers fall back to keeping files only
    ├── StoreError              the state database failed (locked too long, disk full, corrupt)
    │   └── StoreConflict       a write broke a uniqueness rule (two creates with one name)
    ├── AgentFailure            the in-sandbox agent failed, vanished or sent garbage; `.kind`
    └── ConfigurationError      the operator's settings are invalid (never the model's doing)

Dependency errors are translated where they arise and never leak: Docker's in
`sandbox_backend.docker.errors`, SQLite's in `sandbox_backend.store.db`, the agent protocol's in
`service.agents`. Every message is written for its reader: what was wrong and what is valid.
"""

from __future__ import annotations


class CorralError(Exception):
    """Root of every error Corral raises on purpose."""


class InvalidRequest(CorralError):
    pass


class PayloadTooLarge(InvalidRequest):
    pass


class AgentRefused(InvalidRequest):
    """The agent answered with an error about the request (docs/agent-protocol.md, error types)."""

    def __init__(self, message: str, kind: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field  # the request parameter it is about (e.g. "cwd", "argv"), if the agent said


class SandboxNotFound(CorralError):
    pass


class SandboxLost(CorralError):
    pass


class SandboxBusy(CorralError):
    pass


class SandboxCrashed(CorralError):
    def __init__(self, message: str, *, oom: bool = False, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.oom = oom
        self.exit_code = exit_code


class QuotaExceeded(CorralError):
    pass


class BackendError(CorralError):
    pass


class BackendUnavailable(BackendError):
    pass


class ImageNotFound(BackendError):
    pass


class RuntimeMissing(BackendError):
    pass


class DiskQuotaUnavailable(BackendError):
    pass


class CheckpointUnavailable(BackendError):
    pass


class StoreError(CorralError):
    pass


class StoreConflict(StoreError):
    pass


class AgentFailure(CorralError):
    def __init__(self, message: str, kind: str = "internal") -> None:
        super().__init__(message)
        self.kind = kind


class ConfigurationError(CorralError):
    pass


class NetworkUnavailable(BackendError):
    """The host cannot enforce a sandbox network policy (iptables, br_netfilter, the proxy)."""
