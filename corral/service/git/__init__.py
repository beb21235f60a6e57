"""Git in a sandbox.

Local operations (status, diff, log, checkout, commit) run `git` in the sandbox through the agent's
`exec` op with an argv list: no shell ever parses a tool argument, and refs, names and paths are
validated before they get there.

Network operations (clone, pull, push) always run in a *helper*: a short-lived container of the
sandbox's image, under gVisor with network (runtime corral-runsc-net on the data dir's fenced
sandbox network, reaching out only through the egress proxy, for the one URL it serves:
service/network), labelled like the sandbox so a reaper finds it, and removed when the operation
ends. No process the sandbox can reach ever holds network and credentials together. Data crosses
on the host: into the helper as files the host writes (`put_archive`), out of it from an exec's
stdout; into and out of the sandbox through the agent (write_file / read_file in chunks under
/tmp/.corral/git, then /bin/tar or `git fetch <bundle>` inside), never behind gVisor's back. From the
sandbox the helper gets only a git bundle (objects and refs, `git bundle verify`-ed) and a checked
shallow list, never config, hooks or any other file; its git runs by absolute path under
command-line config with hooks, credential helpers and redirects off (helper.py).

Credentials reach git only through the environment of the one git process that needs them (an
`http.extraHeader` set with GIT_CONFIG_COUNT/KEY/VALUE): never in argv, a config file, a remote URL
or the store; and only for the host a tool call named (trust.py). Every text that leaves this module
(results, errors, progress) goes through `redact`.
"""

from __future__ import annotations

from functools import partial

from corral.config import Settings
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import GitRemoteTable
from corral.service.access import SandboxAccess
from corral.service.containers import Containers
from corral.service.git import branches, clone, local, remote
from corral.service.git.constants import OnProgress
from corral.service.git.deps import GitDeps
from corral.service.git.models import GitCredentials
from corral.service.network import NetworkService

__all__ = ["Git", "GitCredentials", "OnProgress"]


class Git:
    def __init__(
        self,
        sandboxes: SandboxAccess,
        engine: Engine,
        containers: Containers,
        settings: Settings,
        remotes: GitRemoteTable,
        network: NetworkService,
    ) -> None:
        deps = GitDeps(sandboxes, engine, containers, settings, remotes, network)
        self._remotes = remotes
        self.clone = partial(clone.clone, deps)
        self.status = partial(local.status, deps)
        self.diff = partial(local.diff, deps)
        self.log = partial(local.log, deps)
        self.checkout = partial(local.checkout, deps)
        self.commit = partial(local.commit, deps)
        self.branches = partial(branches.branches, deps)
        self.push = partial(remote.push, deps)
        self.pull = partial(remote.pull, deps)

    async def forget_sandbox(self, sandbox_id: str) -> None:
        await self._remotes.forget(sandbox_id)
