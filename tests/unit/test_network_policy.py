"""Egress policy as values: allow entries, the addresses no sandbox may reach, decisions, proxy
credentials, secret bindings and the operator's settings. No sockets beyond bind probes: the
private, metadata and public addresses below are only parsed and classified, never connected to."""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from pathlib import Path

import pytest

from corral.config import network_from_env
from corral.errors import ConfigurationError, InvalidRequest
from corral.service.network.identity import Identity, Keyring
from corral.service.network.inject import Secrets
from corral.service.network.policy import (
    Guard,
    PrivateAllowance,
    Rules,
    check_agent_entries,
    decide,
    forbidden_reason,
    is_local_address,
    parse_entries,
    parse_entry,
)

ip = ipaddress.ip_address
PUBLIC = ip("93.184.216.34")  # only ever compared, never connected to


def test_allow_entries_parse_in_every_documented_form() -> None:
    assert parse_entry("PyPI.org").name == "pypi.org"
    wild = parse_entry("*.example.com:8443")
    assert (wild.name, wild.wildcard, wild.port) == ("example.com", True, 8443)
    assert str(parse_entry("10.1.2.0/24").network) == "10.1.2.0/24"
    assert (str(parse_entry("1.2.3.4:80").network), parse_entry("1.2.3.4:80").port) == ("1.2.3.4/32", 80)
    assert str(parse_entry("2001:db8::/32").network) == "2001:db8::/32"
    assert parse_entry("[2001:db8::1]:443").port == 443
    assert parse_entry("bücher.example").name == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("https://pypi.org/simple", "give its host instead, e.g. 'pypi.org'"),
        ("pypi.org/simple", "neither a host nor a CIDR"),
        ("a.*.example.com", "wildcard may only be the first label"),
        ("example.com:99999", "port '99999'"),
        ("exa mple.com", "not a valid host name"),
        ("[::1", "unclosed"),
        ("", "empty"),
    ],
)
def test_bad_allow_entries_say_what_is_valid(entry: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match="Valid entries: a host name") as caught:
        parse_entries([entry], "allow")
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("0.0.0.0", "loopback"),
        ("::1", "loopback"),
        ("::", "loopback"),
        ("10.0.0.1", "private"),
        ("172.17.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "private"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of the metadata address
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("224.0.0.1", "not a public address"),
        ("192.0.2.7", "private"),  # documentation range: Python counts it private
    ],
)
def test_non_public_addresses_are_never_destinations_on_their_own(address: str, reason: str) -> None:
    found = forbidden_reason(ip(address))
    assert found is not None and reason in found


def test_public_addresses_are_destinations_and_this_hosts_are_not() -> None:
    assert forbidden_reason(PUBLIC) is None
    assert is_local_address(ip("127.0.0.1")) and not is_local_address(PUBLIC)


def rules(mode: str, *allow: str, operator: tuple[str, ...] = ()) -> Rules:
    return Rules(mode, parse_entries(allow, "allow"), parse_entries(operator, "op"))


def guard(*private: str, sandbox_net: str | None = None) -> Guard:
    nets = (ipaddress.ip_network(sandbox_net),) if sandbox_net else ()
    return Guard(PrivateAllowance(parse_entries(private, "p")), nets)


def test_allowlist_matches_names_wildcards_and_ports() -> None:
    r = rules("allowlist", "pypi.org", "*.pythonhosted.org", "api.test:8443", operator=("registry.npmjs.org",))
    assert decide(r, guard(), "pypi.org", 443, [PUBLIC]).rule == "allow 'pypi.org'"
    assert decide(r, guard(), "files.pythonhosted.org", 443, [PUBLIC]).allowed
    assert not decide(r, guard(), "pythonhosted.org", 443, [PUBLIC]).allowed  # *.x is subdomains only
    assert decide(r, guard(), "api.test", 8443, [PUBLIC]).allowed
    assert not decide(r, guard(), "api.test", 443, [PUBLIC]).allowed
    assert decide(r, guard(), "registry.npmjs.org", 443, [PUBLIC]).rule == "CORRAL_EGRESS_ALLOW 'registry.npmjs.org'"
    refused = decide(r, guard(), "evil.test", 443, [PUBLIC])
    assert not refused.allowed and "not in this sandbox's allowlist" in refused.rule


def test_a_name_is_judged_by_the_addresses_it_resolves_to() -> None:
    r = rules("allowlist", "pkgs.test")
    refused = decide(r, guard(), "pkgs.test", 80, [ip("10.9.8.7")])
    assert not refused.allowed and "10.9.8.7 is a private address" in refused.rule
    assert "CORRAL_EGRESS_ALLOW_PRIVATE" in refused.rule
    # Of several answers only the public ones are used.
    mixed = decide(r, guard(), "pkgs.test", 80, [ip("127.0.0.1"), PUBLIC])
    assert mixed.allowed and mixed.addresses == (PUBLIC,)
    # The operator's private allowance, by address, CIDR, name, and with a port.
    assert decide(r, guard("10.9.8.0/24"), "pkgs.test", 80, [ip("10.9.8.7")]).allowed
    assert decide(r, guard("pkgs.test"), "pkgs.test", 80, [ip("10.9.8.7")]).allowed
    assert decide(r, guard("10.9.8.7:80"), "pkgs.test", 80, [ip("10.9.8.7")]).allowed
    assert not decide(r, guard("10.9.8.7:80"), "pkgs.test", 81, [ip("10.9.8.7")]).allowed


def test_addresses_entries_allow_addresses_not_names() -> None:
    r = rules("allowlist", "93.184.216.0/24")
    assert decide(r, guard(), "93.184.216.34", 443, [PUBLIC]).allowed
    # A name needs a name entry: the proxy never looks a name up just to compare it with a CIDR.
    assert not decide(r, guard(), "example.com", 443, [PUBLIC]).allowed


def test_internet_mode_allows_public_addresses_only_and_none_nothing() -> None:
    assert decide(rules("internet"), guard(), "example.com", 22, [PUBLIC]).allowed
    refused = decide(rules("internet"), guard(), "metadata.test", 80, [ip("169.254.169.254")])
    assert not refused.allowed and "link-local" in refused.rule
    assert not decide(rules("internet"), guard(), "x.test", 80, []).allowed
    nothing = decide(rules("none"), guard(), "example.com", 443, [PUBLIC])
    assert not nothing.allowed and "network 'none'" in nothing.rule


def test_the_sandbox_network_is_never_reachable_even_if_the_operator_opened_its_range() -> None:
    g = guard("172.16.0.0/12", sandbox_net="172.30.0.0/16")
    verdict = decide(rules("internet"), g, "172.30.0.5", 8000, [ip("172.30.0.5")])
    assert not verdict.allowed and "other sandboxes are never reachable" in verdict.rule
    assert decide(rules("internet"), g, "172.20.0.1", 80, [ip("172.20.0.1")]).allowed


def test_a_helper_reaches_only_its_destination() -> None:
    r = Rules("destination", destination=("git.test", 443))
    assert decide(r, guard(), "git.test", 443, [PUBLIC]).allowed
    assert not decide(r, guard(), "git.test", 80, [PUBLIC]).allowed
    assert not decide(r, guard(), "other.test", 443, [PUBLIC]).allowed
    assert not decide(r, guard(), "git.test", 443, [ip("192.168.0.9")]).allowed


def test_agents_cannot_widen_the_operators_settings() -> None:
    private = PrivateAllowance(parse_entries(["10.1.0.0/16"], "p"))
    check_agent_entries(parse_entries(["10.1.2.0/24", "8.8.0.0/16", "pypi.org"], "allow"), private)
    with pytest.raises(InvalidRequest, match=r"private address.*CORRAL_EGRESS_ALLOW_PRIVATE"):
        check_agent_entries(parse_entries(["192.168.0.0/24"], "allow"), private)
    with pytest.raises(InvalidRequest, match=r"169\.254\.169\.254. is a link-local"):
        check_agent_entries(parse_entries(["169.254.169.254"], "allow"), private)
    with pytest.raises(InvalidRequest, match="network='internet'"):
        check_agent_entries(parse_entries(["0.0.0.0/0"], "allow"), private)


def test_proxy_credentials_are_signed_and_cannot_be_forged(tmp_path: Path) -> None:
    keys = Keyring.load(tmp_path)
    assert (tmp_path / "egress.key").stat().st_mode & 0o777 == 0o600
    assert Keyring.load(tmp_path).credentials(Identity("sb-1")) == keys.credentials(Identity("sb-1"))
    import base64

    def header(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    user, password = keys.credentials(Identity("sb-1"))
    assert keys.identify(header(user, password)) == Identity("sb-1")
    helper = Identity("sb-1", ("git.test", 443), "n1")
    assert keys.identify(header(*keys.credentials(helper))) == helper
    assert keys.identify(header(*keys.credentials(helper, now=time.time() - 7 * 3600))) is None  # expired
    assert keys.identify(header("sb-2", password)) is None  # another sandbox's name with this password
    assert keys.identify(header(user, password[:-1] + ("1" if password[-1] == "0" else "0"))) is None
    assert Keyring(b"k" * 32).identify(header(user, password)) is None  # another data dir's key
    for junk in (None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        assert keys.identify(junk) is None
    assert "sb-1:" in keys.proxy_url(Identity("sb-1"), "172.30.0.1", 3128)


def test_secret_bindings_load_and_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", "tok-123")
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({
        "api.test": {"Authorization": {"env": "API_TOKEN", "prefix": "Bearer "}},
        "*.svc.test:8080": {"X-Api-Key": "k-1"},
    }))
    secrets = Secrets.load(path)
    assert secrets.headers_for("api.test", 443) == [("Authorization", "Bearer tok-123")]
    assert secrets.headers_for("a.svc.test", 8080) == [("X-Api-Key", "k-1")]
    assert secrets.headers_for("a.svc.test", 80) == [] and secrets.headers_for("evil.test", 443) == []
    for bad, says in [
        ({"api.test": {"Bad Header": "x"}}, "not a valid header name"),
        ({"api.test": {"X": {"env": "NOT_SET_ANYWHERE"}}}, "NOT_SET_ANYWHERE is not set"),
        ({"10.0.0.1": {"X": "y"}}, "not an address"),
        ({"api.test": {"X": "a\r\nInjected: 1"}}, "line break"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigurationError, match=says):
            Secrets.load(path)


def test_network_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    allow_file = tmp_path / "allow.txt"
    allow_file.write_text("# indexes\npypi.org, files.pythonhosted.org\nregistry.npmjs.org  # npm\n")
    monkeypatch.setenv("CORRAL_NETWORK_MODES", "none,allowlist,internet")
    monkeypatch.setenv("CORRAL_EGRESS_ALLOW", "github.com")
    monkeypatch.setenv("CORRAL_EGRESS_ALLOW_FILE", str(allow_file))
    monkeypatch.setenv("CORRAL_EGRESS_ALLOW_PRIVATE", "10.0.0.0/8")
    monkeypatch.setenv("CORRAL_GIT_ALLOW_PRIVATE", "git.internal:443")
    monkeypatch.setenv("CORRAL_EGRESS_HOSTS", "pkgs.test=172.17.0.1, pkgs.test=172.17.0.2")
    monkeypatch.setenv("CORRAL_UPSTREAM_PROXY", "none")
    with caplog.at_level(logging.WARNING):
        ns = network_from_env()
    assert ns.modes == ("none", "allowlist", "internet")
    assert ns.allow == ("github.com", "pypi.org", "files.pythonhosted.org", "registry.npmjs.org")
    assert ns.allow_private == ("10.0.0.0/8", "git.internal:443")
    assert "CORRAL_GIT_ALLOW_PRIVATE is deprecated" in caplog.text
    assert ns.hosts == (("pkgs.test", "172.17.0.1"), ("pkgs.test", "172.17.0.2")) and ns.upstream_proxy is None
    monkeypatch.setenv("CORRAL_UPSTREAM_PROXY", "")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    assert network_from_env().upstream_proxy is None  # set but empty: off
    monkeypatch.delenv("CORRAL_UPSTREAM_PROXY")
    assert network_from_env().upstream_proxy == "http://proxy.corp:3128"  # the server's own by default
    for name, value, says in [
        ("CORRAL_NETWORK_MODES", "none,bridge", "'bridge' is not a mode"),
        ("CORRAL_EGRESS_HOSTS", "pkgs.test", "not name=ip"),
        ("CORRAL_EGRESS_ALLOW_FILE", str(tmp_path / "missing"), "cannot read"),
        ("CORRAL_SANDBOX_CA", str(tmp_path / "missing.pem"), "not a readable file"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(ConfigurationError, match=says):
                network_from_env()
