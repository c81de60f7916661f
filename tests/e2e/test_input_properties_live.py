"""Property-based tests (hypothesis) against a live kanald: random bad REST bodies,
Docker plugin messages and DNS packets get a clear error (or no answer, for DNS)
and change nothing in the store, the kernel or the files."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.kanald import Kanald, kanald, populate
from tests.snapshot import assert_unchanged, settle

pytestmark = pytest.mark.xdist_group("input-properties-live")
LIVE = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

bad_text = st.sampled_from(["", "a b", "x\n", "\nnameserver 6.6.6.6", "a/b", "-", "\x00", "é",
                            "a" * 300, "10.90.1.10", "::", "1.2.3.4/33"])  # fmt: skip
bad_any = st.one_of(bad_text, st.integers(), st.booleans(), st.lists(bad_text, max_size=2),
                    st.dictionaries(bad_text, bad_text, max_size=2))  # fmt: skip


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kanald]:
    with kanald(tmp_path_factory.mktemp("propslive"), plugin=True) as k:
        populate(k)
        yield k


SB_FIELDS = ["Hostname", "Dns", "DnsSearch", "DnsOptions", "ExtraHosts", "Env", "WorkingDir",
             "Publish", "Networks", "NetworkMode", "Name", "Cmd"]  # fmt: skip
NET_FIELDS = ["Name", "Driver", "IPAM", "Options", "Labels", "EnableIPv6", "Internal"]


@LIVE
@given(st.sampled_from(SB_FIELDS), bad_any)
def test_sandbox_create_with_one_bad_field(d: Kanald, field: str, value: Any) -> None:
    body: dict[str, Any] = {"Cmd": ["true"], "Networks": [{"Name": "net1"}], field: value}
    before = d.snap()
    status, reply = d.call("POST", "/sandboxes/create", body)
    if status == 201:  # a value that happens to be good: undo, nothing to check
        d.call("DELETE", f"/sandboxes/{reply['Id']}?force=1")
        settle(d.snap)  # its aftermath settles before the next example's snapshot
        return
    assert 400 <= status < 500 and reply["message"], (status, reply)
    assert_unchanged(before, d.snap(), f"{field}={value!r}")


@LIVE
@given(st.sampled_from(NET_FIELDS), bad_any)
def test_network_create_with_one_bad_field(d: Kanald, field: str, value: Any) -> None:
    body: dict[str, Any] = {"Name": "pnet", "IPAM": {"Config": [{"Subnet": "10.95.0.0/24"}]}}
    body[field] = value
    before = d.snap()
    status, reply = d.call("POST", "/networks/create", body)
    if status == 201:
        d.call("DELETE", "/networks/pnet")
        settle(d.snap)
        return
    assert 400 <= status < 500 and reply["message"], (status, reply)
    assert_unchanged(before, d.snap(), f"{field}={value!r}")


@LIVE
@given(st.binary(max_size=300))
def test_random_bytes_as_a_body(d: Kanald, raw: bytes) -> None:
    before = d.snap()
    for path in ("/networks/create", "/sandboxes/create", "/networks/net1/connect"):
        status, reply = d.call("POST", path, raw)
        assert 400 <= status < 500 and reply["message"], (path, status, reply)
    assert_unchanged(before, d.snap(), repr(raw))


@LIVE
@given(
    st.sampled_from(["NetworkDriver.CreateNetwork", "NetworkDriver.CreateEndpoint",
                     "NetworkDriver.Join", "NetworkDriver.DeleteNetwork",
                     "IpamDriver.RequestPool", "IpamDriver.RequestAddress"]),
    st.dictionaries(st.sampled_from(["NetworkID", "EndpointID", "Pool", "PoolID", "Address",
                                     "Interface", "SandboxKey", "Options", "IPv4Data"]),
                    bad_any, max_size=4),
)  # fmt: skip
def test_docker_plugin_messages_live(d: Kanald, method: str, body: dict[str, Any]) -> None:
    assert d.plugin_sock is not None
    before = d.snap()
    status, reply = d.call("POST", f"/{method}", body, sock=d.plugin_sock)
    assert isinstance(reply, dict)
    if status == 200 and not reply.get("Err") and not reply.get("Error"):
        return  # accepted (a harmless combination): nothing more to say
    assert reply.get("Err") or reply.get("Error"), (status, reply)
    assert_unchanged(before, d.snap(), f"{method} {json.dumps(body)[:200]}")


def _sandbox_udp(d: Kanald, sandbox: str) -> socket.socket:
    """A UDP socket inside the sandbox's namespace (made there, used from here)."""
    from kanal.netlink.ns import open_netns, run_in_netns

    netns = d.call("GET", f"/sandboxes/{sandbox}")[1]["Netns"]
    fd = open_netns(netns)
    try:
        s: socket.socket = run_in_netns(
            fd, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        )
    finally:
        import os

        os.close(fd)
    s.settimeout(3)
    return s


QUERY = bytes.fromhex("abcd01000001000000000000") + b"\x03sb1\x00\x00\x01\x00\x01"


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=600) | st.builds(lambda b, i: QUERY[:i] + b, st.binary(max_size=40),
                                           st.integers(0, len(QUERY))))  # fmt: skip
def test_dns_packets(d: Kanald, packet: bytes) -> None:
    s = _sandbox_udp(d, "sb1")
    try:
        before = d.snap()
        s.sendto(packet, ("127.0.0.11", 53))
        s.settimeout(0.3)
        try:
            reply = s.recv(4096)
            assert len(reply) >= 12 and reply[:2] == packet[:2]  # an answer to that query
        except TimeoutError:
            pass  # no answer to garbage is an answer too
        # the server still answers a good question, and nothing changed
        s.settimeout(5)
        s.sendto(QUERY, ("127.0.0.11", 53))
        good = s.recv(4096)
        assert good[:2] == QUERY[:2] and good[3] & 0x0F == 0  # NOERROR
        assert_unchanged(before, d.snap(), repr(packet[:60]))
    finally:
        s.close()
