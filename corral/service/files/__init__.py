"""Files in a sandbox: content (read, write, list), edits, tree operations, host transfers.

`Files` is the feature's one entry point; each operation lives in the module named for its job
and gets only `FileDeps` (the sandboxes' agents and the operator's limits).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from corral.config import ExecPolicy
from corral.service.access import SandboxAccess
from corral.service.files import content, edit, transfer, tree
from corral.service.files.deps import FileDeps


class Files:
    def __init__(self, sandboxes: SandboxAccess, policy: ExecPolicy, host_dirs: tuple[Path, ...] = ()) -> None:
        deps = FileDeps(sandboxes, policy, host_dirs)
        self.read_file = partial(content.read_file, deps)
        self.write_file = partial(content.write_file, deps)
        self.list_files = partial(content.list_files, deps)
        self.file_info = partial(content.file_info, deps)
        self.edit_file = partial(edit.edit_file, deps)
        self.delete_path = partial(tree.delete_path, deps)
        self.move_path = partial(tree.move_path, deps)
        self.make_dir = partial(tree.make_dir, deps)
        self.search_files = partial(tree.search_files, deps)
        self.find_files = partial(tree.find_files, deps)
        self.upload = partial(transfer.upload, deps)
        self.download = partial(transfer.download, deps)
