"""The sandbox service: lifecycle, policy and the in-sandbox channel, between tools and backend."""

from corral.service.sandboxes import SandboxService

__all__ = ["SandboxService"]
