"""edit_file: the change is made here on the host (read -> change -> write, which the agent makes
atomic), so the matching rules are ours and the same for every image."""

from __future__ import annotations

from corral.errors import InvalidRequest, PayloadTooLarge
from corral.service.files.deps import FileDeps
from corral.service.files.models import FileEdited
from corral.service.files.paths import sandbox_path

SNIPPET_CONTEXT = 3


def _line_of(data: bytes, index: int) -> int:
    return data.count(b"\n", 0, index) + 1


def _snippet(text: str, first: int, last: int) -> str:
    lines = text.splitlines()
    lo = max(1, first - SNIPPET_CONTEXT)
    hi = min(len(lines), max(first, last) + SNIPPET_CONTEXT)
    width = len(str(hi))
    out = "\n".join(f"{n:>{width}}|{lines[n - 1][:300]}" for n in range(lo, hi + 1))
    return out[:4000]


def apply_snippet_edit(
    data: bytes, old_text: str, new_text: str, *, replace_all: bool, path: str
) -> tuple[bytes, int, int]:
    """Replace `old_text` (exactly once, or every time with replace_all). Returns (new data,
    replacements, first changed line)."""
    if old_text == "":
        raise InvalidRequest(
            "old_text is empty. To insert text, include a neighbouring line in old_text (and in new_text); "
            "to replace lines by number, pass start_line/end_line instead; to replace the whole file, use "
            "write_file"
        )
    if old_text == new_text:
        raise InvalidRequest("new_text is identical to old_text: nothing to change")
    old, new = old_text.encode(), new_text.encode()
    count = data.count(old)
    if count == 0:
        raise InvalidRequest(f"old_text was not found in {path}. {_near_miss_hint(data, old_text)}")
    if count > 1 and not replace_all:
        lines: list[str] = []
        start = 0
        while len(lines) < 10:
            index = data.find(old, start)
            if index < 0:
                break
            lines.append(str(_line_of(data, index)))
            start = index + len(old)
        raise InvalidRequest(
            f"old_text matches {count} times in {path} (at lines {', '.join(lines)}"
            f"{', ...' if count > len(lines) else ''}). Include more surrounding lines to make it unique, "
            "or pass replace_all=true to change every occurrence"
        )
    first = _line_of(data, data.find(old))
    return data.replace(old, new), count, first


def _near_miss_hint(data: bytes, old_text: str) -> str:
    hint = "It must match exactly, including whitespace and indentation; read_file shows the current text."
    text = data.decode("utf-8", "replace")
    squashed = " ".join(old_text.split())
    if squashed and squashed in " ".join(text.split()):
        return "A match exists that differs only in whitespace, indentation or line breaks. " + hint
    if "\r\n" in text and "\n" in old_text and "\r\n" not in old_text:
        return "The file uses Windows (CRLF) line endings. " + hint
    first_line = next((ln.strip() for ln in old_text.splitlines() if ln.strip()), "")
    if first_line and first_line in text:
        found = _line_of(data, data.find(first_line.encode()))
        return f"Its first line does occur (line {found}), but the rest differs. " + hint
    return hint


def apply_line_edit(
    text: str, start_line: int, end_line: int | None, new_text: str, *, path: str
) -> tuple[str, int, int]:
    """Replace lines start_line..end_line (1-based, inclusive). Returns (new text, first line, last line
    of the inserted text)."""
    lines = text.splitlines(keepends=True)
    last = start_line if end_line is None else end_line
    if not lines:
        raise InvalidRequest(f"{path} is empty, so it has no lines to replace; use write_file to fill it")
    if not 1 <= start_line <= len(lines):
        raise InvalidRequest(f"start_line must be between 1 and {len(lines)} ({path} has {len(lines)} lines)")
    if not start_line <= last <= len(lines):
        raise InvalidRequest(
            f"end_line must be between start_line ({start_line}) and {len(lines)} ({path} has {len(lines)} lines)"
        )
    replaced = lines[start_line - 1 : last]
    ending = _line_ending(replaced[-1])
    if new_text and ending and not new_text.endswith(("\n", "\r")):
        new_text += ending
    result = "".join(lines[: start_line - 1]) + new_text + "".join(lines[last:])
    added = len(new_text.splitlines())
    return result, start_line, start_line + max(added, 1) - 1


def _line_ending(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    stripped = line.rstrip("\r\n")
    return line[len(stripped) :] if stripped != line else ""


async def edit_file(
    deps: FileDeps,
    ref: str,
    path: str,
    new_text: str,
    *,
    old_text: str | None = None,
    replace_all: bool = False,
    start_line: int | None = None,
    end_line: int | None = None,
) -> FileEdited:
    full = sandbox_path(path)
    if old_text is None and start_line is None:
        raise InvalidRequest(
            "say what to replace: old_text (an exact snippet of the file), or start_line/end_line (a line range)"
        )
    if old_text is not None and (start_line is not None or end_line is not None):
        raise InvalidRequest("give either old_text or start_line/end_line, not both")
    if end_line is not None and start_line is None:
        raise InvalidRequest("end_line needs start_line too")
    limit = deps.policy.max_file_bytes
    res = await deps.sandboxes.request(ref, "read_file", {"path": full, "max_bytes": limit, "binary": True}, timeout=60)
    if res.get("truncated"):
        raise PayloadTooLarge(
            f"{full} is {res.get('size')} bytes; edit_file handles files up to {limit} bytes. "
            "Use run_command (e.g. sed -i) for bigger files"
        )
    data = bytes(res.get("bytes") or b"")
    if old_text is not None:
        updated, count, first = apply_snippet_edit(data, old_text, new_text, replace_all=replace_all, path=full)
        last = first + max(len(new_text.splitlines()), 1) - 1
    else:
        assert start_line is not None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"{full} is not UTF-8 text, so it has no line numbers; use old_text to replace exact bytes"
            ) from None
        new, first, last = apply_line_edit(text, start_line, end_line, new_text, path=full)
        updated, count = new.encode(), 1
    if len(updated) > limit:
        raise PayloadTooLarge(f"the edited file would be {len(updated)} bytes; the limit is {limit} bytes")
    params = {"path": full, "bytes": updated, "mkdirs": False}
    written = await deps.sandboxes.request(ref, "write_file", params, timeout=60)
    try:
        shown: str | None = _snippet(updated.decode("utf-8"), first, last)
    except UnicodeDecodeError:
        shown = None
    return FileEdited(
        path=full,
        replacements=count,
        size=int(written.get("size", len(updated))),
        first_line=first,
        snippet=shown,
    )
