"""Which images sandboxes may use, and when the server may pull one.

An image name is a destination as much as a name: `127.0.0.1:8814/evil/img` makes dockerd connect
there. So the operator decides: CORRAL_IMAGES lists the images create_sandbox may use (exact names,
`repo/*` for everything under a repository path, `repo:*` for every tag of one, `*` for any; by
default the default image plus whatever is already present on the engine), and CORRAL_IMAGE_PULL
the ones the server may pull when missing (none by default). Both are checked before any engine
call names the image.
"""

from __future__ import annotations

from corral.config import Settings
from corral.errors import BackendError, ImageNotFound, InvalidRequest
from corral.sandbox_backend.engine import Engine


def normalize(ref: str) -> str:
    """The canonical form of an image reference: registry/path[:tag][@digest], with Docker Hub's
    implied parts spelled out ('python:3' -> 'docker.io/library/python:3', 'ubuntu' -> ':latest')."""
    name, _, digest = ref.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    repo, tag = (name[:colon], name[colon + 1 :]) if colon > slash else (name, "" if digest else "latest")
    first, _, rest = repo.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", repo
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return f"{domain}/{path}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def repository(ref: str) -> str:
    """The normalized repository of a reference, without tag or digest."""
    full = normalize(ref).partition("@")[0]
    slash, colon = full.rfind("/"), full.rfind(":")
    return full[:colon] if colon > slash else full


def matches(pattern: str, image: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        prefix = repository(pattern[:-2] + "/x")[: -len("/x")]
        return repository(image).startswith(prefix + "/")
    if pattern.endswith(":*"):
        return repository(pattern[:-2]) == repository(image)
    return normalize(pattern) == normalize(image)


class ImagePolicy:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._settings = settings
        self._engine = engine

    async def ensure(self, image: str) -> None:
        """Allow `image` and make sure it is present (pulling only where the operator allowed it),
        or raise an error that says why and what the operator can change."""
        settings = self._settings
        local: set[str] | None = None
        if settings.images is None:
            if not matches(settings.image, image):
                local = {normalize(name) for name in await self._engine.list_images()}
                if normalize(image) not in local:
                    raise InvalidRequest(
                        f"image {image!r} is not allowed on this server: it allows its default image "
                        f"{settings.image!r} and images already present on it. The operator can allow more "
                        "with CORRAL_IMAGES (names or patterns such as 'python:*', comma-separated)."
                    )
        elif not any(matches(p, image) for p in (*settings.images, settings.image)):
            allowed = ", ".join(dict.fromkeys((settings.image, *settings.images)))
            raise InvalidRequest(
                f"image {image!r} is not allowed on this server; it allows: {allowed} "
                "(the operator's CORRAL_IMAGES). Leave `image` out for the default."
            )
        present = normalize(image) in local if local is not None else await self._engine.image_exists(image)
        if present:
            return
        if not any(matches(p, image) for p in settings.image_pull):
            hint = (
                "the operator can build it with `corral image build`"
                if image == settings.image
                else "ask the operator to pull it, or to allow pulling it with CORRAL_IMAGE_PULL"
            )
            raise ImageNotFound(
                f"image {image!r} is not present on this server, and pulling it is not allowed (the operator's "
                f"CORRAL_IMAGE_PULL); {hint}"
            )
        try:
            await self._engine.pull_image(image)
        except BackendError as exc:
            raise ImageNotFound(f"could not pull image {image!r}: {exc}") from None
