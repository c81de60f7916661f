"""Named bad inputs to the ``kanal`` CLI: each exits non-zero with one readable line
(``kanal: ...``; exit 2 for usage errors, 1 for refused requests), the API's own
words reach the user, and nothing changes (daemon state, kernel, files).

The CLI checks only its own syntax and sends what the user typed: the rules are
kanald's (kanal.validate), so the same value is refused the same way by both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.kanald import Kanald, kanald, populate
from tests.snapshot import assert_unchanged, settle

pytestmark = pytest.mark.xdist_group("bad-input-cli")


@dataclass(frozen=True)
class Cli:
    id: str
    argv: tuple[str, ...]
    exit: int
    message: str  # regex on the one stderr line
    env: dict[str, str] = field(default_factory=dict)


def c(id: str, exit: int, message: str, *argv: str, **env: str) -> Cli:
    return Cli(id, argv, exit, message, env)


N = ("network", "create")
R = ("run", "-d")
CASES: list[Cli] = [
    # --- kanal network create --------------------------------------------------------
    c("net-name-slash", 1, "invalid network name", *N, "a/b"),
    c("net-name-newline", 1, "invalid network name", *N, "web\n"),
    c("net-name-empty", 1, "name is required", *N, ""),
    c("net-name-129", 1, "at most 128", *N, "a" * 129),
    c("net-name-space", 1, "invalid network name", *N, "a b"),
    c("net-name-taken", 1, "already exists", *N, "net1"),
    c("net-no-name", 2, "required", *N),
    c("net-two-names", 2, 'accepts no argument "b"', *N, "a", "b"),
    c("net-subnet-word", 1, "invalid subnet", *N, "--subnet", "abc", "x1"),
    c("net-subnet-host-bits", 1, "should be", *N, "--subnet", "10.91.0.5/24", "x1"),
    c("net-subnet-overlap", 1, "overlaps", *N, "--subnet", "10.90.0.0/16", "x1"),
    c("net-gw-no-subnet", 1, "needs a --subnet", *N, "--gateway", "10.91.0.1", "x1"),
    c("net-range-no-subnet", 1, "needs a --subnet", *N, "--ip-range", "10.91.0.0/25", "x1"),
    c("net-aux-no-subnet", 1, "needs a --subnet", *N, "--aux-address", "r=10.91.0.2", "x1"),
    c(
        "net-gw-twice",
        1,
        "needs a --subnet",
        *N,
        "--subnet",
        "10.91.0.0/24",
        "--gateway",
        "10.91.0.1",
        "--gateway",
        "10.91.0.2",
        "x1",
    ),
    c(
        "net-gw-network",
        1,
        "network address",
        *N,
        "--subnet",
        "10.91.0.0/24",
        "--gateway",
        "10.91.0.0",
        "x1",
    ),
    c(
        "net-gw-broadcast",
        1,
        "broadcast",
        *N,
        "--subnet",
        "10.91.0.0/24",
        "--gateway",
        "10.91.0.255",
        "x1",
    ),
    c(
        "net-gw-aux",
        1,
        "aux-address",
        *N,
        "--subnet",
        "10.91.0.0/24",
        "--gateway",
        "10.91.0.9",
        "--aux-address",
        "r=10.91.0.9",
        "x1",
    ),
    c(
        "net-gw-outside",
        1,
        "no matching subnet",
        *N,
        "--subnet",
        "10.91.0.0/24",
        "--gateway",
        "10.92.0.1",
        "x1",
    ),
    c(
        "net-aux-outside",
        1,
        "no matching subnet for aux-address 10.99.0.2",
        *N,
        "--subnet",
        "10.91.0.0/24",
        "--aux-address",
        "r=10.99.0.2",
        "x1",
    ),
    c(
        "net-aux-word",
        1,
        "auxiliary address",
        *N,
        "--subnet",
        "10.91.0.0/24",
        "--aux-address",
        "r=abc",
        "x1",
    ),
    c(
        "net-aux-no-equals",
        1,
        "invalid --aux-address",
        *N,
        "--subnet",
        "10.91.0.0/24",
        "--aux-address",
        "=10.91.0.2",
        "x1",
    ),
    c(
        "net-range-outside",
        1,
        "range",
        *N,
        "--subnet",
        "10.91.0.0/24",
        "--ip-range",
        "10.92.0.0/25",
        "x1",
    ),
    c("net-mtu-word", 1, "(?i)mtu", *N, "-o", "com.docker.network.driver.mtu=abc", "x1"),
    c("net-opt-no-key", 1, "invalid --opt", *N, "-o", "=x", "x1"),
    c("net-opt-newline", 1, "control", *N, "-o", "a=b\nc", "x1"),
    c("net-label-no-key", 1, "invalid --label", *N, "--label", "=x", "x1"),
    c("net-label-newline", 1, "control", *N, "--label", "a\n=b", "x1"),
    c("net-ipv6-word", 2, "strconv.ParseBool", *N, "--ipv6=maybe", "x1"),
    c("net-driver-unknown", 1, "nosuch", *N, "-d", "nosuch", "x1"),
    c("net-driver-newline", 1, "control", *N, "-d", "br\nidge", "x1"),
    c("net-unknown-flag", 2, "unknown flag: --bogus", *N, "--bogus", "x1"),
    # --- other network commands -------------------------------------------------------
    c("net-rm-nosuch", 1, "nosuch", "network", "rm", "nosuch"),
    c("net-rm-builtin", 1, "bridge", "network", "rm", "bridge"),
    c("net-rm-in-use", 1, "active endpoints", "network", "rm", "net1"),
    c("net-rm-newline", 1, "control", "network", "rm", "net1\n"),
    c("net-inspect-nosuch", 1, "nosuch", "network", "inspect", "nosuch"),
    c("net-ls-bad-filter", 1, "filter", "network", "ls", "-f", "bogus=1"),
    c("net-ls-filter-no-equals", 1, "expected name=value", "network", "ls", "-f", "x"),
    c("net-ls-bad-type", 1, "type=x", "network", "ls", "-f", "type=x"),
    c("net-prune-bad-filter", 1, "filter", "network", "prune", "-f", "--filter", "bogus=1"),
    c("net-connect-nosuch-sb", 1, "No such container", "network", "connect", "net2", "nosuch"),
    c("net-connect-nosuch-net", 1, "nosuch", "network", "connect", "nosuch", "sb1"),
    c("net-connect-again", 1, "already exists", "network", "connect", "net1", "sb1"),
    c("net-connect-ip-word", 1, "IPv4Address", "network", "connect", "--ip", "abc", "net2", "sb1"),
    c(
        "net-connect-ip-outside",
        1,
        "no configured subnet",
        "network",
        "connect",
        "--ip",
        "10.99.0.1",
        "net2",
        "sb1",
    ),
    c(
        "net-connect-ip-gateway",
        1,
        "reserved",
        "network",
        "connect",
        "--ip",
        "10.90.2.1",
        "net2",
        "sb1",
    ),
    c(
        "net-connect-alias-space",
        1,
        "invalid alias",
        "network",
        "connect",
        "--alias",
        "a b",
        "net2",
        "sb1",
    ),
    c(
        "net-connect-alias-newline",
        1,
        "invalid alias",
        "network",
        "connect",
        "--alias",
        "db\n",
        "net2",
        "sb1",
    ),
    c("net-connect-sb-newline", 1, "control", "network", "connect", "net2", "sb1\n"),
    c("net-disconnect-nosuch", 1, "No such container", "network", "disconnect", "net1", "nosuch"),
    c("net-disconnect-not-on", 1, ".", "network", "disconnect", "net2", "sb1"),
    # --- kanal run ----------------------------------------------------------------------
    c("run-no-cmd", 1, "needs a command", *R, "--network", "net1"),
    c("run-hostname-newline", 1, "control", *R, "--hostname", "a\nb", "--", "true"),
    c(
        "run-hostname-71",
        1,
        "longer than 64",
        *R,
        "--hostname",
        "a" * 30 + "." + "b" * 40,
        "--",
        "true",
    ),
    c(
        "run-hostname-label-64",
        1,
        "longer than 63",
        *R,
        "--hostname",
        "a" * 64 + ".b",
        "--",
        "true",
    ),
    c("run-hostname-underscore", 1, "labels", *R, "--hostname", "a_b", "--", "true"),
    c("run-search-inject", 1, "control", *R, "--dns-search", "a\nnameserver 6.6.6.6", "--", "true"),
    c("run-search-space", 1, "search domain", *R, "--dns-search", "a b", "--", "true"),
    c(
        "run-option-inject",
        1,
        "control",
        *R,
        "--dns-option",
        "ndots:1\nnameserver 6.6.6.6",
        "--",
        "true",
    ),
    c("run-option-space", 1, "DNS option", *R, "--dns-option", "a b", "--", "true"),
    c("run-dns-word", 1, "DNS server", *R, "--dns", "abc", "--", "true"),
    c("run-dns-zone-newline", 1, "DNS server", *R, "--dns", "fe80::1%a\nb", "--", "true"),
    c("run-add-host-no-ip", 1, "add-host", *R, "--add-host", "db", "--", "true"),
    c("run-add-host-bad-ip", 1, "add-host", *R, "--add-host", "db:abc", "--", "true"),
    c("run-add-host-newline", 1, "add-host", *R, "--add-host", "db:192.0.2.1\n", "--", "true"),
    c("run-env-no-key", 1, "invalid -e", *R, "-e", "=x", "--", "true"),
    c("run-env-key-newline", 1, "environment variable", *R, "-e", "A\nB=1", "--", "true"),
    c("run-name-slash", 1, "invalid container name", *R, "--name", "a/b", "--", "true"),
    c("run-name-newline", 1, "invalid container name", *R, "--name", "x\n", "--", "true"),
    c(
        "run-name-taken",
        1,
        "already in use",
        *R,
        "--name",
        "sb1",
        "--network",
        "net1",
        "--",
        "true",
    ),
    c("run-network-nosuch", 1, "nosuch", *R, "--network", "nosuch", "--", "true"),
    c("run-network-bad", 1, "invalid network name", *R, "--network", "a b", "--", "true"),
    c(
        "run-second-network-nosuch",
        1,
        "nosuch",
        *R,
        "--network",
        "net2",
        "--network",
        "nosuch",
        "--",
        "true",
    ),
    c("run-ip-word", 1, "IPv4Address", *R, "--network", "net1", "--ip", "abc", "--", "true"),
    c("run-ip-taken", 1, "in use", *R, "--network", "net1", "--ip", "10.90.1.10", "--", "true"),
    c(
        "run-ip-outside",
        1,
        "no configured subnet",
        *R,
        "--network",
        "net1",
        "--ip",
        "10.99.0.1",
        "--",
        "true",
    ),
    c("run-alias-bad", 1, "invalid alias", *R, "--network", "net1", "--alias", "a b", "--", "true"),
    c("run-publish-word", 1, "port specification", *R, "-p", "abc", "--", "true"),
    c("run-publish-icmp", 1, "protocol", *R, "-p", "80/icmp", "--", "true"),
    c("run-publish-range", 1, "port range", *R, "-p", "70000", "--", "true"),
    c(
        "run-publish-taken",
        1,
        "already allocated",
        *R,
        "--network",
        "net2",
        "-p",
        "127.0.0.1:18555:80",
        "--",
        "true",
    ),
    c("run-workdir-relative", 1, "absolute", *R, "-w", "rel", "--", "true"),
    c(
        "run-container-publish",
        1,
        "conflicting",
        *R,
        "--network",
        "container:sb1",
        "-p",
        "80",
        "--",
        "true",
    ),
    c(
        "run-container-nosuch",
        1,
        "No such container",
        *R,
        "--network",
        "container:nosuch",
        "--",
        "true",
    ),
    c("run-attached-hostname-bad", 1, "labels", "run", "--rm", "--hostname=-x", "--", "true"),
    # --- sandbox commands ----------------------------------------------------------------
    c("stop-t-word", 2, "invalid float", "stop", "-t", "abc", "sb1"),
    c("stop-t-negative", 1, "invalid t", "stop", "-t", "-1", "sb1"),
    c("stop-nosuch", 1, "No such container", "stop", "nosuch"),
    c("rm-nosuch", 1, "No such container", "rm", "nosuch"),
    c("rm-running", 1, "running container", "rm", "sb1"),
    c("rm-newline", 1, "control", "rm", "sb1\n"),
    c("exec-nosuch", 1, "No such container", "exec", "nosuch", "true"),
    c("exec-no-cmd", 1, "needs a command", "exec", "sb1"),
    c("unknown-command", 2, "invalid choice", "bogus"),
    # --- kanal cni (no daemon) -----------------------------------------------------------
    c("cni-no-args", 2, "required", "cni", "add"),
    c("cni-netns-missing", 1, "does not exist", "cni", "add", "net1", "/run/netns/nosuch-kbi"),
    c("cni-netns-not-ns", 1, "not a network namespace", "cni", "add", "net1", "/etc/hostname"),
    c("cni-netns-dir", 1, "network namespace", "cni", "add", "net1", "/etc"),
    c("cni-cap-args-bad", 1, "CAP_ARGS", "cni", "add", "net1", "/proc/self/ns/net", CAP_ARGS="{"),
    c("cni-cap-args-list", 1, "CAP_ARGS", "cni", "add", "net1", "/proc/self/ns/net", CAP_ARGS="[]"),
    c("cni-gc-valid-bad", 1, "invalid --valid", "cni", "gc", "net1", "--valid", "nocolon"),
    c("cni-install-no-dir", 2, "required", "cni", "install"),
]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kanald]:
    with kanald(tmp_path_factory.mktemp("badcli")) as k:
        populate(k)
        yield k


# As the API suite's: no known leak; a case that put a port on a bridge before it was
# refused is compared once the kernel's link watch has settled the bridge's carrier.
SETTLE = {"run-second-network-nosuch"}
LEAKS: dict[str, str] = {}


def _params() -> list[object]:
    return [
        pytest.param(x, id=x.id, marks=pytest.mark.xfail(reason=LEAKS[x.id], strict=True))
        if x.id in LEAKS
        else pytest.param(x, id=x.id)
        for x in CASES
    ]


@pytest.mark.parametrize("case", _params())
def test_bad_cli(d: Kanald, case: Cli, tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.e2e.test_cli_network import VENV

    conf = tmp_path / "net.d"
    conf.mkdir()
    (conf / "net1.conflist").write_text(
        '{"cniVersion": "1.0.0", "name": "net1", "plugins": [{"type": "loopback"}]}'
    )
    cache = tmp_path / "cache"
    before = d.snap()
    argv = list(case.argv)
    if argv[0] == "cni" and len(argv) > 2 and argv[1] != "install":
        argv += ["--conf-dir", str(conf), "--cache-dir", str(cache)]
    if argv[0] == "cni":
        env = {**os.environ, **case.env}
        p = subprocess.run(
            ["nsenter", f"--net=/run/netns/{d.host}", str(VENV / "kanal"), *argv],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    else:
        p = d.cli(*argv)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == case.exit, (p.returncode, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("kanal: "), p.stderr
    assert re.search(case.message, lines[0]), lines[0]
    assert "Traceback" not in p.stderr
    assert p.stdout == ("[]\n" if case.argv[:2] == ("network", "inspect") else "")  # docker's
    assert not cache.exists() or not any(cache.rglob("*"))
    try:
        assert_unchanged(before, settle(d.snap) if case.id in SETTLE else d.snap(), case.id)
    finally:
        if case.id in LEAKS:
            settle(d.snap)


def test_case_count() -> None:
    assert len({x.id for x in CASES}) == len(CASES) >= 90
