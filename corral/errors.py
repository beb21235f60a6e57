"""Corral's exceptions: one root, translated at the boundary they cross.

    CorralError
    ├── InvalidRequest          bad input the model can fix (language, path, size, name, ...)
    │   └── PayloadTooLarge
    ├── SandboxNotFound         no sandbox has that id or name (message lists the known ones)
    ├── SandboxLost             the record exists but its container vanished from Docker
    ├── SandboxBusy             the sandbox is being created/deleted by another call
    ├── QuotaExceeded           a server-side limit (number of sandboxes, ...)
    ├── BackendError            the Docker engine failed or refused
    │   ├── BackendUnavailable  Docker is not reachable
    │   ├── ImageNotFound       the image is not present and cannot be pulled
    │   └── RuntimeMissing      gVisor (runsc) is not registered with Docker
    └── AgentFailure            the in-sandbox agent failed or sent garbage

Docker's own exceptions are mapped in `sandbox_backend.docker_engine` and never leave it; every
CorralError's message is written for the model: what was wrong and what is valid.
"""

from __future__ import annotations


class CorralError(Exception):
    """Root of every error Corral raises on purpose."""


class InvalidRequest(CorralError):
    pass


class PayloadTooLarge(InvalidRequest):
    pass


class SandboxNotFound(CorralError):
    pass


class SandboxLost(CorralError):
    pass


class SandboxBusy(CorralError):
    pass


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


class AgentFailure(CorralError):
    pass
