"""fork_sandbox: a new sandbox with another's files and, where the engine can, its memory.

The source is checkpointed (which stops it), its file system committed to an image, a container
made from that image with the source's options, the checkpoint copied to it and restored there;
then the source is restored from its own copy. Both go on from the same moment, independently.
A source that was stopped with its memory is forked from that checkpoint and stays stopped.
Where memory cannot be carried over (no checkpoint, or copying one needs root on the Docker host)
the fork gets the files only and says why (`state_lost`). Each fork owns its image, removed with
it (and by `corral gc` once nothing records it). /workspace is a volume, which a commit leaves
out: the fork's is a copy of the source's, made while the source is stopped (service/builder.py).
The fork belongs to the caller's tenant and counts toward its quota; it gets the source's network
policy (a networked sandbox's memory is not kept, so such a fork has the files only). Features
copy what they keep per sandbox through `on_fork` hooks (background processes, contexts).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from corral.errors import CheckpointUnavailable, CorralError, InvalidRequest, SandboxBusy
from corral.sandbox_backend.engine import Engine
from corral.sandbox_backend.store import SandboxRecord
from corral.service import tenancy
from corral.service.containers import Containers
from corral.service.memory import checkpoint_name
from corral.service.quotas import Quotas
from corral.service.sandboxes import SandboxService, new_sandbox_id
from corral.service.validation import check_name

log = logging.getLogger(__name__)

FORK_REPOSITORY = "corral/fork"

ForkHook = Callable[[str, str], Awaitable[None]]  # (source id, fork id)


def fork_image(sandbox_id: str) -> str:
    return f"{FORK_REPOSITORY}:{sandbox_id}"


@dataclass(frozen=True)
class Forked:
    rec: SandboxRecord
    source: SandboxRecord
    memory: bool  # the fork has the source's memory (variables, processes)
    reason: str | None  # why not, when it has not


class Forks:
    def __init__(self, sandboxes: SandboxService, engine: Engine, containers: Containers) -> None:
        self._sandboxes = sandboxes
        self._engine = engine
        self._containers = containers
        self._hooks: list[ForkHook] = []
        sandboxes.on_delete(self._remove_image)

    def on_fork(self, hook: ForkHook) -> None:
        """Call `hook(source_id, fork_id)` once a fork exists, to copy per-sandbox state."""
        self._hooks.append(hook)

    async def fork(self, ref: str, name: str | None = None) -> Forked:
        sandboxes = self._sandboxes
        source = await sandboxes.resolve(ref)
        if name is not None:
            check_name(name)
            if await sandboxes.find(name) is not None:
                raise InvalidRequest(f"a sandbox named {name!r} already exists; pick another name")
        if not self._engine.capabilities.commit:
            raise InvalidRequest("this container engine cannot copy a sandbox's files, so it cannot fork")
        who = tenancy.caller()
        settings = sandboxes.settings
        quota = Quotas(settings.max_sandboxes, source.tenant, who.quota, source.memory_bytes, source.disk_bytes or 0)
        async with sandboxes.lock(source.id):
            source = await sandboxes.check_usable(await sandboxes.refresh(source))
            if sandboxes.active(source.id):
                raise SandboxBusy(f"sandbox {source.id} is running a call now; fork it once that ends")
            was_running = source.status == "running"
            checkpoint, reason = await self.freeze(source)
            try:
                rec, not_restored = await self._make(source, name, checkpoint, quota)
            finally:
                if was_running:
                    with anyio.CancelScope(shield=True):
                        source = await self.thaw(source, checkpoint)
        reason = reason or not_restored
        for hook in self._hooks:
            await hook(source.id, rec.id)
        return Forked(sandboxes.created(rec), source, memory=reason is None, reason=reason)

    async def thaw(self, source: SandboxRecord, checkpoint: str | None) -> SandboxRecord:
        """Start the source again after `freeze` (its lock held), from its checkpoint if any."""
        frozen = source.with_(status="stopped", checkpoint=checkpoint)
        return (await self._sandboxes.resume(frozen)).rec

    async def freeze(self, source: SandboxRecord) -> tuple[str | None, str | None]:
        """Stop the source with its memory saved: (checkpoint name or None, why not)."""
        if source.status != "running":
            if source.checkpoint is not None:
                return source.checkpoint, None
            return None, "the sandbox was stopped without its memory"
        name = checkpoint_name()
        reason = await self._sandboxes.memory.save(source, name)
        if reason is None:
            # Recorded at once: were this server to die mid-fork, the source resumes with its memory.
            await self._sandboxes.record(source.id, status="stopped", checkpoint=name)
            return name, None
        await self._sandboxes.record(source.id, status="stopped", checkpoint=None)
        return None, reason

    async def _make(
        self, source: SandboxRecord, name: str | None, checkpoint: str | None, quota: Quotas
    ) -> tuple[SandboxRecord, str | None]:
        """The fork's record and running container; the second value says why its memory was not
        restored (None: it was, or there was none to restore)."""
        assert source.container_id is not None
        sandboxes = self._sandboxes
        now = sandboxes.clock.now()
        fork_id = new_sandbox_id()
        image = fork_image(fork_id)
        rec = source.with_(
            id=fork_id,
            name=name,
            container_id=None,
            image=image,
            status="creating",
            created_at=now,
            last_used_at=now,
            expires_at=None if source.delete_after is None else now + source.delete_after,
            ephemeral=False,
            session=None,
            checkpoint=None,
            stopped_at=None,
            forked_from=source.id,
            volume=None if source.volume is None else self._containers.volume_name(fork_id),
            created_by=sandboxes.settings.instance_id,
        )
        await self._engine.commit(source.container_id, image, self._containers.image_labels(fork_id, "fork"))
        container_id = None

        async def made(new_id: str) -> None:
            nonlocal container_id
            container_id = new_id
            await sandboxes.record(fork_id, container_id=new_id)

        try:
            await sandboxes.insert(rec, quota)
            policy = await sandboxes.builder.policy_of(source)
            await sandboxes.builder.make(rec, policy, copy_of=source.volume, on_container=made)
            assert container_id is not None
            rec = rec.with_(container_id=container_id)
            reason = None
            if checkpoint is not None:
                try:
                    await self._engine.copy_checkpoint(source.container_id, container_id, checkpoint)
                    reason = await sandboxes.memory.restore(rec, checkpoint)
                except CheckpointUnavailable as exc:
                    reason = str(exc)
                    await self._engine.start(container_id)
            else:
                await self._engine.start(container_id)
            rec = rec.with_(status="running")
            await sandboxes.record(rec.id, status="running")
            await sandboxes.connect(rec)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await sandboxes.builder.discard(rec, container_id)
                await sandboxes.forget(rec.id)
                await self._quietly(self._engine.remove_image(image))
            raise
        return rec, reason

    async def _remove_image(self, sandbox_id: str) -> None:
        rec = await self._sandboxes.find(sandbox_id)
        if rec is not None and rec.image == fork_image(sandbox_id):
            await self._quietly(self._engine.remove_image(rec.image))

    async def _quietly(self, action: Awaitable[None]) -> None:
        try:
            await action
        except CorralError as exc:
            log.warning("fork clean-up: %s", exc)
