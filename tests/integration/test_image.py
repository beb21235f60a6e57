"""The default image is ready for real work, and images other than ours keep working."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from mcp import Client

from corral.config import DEFAULT_IMAGE
from tests.helpers import call_error, call_ok, run_cli

TOOLS = (
    "python -c 'import sys; print(sys.version_info[:2])' && "
    "python3 -c 'import pandas, numpy, scipy, sklearn, matplotlib, requests, httpx, bs4, lxml, yaml, openpyxl' && "
    "python3 -c 'import IPython, pytest' && "
    "pytest --version && node --version && npm --version && tsc --version && gcc --version && make --version && "
    "jq --version && sqlite3 --version && rg --version && zip -v && unzip -v && git --version && curl --version"
)


async def test_the_default_image_has_the_tools_agents_reach_for(client: Client, sandbox: str) -> None:
    out = await call_ok(client, "run_command", sandbox=sandbox, command=TOOLS, timeout=120)
    assert out["exit_code"] == 0, out["stderr"]
    assert out["stdout"].startswith("(3, 11)")


async def test_npm_installs_globally_without_root(client: Client, sandbox: str) -> None:
    # No registry here: a local package directory stands in for one.
    script = (
        "mkdir -p /tmp/hello-pkg/bin && cd /tmp/hello-pkg && "
        "printf '{\"name\":\"hello-pkg\",\"version\":\"1.0.0\",\"bin\":{\"hello-pkg\":\"bin/h.js\"}}' "
        "> package.json && "
        "printf '#!/usr/bin/env node\\nconsole.log(\"hi from npm\")\\n' > bin/h.js && "
        "npm install -g --offline --no-audit --no-fund /tmp/hello-pkg >/dev/null && hello-pkg"
    )
    out = await call_ok(client, "run_command", sandbox=sandbox, command=script, timeout=120)
    assert out["exit_code"] == 0 and out["stdout"] == "hi from npm\n", out


def test_image_status_prints_the_size(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "image", "status")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{DEFAULT_IMAGE}: present, ") and " GB (" in proc.stdout


# An image that is not ours: no IPython, matplotlib, node or pip config, root by default, no
# /workspace, our label gone. Built from the default image (no registry is reachable here).
PLAIN_DOCKERFILE = f"""FROM {DEFAULT_IMAGE}
USER root
RUN rm -rf /usr/lib/python3/dist-packages/IPython /usr/lib/python3/dist-packages/matplotlib \\
    /usr/bin/node /usr/bin/nodejs /etc/pip.conf /workspace
WORKDIR /
ENV HOME=/root PIP_BREAK_SYSTEM_PACKAGES= NPM_CONFIG_PREFIX=
LABEL dev.corral.image-recipe=
"""


@pytest.fixture(scope="module")
def plain_image() -> Iterator[str]:
    client = docker.from_env()
    tag = f"corral-test/plain:{uuid.uuid4().hex[:8]}"
    try:
        client.images.build(fileobj=io.BytesIO(PLAIN_DOCKERFILE.encode()), tag=tag, rm=True, forcerm=True)
        yield tag
    finally:
        try:
            client.images.remove(tag, force=True)
        finally:
            client.close()


async def test_an_image_without_our_extras_still_runs_code(client: Client, plain_image: str) -> None:
    created = await call_ok(client, "create_sandbox", image=plain_image)
    sandbox = created["id"]
    try:
        cell = "    import sys\n    !echo shell works\n    display({'text/html': '<b>x</b>'}, raw=True)\n"
        cell += "    sys.version_info[0]"
        out = await call_ok(client, "run_code", sandbox=sandbox, code=cell)
        assert out["error"] is None and out["value"] == "3" and out["stdout"] == "shell works\n"
        assert out["results"] == [{"html": "<b>x</b>"}]
        plot = await call_ok(client, "run_code", sandbox=sandbox, code="import matplotlib")
        assert plot["error"]["ename"] == "ModuleNotFoundError"
        for language in ("javascript", "typescript"):
            message = await call_error(client, "run_code", sandbox=sandbox, language=language, code="1")
            assert f"{language} needs node, which is not installed" in message
        bash = await call_ok(client, "run_code", sandbox=sandbox, language="bash", code="echo $((6 * 7))")
        assert bash["stdout"] == "42\n"
    finally:
        await call_ok(client, "delete_sandbox", sandbox=sandbox)
