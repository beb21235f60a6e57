"""Facts about the machine a run was measured on, for the results file."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def _cmd(*argv: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({type(exc).__name__})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else f"unavailable (exit {out.returncode})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts(docker_client: Any) -> dict[str, str]:
    try:
        v = docker_client.version()
        docker_version = f"{v.get('Version', '?')} (API {v.get('ApiVersion', '?')})"
        info = docker_client.info()
        runtimes = ", ".join(sorted((info.get("Runtimes") or {}).keys()))
        storage = info.get("Driver", "?")
    except Exception as exc:
        docker_version, runtimes, storage = f"unavailable ({exc})", "?", "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    cgroup = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": _cmd("nproc"),
        "cpu": _cpu_model(),
        "memory": _mem_total(),
        "os": _os_name(),
        "kernel": platform.release(),
        "cgroup": cgroup,
        "docker server": docker_version,
        "docker storage driver": storage,
        "docker runtimes": runtimes,
        "runsc": _cmd("runsc", "--version"),
        "python": platform.python_version(),
        "corral": _version("corral"),
        "mcp (python sdk)": _version("mcp"),
        "docker (python sdk)": _version("docker"),
        "llm-sandbox": _version("llm-sandbox"),
        "load average at start (1/5/15 min)": load,
    }
