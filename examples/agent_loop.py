"""A small agent loop over Corral: write code, run it in a sandbox, fix and retry on error.

The model sits behind `Model`; `ScriptedModel` stands in for it so the example runs offline:

    python examples/agent_loop.py                       # starts `corral serve` over stdio
    python examples/agent_loop.py http://127.0.0.1:8765/mcp

Swap in a real model by implementing `Model.write_code` with your LLM call.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from mcp import Client, StdioServerParameters


@dataclass
class Attempt:
    code: str
    result: dict[str, Any]

    @property
    def failed(self) -> bool:
        return self.result.get("error") is not None


class Model(Protocol):
    async def write_code(self, task: str, history: Sequence[Attempt]) -> str: ...


@dataclass
class ScriptedModel:
    """Replays canned answers: a first try with a bug, then the fix once it sees the traceback."""

    answers: list[str] = field(
        default_factory=lambda: [
            "primes = [n for n in range(2, 50) if all(n % d for d in range(2, n))]\nprint(len(primes))\ntotal",
            "primes = [n for n in range(2, 50) if all(n % d for d in range(2, n))]\ntotal = sum(primes)\ntotal",
        ]
    )

    async def write_code(self, task: str, history: Sequence[Attempt]) -> str:
        return self.answers[min(len(history), len(self.answers) - 1)]


async def solve(client: Client, model: Model, task: str, max_attempts: int = 3) -> list[Attempt]:
    created = await client.call_tool("create_sandbox", {})
    sandbox = created.structured_content["id"]  # type: ignore[index]
    history: list[Attempt] = []
    try:
        for _ in range(max_attempts):
            code = await model.write_code(task, history)
            result = await client.call_tool("run_code", {"sandbox": sandbox, "code": code})
            history.append(Attempt(code, result.structured_content or {}))
            if not history[-1].failed:
                break
    finally:
        await client.call_tool("delete_sandbox", {"sandbox": sandbox})
    return history


def server_from_args(argv: Sequence[str]) -> str | StdioServerParameters:
    if argv:
        return argv[0]
    return StdioServerParameters(command=sys.executable, args=["-m", "corral", "serve"])


async def main(argv: Sequence[str]) -> int:
    task = "Sum the primes below 50."
    async with Client(server_from_args(argv)) as client:
        history = await solve(client, ScriptedModel(), task)
    for number, attempt in enumerate(history, 1):
        error = attempt.result.get("error")
        outcome = f"error {error['ename']}: {error['evalue']}" if error else f"value {attempt.result.get('value')}"
        print(f"attempt {number}: {outcome}")
    return 0 if history and not history[-1].failed else 1


if __name__ == "__main__":
    raise SystemExit(anyio.run(main, sys.argv[1:]))
