"""Docker's exceptions, translated into Corral's tree at the boundary (`map_docker_errors`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions

from corral.errors import BackendError, BackendUnavailable, ImageNotFound


@contextlib.contextmanager
def map_docker_errors(what: str) -> Iterator[None]:
    """Translate docker/requests exceptions into Corral's tree, with a message that says what to do."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFound(f"{what}: image not found ({explain(exc)})") from exc
    except docker.errors.NotFound as exc:
        raise BackendError(f"{what}: not found ({explain(exc)})") from exc
    except docker.errors.APIError as exc:
        raise BackendError(f"{what}: Docker refused: {explain(exc)}") from exc
    except docker.errors.DockerException as exc:
        raise BackendUnavailable(
            f"{what}: cannot talk to the Docker engine ({exc}). Is dockerd running? "
            "`make serve` / scripts/setup-host.sh starts it."
        ) from exc
    except (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError) as exc:
        raise BackendUnavailable(
            f"{what}: the Docker engine is not reachable ({type(exc).__name__}). Is dockerd running? "
            "`make serve` / scripts/setup-host.sh starts it."
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise BackendError(f"{what}: Docker request failed: {exc}") from exc


def next_event(stream: Any) -> dict[str, Any] | None:
    try:
        return next(stream)  # type: ignore[no-any-return]
    except (StopIteration, docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return None


def explain(exc: docker.errors.APIError | docker.errors.NotFound) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


