"""Git in a sandbox.

Local operations (status, diff, log, checkout, commit) run `git` in the sandbox through the agent's
`exec` op with an argv list: no shell ever parses a tool argument, and refs, names and paths are
validated before they get there.

Network operations (clone, pull, push) of a sandbox without network run in a *helper*: a
short-lived container of the sandbox's image, under gVisor with network (runtime corral-runsc-net on
the data dir's bridge network `corral-egress-<owner>`), labelled like the sandbox so a reaper finds it, and removed
when the operation ends. The sandbox's own processes never get network access. Data crosses on the
host: into the helper with `put_archive` before it starts, out of it from an exec's stdout; into
and out of the sandbox through the agent (write_file / read_file in chunks under /tmp/.corral/git,
then tar or `git fetch <bundle>` inside), never behind gVisor's back. The helper gets only objects,
refs and the shallow list of the sandbox's repository, never its config or hooks, so nothing from
the sandbox runs where there is network. A sandbox created with network runs git directly.

Credentials reach git only through the environment of the one git process that needs them (an
`http.extraHeader` set with GIT_CONFIG_COUNT/KEY/VALUE): never in argv, a config file, a remote URL
or the store. Every text that leaves this module (results, errors, progress) goes through `redact`.
"""

from __future__ import annotations

from functools import partial

from corral.config import Settings
from corral.sandbox_backend.engine import Engine
from corral.service.access import SandboxAccess
from corral.service.containers import Containers
from corral.service.git import branches, clone, local, remote
from corral.service.git.constants import OnProgress
from corral.service.git.deps import GitDeps
from corral.service.git.models import GitCredentials

__all__ = ["Git", "GitCredentials", "OnProgress"]


class Git:
    def __init__(self, sandboxes: SandboxAccess, engine: Engine, containers: Containers, settings: Settings) -> None:
        deps = GitDeps(sandboxes, engine, containers, settings)
        self.clone = partial(clone.clone, deps)
        self.status = partial(local.status, deps)
        self.diff = partial(local.diff, deps)
        self.log = partial(local.log, deps)
        self.checkout = partial(local.checkout, deps)
        self.commit = partial(local.commit, deps)
        self.branches = partial(branches.branches, deps)
        self.push = partial(remote.push, deps)
        self.pull = partial(remote.pull, deps)
