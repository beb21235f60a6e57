"""The interpreter as agents used to E2B expect it, through a real MCP client against the real image:
indented cells, IPython's `!`/`%` lines, `%pip install`, rich results and chart data, ES modules,
TypeScript, per-run environment, and context listing and deletion."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile

from mcp import Client
from mcp.types import ImageContent

from tests.helpers import call_error, call_ok


def tiny_wheel(name: str, version: str, source: str) -> tuple[str, bytes]:
    """A pure-Python wheel built in memory (a wheel is a zip with a dist-info directory)."""
    files = {
        f"{name}/__init__.py": source,
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: corral-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
            wheel.writestr(path, data)
        record_path = f"{name}-{version}.dist-info/RECORD"
        wheel.writestr(record_path, "\n".join([*record, f"{record_path},,"]) + "\n")
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


async def test_an_indented_cell_and_shell_lines_run(client: Client, sandbox: str) -> None:
    cell = "\n    import os\n    os.makedirs('nb', exist_ok=True)\n    !touch nb/one.txt nb/two.txt\n    !ls nb\n"
    out = await call_ok(client, "run_code", sandbox=sandbox, code=cell, context="nb")
    assert out["error"] is None and out["stdout"] == "one.txt\ntwo.txt\n"
    listed = await call_ok(client, "run_code", sandbox=sandbox, code="files = !ls nb\nfiles", context="nb")
    assert listed["value"] == "['one.txt', 'two.txt']"


async def test_pip_installs_a_local_wheel_for_the_next_import(client: Client, sandbox: str) -> None:
    filename, data = tiny_wheel("corral_tiny", "1.0", "ANSWER = 42\n")
    await call_ok(client, "write_file", sandbox=sandbox, path=f"/workspace/{filename}",
                  content=base64.b64encode(data).decode(), encoding="base64")
    out = await call_ok(client, "run_code", sandbox=sandbox, context="pip",
                        code=f"%pip install --no-index /workspace/{filename}", timeout=120)
    assert out["error"] is None and "Successfully installed corral-tiny-1.0" in out["stdout"], out
    code = "import corral_tiny\ncorral_tiny.ANSWER"
    after = await call_ok(client, "run_code", sandbox=sandbox, context="pip", code=code)
    assert after["value"] == "42"
    # pip as the sandbox user from a shell too: same user site, Debian's packages untouched.
    shell = await call_ok(client, "run_command", sandbox=sandbox,
                          command="python -c 'import corral_tiny, pandas; print(corral_tiny.__file__)'")
    assert shell["stdout"].startswith("/workspace/.local/lib/python3"), shell


async def test_a_dataframe_comes_back_as_html_and_text(client: Client, sandbox: str) -> None:
    code = "import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3, 19]})"
    out = await call_ok(client, "run_code", sandbox=sandbox, code=code)
    assert out["value"].split() == ["city", "temp", "0", "Oslo", "3", "1", "Lima", "19"]
    [result] = out["results"]
    assert result["main"] is True and "<table" in result["html"] and "<td>Lima</td>" in result["html"]


async def test_a_bar_chart_comes_back_as_an_image_with_its_data(client: Client, sandbox: str) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.bar(['Q1', 'Q2', 'Q3'], [10, 25, 17], label='revenue')\n"
        "plt.title('Revenue'); plt.xlabel('quarter'); plt.ylabel('k$')\n"
        "plt.show()"
    )
    result = await client.call_tool("run_code", {"sandbox": sandbox, "code": code})
    assert not result.is_error and result.structured_content is not None
    [image] = [c for c in result.content if isinstance(c, ImageContent)]
    assert base64.b64decode(image.data).startswith(b"\x89PNG")
    [figure] = result.structured_content["results"]
    assert figure["image"] == 0
    chart = figure["chart"]
    assert (chart["type"], chart["title"], chart["x_label"], chart["y_label"]) == ("bar", "Revenue", "quarter", "k$")
    assert [(e["label"], e["value"], e["group"]) for e in chart["elements"]] == [
        ("Q1", 10, "revenue"), ("Q2", 25, "revenue"), ("Q3", 17, "revenue")]


async def test_javascript_takes_esm_and_dynamic_imports(client: Client, sandbox: str) -> None:
    code = (
        "import { readFileSync } from 'fs'\n"
        "import * as path from 'node:path'\n"
        "const os = await import('os')\n"
        "const req = require('util');\n"
        "[typeof readFileSync, path.basename('/a/b.txt'), typeof os.cpus, typeof req.inspect]"
    )
    out = await call_ok(client, "run_code", sandbox=sandbox, language="javascript", code=code, context="esm")
    assert out["error"] is None, out["error"]
    assert out["value"] == "[ 'function', 'b.txt', 'function', 'function' ]"
    kept = await call_ok(client, "run_code", sandbox=sandbox, language="javascript", code="typeof readFileSync",
                         context="esm")
    assert kept["value"] == "'function'"


async def test_typescript_with_types_keeps_state(client: Client, sandbox: str) -> None:
    setup = (
        "interface Item { name: string; qty: number }\n"
        "const items: Item[] = [{ name: 'bolt', qty: 3 }]\n"
        "function total(list: Item[]): number { return list.reduce((n, i) => n + i.qty, 0) }\n"
        "total(items)"
    )
    out = await call_ok(client, "run_code", sandbox=sandbox, language="typescript", code=setup, timeout=120)
    assert out["error"] is None and out["value"] == "3", out
    more = await call_ok(client, "run_code", sandbox=sandbox, language="typescript",
                         code="items.push({ name: 'nut', qty: 4 } as Item)\ntotal(items)")
    assert more["value"] == "7"
    bad = await call_ok(client, "run_code", sandbox=sandbox, language="typescript", code="let x: = 1")
    assert bad["error"]["ename"] == "SyntaxError"


async def test_env_is_for_one_run_only(client: Client, sandbox: str) -> None:
    code = "import os\nos.environ.get('API_MODE')"
    out = await call_ok(client, "run_code", sandbox=sandbox, code=code, env={"API_MODE": "test"})
    assert out["value"] == "'test'"
    assert (await call_ok(client, "run_code", sandbox=sandbox, code=code))["value"] is None
    bad = await call_error(client, "run_code", sandbox=sandbox, code="1", env={"1BAD": "x"})
    assert "1BAD" in bad


async def test_contexts_are_listed_with_age_use_and_memory_and_can_be_deleted(client: Client, sandbox: str) -> None:
    await call_ok(client, "run_code", sandbox=sandbox, code="blob = bytearray(64 * 2**20)", context="big")
    listed = {c["context"]: c for c in (await call_ok(client, "list_contexts", sandbox=sandbox))["contexts"]}
    big = listed["big"]
    assert big["language"] == "python" and big["runs"] == 1
    assert big["age_s"] >= 0 and big["idle_s"] >= 0 and big["memory_mb"] >= 64
    await call_ok(client, "delete_context", sandbox=sandbox, context="big")
    after = await call_ok(client, "list_contexts", sandbox=sandbox)
    assert "big" not in {c["context"] for c in after["contexts"]}
    missing = await call_error(client, "delete_context", sandbox=sandbox, context="big")
    assert "big" in missing
    fresh = await call_ok(client, "run_code", sandbox=sandbox, code="'blob' in globals()", context="big")
    assert fresh["value"] == "False" and fresh["notice"] is None
