"""The git feature's host-side logic: redaction, URLs, credentials, refs, porcelain parsing, progress."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from corral.errors import InvalidRequest
from corral.service.git.local import parse_status
from corral.service.git.models import GitCredentials
from corral.service.git.progress import Progress
from corral.service.git.refs import check_branch, check_rev, parse_url, repo_name
from corral.service.git.remote import parse_push
from corral.service.git.secrets import Auth, redact


def test_redact_masks_secrets_userinfo_and_auth_headers() -> None:
    text = "fatal: unable to access 'https://bob:hunter22@example.test/r.git/': Authorization: Basic Ym9iOmh1"
    assert redact(text, ["hunter22"]) == (
        "fatal: unable to access 'https://***@example.test/r.git/': Authorization: Basic ***"
    )
    assert redact("token abc123xyz in text", ["abc123xyz", ""]) == "token *** in text"
    assert redact("mail bob@example.test stays") == "mail bob@example.test stays"


def test_parse_url_strips_userinfo_into_credentials() -> None:
    clean, auth = parse_url("HTTPS://bob:p%40ss@Example.test:8443/o/r.git#frag")
    assert clean == "https://example.test:8443/o/r.git"
    assert auth == Auth("bob", "p@ss")
    assert "p%40ss" in auth.secrets and "p@ss" in auth.secrets
    token_only = parse_url("https://ghp_abc@example.test/r")[1]
    assert token_only is not None and "ghp_abc" in token_only.secrets
    for bad in ("ssh://git@example.test/r", "file:///etc", "https:///nohost", "https://a b/c", "ext::sh -c x"):
        with pytest.raises(InvalidRequest):
            parse_url(bad)
    assert repo_name("https://example.test/owner/My.Repo.git/") == "My.Repo"


def test_auth_reaches_git_only_as_environment() -> None:
    auth = Auth("bob", "s3cret")
    env = auth.env()
    assert env["GIT_CONFIG_COUNT"] == "3"
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"] == "Authorization: Basic " + base64.b64encode(b"bob:s3cret").decode()
    assert GitCredentials(password=SecretStr("x")).password.get_secret_value() == "x"
    assert "x" not in repr(GitCredentials(password=SecretStr("x")).password)
    assert GitCredentials.model_validate({"password": 987654321}).password.get_secret_value() == "987654321"


def test_ref_validation() -> None:
    for good in ("main", "feature/x-1", "v1.2", "release+1"):
        assert check_branch(good) == good
    for bad in ("-f", "a..b", "a//b", "a/", "x.lock", ".hidden", "a/.b", "with space", "a@{1}", ""):
        with pytest.raises(InvalidRequest):
            check_branch(bad)
    for good in ("HEAD~2", "main..dev", "a1b2c3", "v1.0^{commit}", "origin/main"):
        assert check_rev(good) == good
    for bad in ("--output=x", "-n1", "a b", ""):
        with pytest.raises(InvalidRequest):
            check_rev(bad)


def test_parse_status_porcelain_v2() -> None:
    text = "\0".join([
        "# branch.oid 0123abcd",
        "# branch.head main",
        "# branch.upstream origin/main",
        "# branch.ab +2 -1",
        "1 MM N... 100644 100644 100644 aaa bbb src/a file.py",
        "2 R. N... 100644 100644 100644 aaa bbb R100 new.py",
        "old.py",
        "u UU N... 100644 100644 100644 100644 aaa bbb ccc both.txt",
        "? untracked dir/",
        "",
    ])
    status = parse_status(text, "/workspace/r")
    assert (status.branch, status.head, status.upstream, status.ahead, status.behind) == (
        "main", "0123abcd", "origin/main", 2, 1)
    assert [(f.path, f.change, f.staged, f.orig_path) for f in status.files] == [
        ("src/a file.py", "modified", True, None),
        ("src/a file.py", "modified", False, None),
        ("new.py", "renamed", True, "old.py"),
        ("both.txt", "conflicted", False, None),
        ("untracked dir/", "untracked", False, None),
    ]
    assert not status.clean
    empty = parse_status("# branch.oid (initial)\0# branch.head (detached)\0", "/r")
    assert (empty.head, empty.branch, empty.clean) == (None, None, True)
    assert parse_status("? a\0? b\0? c\0", "/r", limit=2).truncated


def test_parse_push_porcelain() -> None:
    out = "To http://h/r.git\n!\trefs/heads/main:refs/heads/main\t[rejected] (fetch first)\nDone\n"
    assert parse_push(out) == ("!", "[rejected] (fetch first)")
    assert parse_push("To x\n*\trefs/heads/t:refs/heads/t\t[new branch]\nDone\n") == ("*", "[new branch]")
    assert parse_push("nothing") is None


async def test_progress_is_monotonic_and_redacted() -> None:
    seen: list[tuple[float, str]] = []

    async def report(progress: float, total: float | None, message: str) -> None:
        seen.append((progress, message))

    progress = Progress(report, ["tok123"])
    listen = progress.git(0, 50)
    await listen(b"remote: Counting objects:  50% (1/2)\rReceiving objects:  10% (1/10)\r")
    await listen(b"Receiving objects: 100% (10/10), done.\nResolving deltas:  50% (1/2)\r")
    await listen(b"tok123 Updating files: 100% (3/3)\n")
    await progress.step(10, "going back is ignored")
    await progress.step(80, "copying tok123")
    values = [v for v, _ in seen]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[-1] == 80 and seen[-1][1] == "copying ***"
    assert all("tok123" not in m for _, m in seen)
