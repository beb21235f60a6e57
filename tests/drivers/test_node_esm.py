"""node_driver.js + node_esm.js: ES module syntax in cells, per-run environment, TypeScript."""

from __future__ import annotations

from pathlib import Path

from .conftest import Driver


def test_static_imports_in_every_form_bind_names_that_persist(js: Driver) -> None:
    code = (
        "import { readFileSync as read, existsSync } from 'fs'\n"
        "import * as nodePath from 'node:path';\n"
        "import os, { platform } from 'os'\n"
        "import 'util'\n"
        "[typeof read, typeof existsSync, nodePath.sep, typeof os.cpus, platform() === process.platform]"
    )
    reply = js.run(code)
    assert reply["error"] is None, reply["error"]
    assert reply["value"] == "[ 'function', 'function', '/', 'function', true ]"
    assert js.run("typeof read + ' ' + typeof nodePath.join")["value"] == "'function function'"


def test_dynamic_import_and_require_work_side_by_side(js: Driver) -> None:
    code = "const fsp = await import('fs/promises')\nconst path = require('path');\n"
    assert js.run(code + "[typeof fsp.readFile, path.join('a', 'b')]")["value"] == "[ 'function', 'a/b' ]"
    assert js.run("(await import('node:os')).EOL")["value"] == "'\\n'"


def test_imports_resolve_from_the_working_directory(js: Driver, tmp_path: Path) -> None:
    (tmp_path / "lib.mjs").write_text("export const answer = 42;\nexport default 'dflt';\n")
    (tmp_path / "node_modules" / "esm-only").mkdir(parents=True)
    (tmp_path / "node_modules" / "esm-only" / "package.json").write_text(
        '{"name": "esm-only", "type": "module", "exports": {".": {"import": "./main.js"}}}'
    )
    (tmp_path / "node_modules" / "esm-only" / "main.js").write_text("export const kind = 'esm';\n")
    code = "import dflt, { answer } from './lib.mjs'\nimport { kind } from 'esm-only';\n[dflt, answer, kind]"
    reply = js.run(code)
    assert reply["error"] is None, reply["error"]
    assert reply["value"] == "[ 'dflt', 42, 'esm' ]"
    missing = js.run("await import('./missing.mjs')")["error"]
    assert "missing.mjs" in missing["evalue"] and f"looked up from {tmp_path}" in missing["evalue"]


def test_export_keywords_are_accepted(js: Driver) -> None:
    assert js.run("export const shared = 5\nexport function twice(x) { return 2 * x }")["error"] is None
    assert js.run("twice(shared)")["value"] == "10"
    assert js.run("export { shared }\nexport default shared + 1")["value"] == "6"


def test_import_words_in_strings_and_properties_are_untouched(js: Driver) -> None:
    code = "const o = { import: 1 }\nconst s = \"import x from 'y'\";\n[o.import, s]"
    assert js.run(code)["value"] == "[ 1, \"import x from 'y'\" ]"


def test_env_applies_to_one_run_only(js: Driver) -> None:
    code = "[process.env.RUN_VAR, require('child_process').execSync('echo $RUN_VAR').toString()]"
    assert js.run(code, env={"RUN_VAR": "once"})["value"] == "[ 'once', 'once\\n' ]"
    assert js.run("process.env.RUN_VAR")["value"] is None


def test_typescript_cells_are_type_stripped_and_keep_state(ts: Driver) -> None:
    assert ts.ready["language"] == "typescript"
    code = (
        "interface Point { x: number; y: number }\n"
        "enum Color { Red, Green }\n"
        "const p: Point = { x: 1, y: 2 }\n"
        "let total: number = p.x + p.y\n"
        "total"
    )
    assert ts.run(code)["value"] == "3"
    assert ts.run("total += Color.Green as number\ntotal")["value"] == "4"
    assert ts.run("import { join } from 'path'\nconst joined: string = join('a', 'b')\njoined")["value"] == "'a/b'"
    assert ts.run("typeof join")["value"] == "'function'"  # an import used only later still persists


def test_typescript_syntax_errors_name_the_line(ts: Driver) -> None:
    error = ts.run("const ok = 1\nconst bad: = 2")["error"]
    assert error["ename"] == "SyntaxError" and "line 2" in error["evalue"]
