"""The operator's image allowlist and pull patterns, against the in-memory engine: a refused image
never reaches the engine by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import Settings
from corral.errors import ConfigurationError, ImageNotFound, InvalidRequest
from corral.sandbox_backend.fake import FakeEngine
from corral.service.images import ImagePolicy, matches, normalize


def test_names_are_compared_in_their_canonical_form() -> None:
    assert normalize("python:3.12-slim") == "docker.io/library/python:3.12-slim"
    assert normalize("ubuntu") == "docker.io/library/ubuntu:latest"
    assert normalize("corral/sandbox:3") == "docker.io/corral/sandbox:3"
    assert normalize("127.0.0.1:5000/evil/img") == "127.0.0.1:5000/evil/img:latest"
    assert normalize("ghcr.io/o/r@sha256:ab") == "ghcr.io/o/r@sha256:ab"
    assert matches("python:3.12-slim", "docker.io/library/python:3.12-slim")
    assert matches("corral/*", "corral/sandbox:3") and not matches("corral/*", "corralx/sandbox:2")
    assert matches("ghcr.io/org/*", "ghcr.io/org/team/img:1") and not matches("ghcr.io/org/*", "ghcr.io/orgx/i")
    assert matches("python:*", "python:3.11") and not matches("python:*", "pythonx:3")
    assert not matches("python:3.12", "127.0.0.1:5000/library/python:3.12")
    assert matches("*", "anything/at:all")


async def test_default_policy_allows_the_default_image_and_local_ones_only(tmp_path: Path) -> None:
    engine = FakeEngine(images=("corral/sandbox:3", "python:3.12-slim"), pullable=("evil/img",))
    policy = ImagePolicy(Settings(home=tmp_path), engine)
    await policy.ensure("corral/sandbox:3")
    await policy.ensure("docker.io/library/python:3.12-slim")
    with pytest.raises(InvalidRequest, match="CORRAL_IMAGES"):
        await policy.ensure("127.0.0.1:8814/evil/img")
    named = [target for _, target in engine.calls]
    assert not [t for t in named if "evil" in t], "the engine saw a refused image's name"


async def test_pulls_only_for_the_operators_patterns(tmp_path: Path) -> None:
    engine = FakeEngine(images=("corral/sandbox:3",), pullable=("ghcr.io/ok/img:1",))
    settings = Settings(home=tmp_path, images=("ghcr.io/ok/*", "ghcr.io/nopull/*"), image_pull=("ghcr.io/ok/*",))
    policy = ImagePolicy(settings, engine)
    await policy.ensure("ghcr.io/ok/img:1")
    assert ("pull_image", "ghcr.io/ok/img:1") in engine.calls
    with pytest.raises(ImageNotFound, match="CORRAL_IMAGE_PULL"):
        await policy.ensure("ghcr.io/nopull/img")
    with pytest.raises(ImageNotFound, match=r"could not pull image 'ghcr.io/ok/other'.*pull access denied"):
        await policy.ensure("ghcr.io/ok/other")
    with pytest.raises(InvalidRequest, match=r"it allows: corral/sandbox:3, ghcr\.io/ok/\*"):
        await policy.ensure("python:3")
    assert ("pull_image", "ghcr.io/nopull/img") not in engine.calls


def test_image_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_IMAGES", "corral/*, python:3.12-slim")
    monkeypatch.setenv("CORRAL_IMAGE_PULL", "python:*")
    settings = Settings.from_env()
    assert (settings.images, settings.image_pull) == (("corral/*", "python:3.12-slim"), ("python:*",))
    monkeypatch.delenv("CORRAL_IMAGES")
    assert Settings.from_env().images is None
    monkeypatch.setenv("CORRAL_IMAGE_PULL", "bad pattern")
    with pytest.raises(ConfigurationError, match="CORRAL_IMAGE_PULL"):
        Settings.from_env()
