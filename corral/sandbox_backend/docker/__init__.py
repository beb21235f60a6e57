"""The Docker engine behind the `Engine` seam."""

from corral.sandbox_backend.docker.engine import DockerEngine

__all__ = ["DockerEngine"]
