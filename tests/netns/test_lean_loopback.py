"""The lean loopback path answers exactly as the full loopback plugin, or declines.

Each case runs both on the same request and namespace: the lean path
(:func:`kanal.fastpath.lean_loopback.answer`) and the full plugin through the
dispatcher. The lean answer must be the full plugin's output byte for byte, and
``lo`` must end in the same state; for the requests it must decline (anything
but a plain ADD/DEL) it must return None and leave this process in its own
namespace.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest

from kanal.fastpath.lean_loopback import answer
from kanal.plugins.registry import load_plugin
from kanal.skel.dispatcher import Dispatcher
from kanal.spec.versions import ALL_VERSIONS
from tests.helpers import nsexec

CONF = {"name": "lo", "type": "loopback"}


def _env(netns: str, command: str = "ADD", **extra: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "lean1",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/nonexistent",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def _full(env: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    out, err = io.StringIO(), io.StringIO()
    code = Dispatcher(env, io.BytesIO(stdin), out, err).run(load_plugin("loopback"))
    return code, out.getvalue().encode()


def _lean(env: dict[str, str], stdin: bytes) -> bytes | None:
    before = os.stat("/proc/self/ns/net").st_ino
    got = answer({k.encode(): v.encode() for k, v in env.items()}, stdin)
    assert os.stat("/proc/self/ns/net").st_ino == before, "left this process in another netns"
    return got


def _lo_up(ns: str) -> bool:
    links = json.loads(nsexec(ns, "ip", "-j", "link", "show", "lo").stdout)
    return "UP" in links[0]["flags"]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("ipv6", [True, False], ids=["v4+v6", "v4-only"])
def test_plain_add_and_del_match_the_full_plugin(make_netns: Any, version: str, ipv6: bool) -> None:
    lean_ns, full_ns = make_netns("kll"), make_netns("klf")
    if not ipv6:
        for ns in (lean_ns, full_ns):
            nsexec(ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
            nsexec(ns, "sysctl", "-q", "-w", "net.ipv6.conf.lo.disable_ipv6=1")
    # As runtimes write it (compact) and as a person does (indented, with a newline).
    stdin = json.dumps({"cniVersion": version, **CONF}, indent=2 if ipv6 else None).encode()
    for command in ("ADD", "DEL"):
        lean = _lean(_env(f"/run/netns/{lean_ns}", command), stdin)
        code, full = _full(_env(f"/run/netns/{full_ns}", command), stdin)
        assert code == 0, full
        assert lean == full.replace(full_ns.encode(), lean_ns.encode()), command
        assert _lo_up(lean_ns) == _lo_up(full_ns) == (command == "ADD")
    if ipv6:
        assert b"::1/128" in _lean(_env(f"/run/netns/{lean_ns}"), stdin)  # type: ignore[operator]


DECLINED = {
    "another key": ({**CONF, "cniVersion": "1.0.0", "dns": {}}, {}),
    "Go-cased key": ({"CNIVersion": "1.0.0", "name": "lo", "type": "loopback"}, {}),
    "no version": (CONF, {}),
    "unknown version": ({**CONF, "cniVersion": "9.9.9"}, {}),
    "bad name": ({**CONF, "cniVersion": "1.0.0", "name": "a b"}, {}),
    "type not a string": ({**CONF, "cniVersion": "1.0.0", "type": 1}, {}),
    "prevResult": ({**CONF, "cniVersion": "1.0.0", "prevResult": {"cniVersion": "1.0.0"}}, {}),
    "CHECK": ({**CONF, "cniVersion": "1.0.0"}, {"CNI_COMMAND": "CHECK"}),
    "VERSION": ({**CONF, "cniVersion": "1.0.0"}, {"CNI_COMMAND": "VERSION"}),
    "no container id": ({**CONF, "cniVersion": "1.0.0"}, {"CNI_CONTAINERID": ""}),
    "bad container id": ({**CONF, "cniVersion": "1.0.0"}, {"CNI_CONTAINERID": "../x"}),
    "no CNI_PATH": ({**CONF, "cniVersion": "1.0.0"}, {"CNI_PATH": ""}),
    "bad ifname": ({**CONF, "cniVersion": "1.0.0"}, {"CNI_IFNAME": "a/b"}),
    "missing netns": ({**CONF, "cniVersion": "1.0.0"}, {"CNI_NETNS": "/run/netns/kanal-absent"}),
    "not a netns": ({**CONF, "cniVersion": "1.0.0"}, {"CNI_NETNS": "/proc/self/ns/mnt"}),
    "quote in netns": ({**CONF, "cniVersion": "1.0.0"}, {"CNI_NETNS": '/run/netns/a"b'}),
}


@pytest.mark.parametrize("case", sorted(DECLINED))
def test_anything_else_is_declined(make_netns: Any, case: str) -> None:
    ns = make_netns("kld")
    conf, extra = DECLINED[case]
    env = _env(f"/run/netns/{ns}", **extra)
    assert _lean(env, json.dumps(conf).encode()) is None
    # ... and the full plugin, which then answers, still answers the same way
    # whether or not the lean path ran first (it is idempotent up to ``lo``'s state).
    assert _full(env, json.dumps(conf).encode()) == _full(env, json.dumps(conf).encode())


@pytest.mark.parametrize(
    "raw",
    [
        b'{"cniVersion": "1.0.0", "name": "lo", "name": "lo2", "type": "loopback"}',
        b'{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"} x',
        b'{"cniVersion": "1.0.0", "name": "lo", "type": NaN}',
        b'{"cniVersion": "1.0.0", "name": "l\\u00f6", "type": "loopback"}',
        '{"cniVersion": "1.0.0", "name": "lö", "type": "loopback"}'.encode(),
        b"[]",
        b"",
        b'\xef\xbb\xbf{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}',
        b'{"cniVersion": "1.0.0", "name": "lo", "type": "loop\tback"}',
        b'{"cniVersion": "1.0.0", "name": "lo", "type": "loopback",}',
        b'{"cniVersion": "1.0.0", "name": "lo" "type": "loopback"}',
        b'{"cniVersion": "1.0.0", "name": "lo", "type" "loopback"}',
        b'{"cniVersion": "1.0.0", "name": "lo", "type": "loopback}',
        b'{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"',
        b'{"cniVersion": "1.0.0", "name": "lo", "type": null}',
        b'{"cniVersion": "1.0.0", "name": "lo", "type": ["loopback"]}',
        b'{"cniVersion": "1.0.0", "name": "lo", "type": "loopback", "name": "lo"}',
        b"{}",
    ],
    ids=[
        "duplicate",
        "trailing",
        "NaN",
        "escape",
        "utf8",
        "array",
        "empty",
        "bom",
        "control character",
        "trailing comma",
        "no comma",
        "no colon",
        "open string",
        "open object",
        "null",
        "nested",
        "duplicate at the end",
        "empty object",
    ],
)
def test_unusual_json_is_declined(make_netns: Any, raw: bytes) -> None:
    ns = make_netns("kld")
    assert _lean(_env(f"/run/netns/{ns}"), raw) is None


def test_a_non_loopback_address_is_left_to_the_full_plugin(make_netns: Any) -> None:
    ns = make_netns("kld")
    nsexec(ns, "ip", "addr", "add", "192.0.2.1/32", "dev", "lo")
    nsexec(ns, "ip", "addr", "del", "127.0.0.1/8", "dev", "lo", check=False)
    stdin = json.dumps({**CONF, "cniVersion": "1.0.0"}).encode()
    env = _env(f"/run/netns/{ns}")
    assert _lean(env, stdin) is None
    code, out = _full(env, stdin)
    assert code == 1 and b"non-loopback address" in out
