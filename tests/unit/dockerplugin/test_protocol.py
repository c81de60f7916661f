"""The plugin protocol's dispatcher and messages: wire shapes and error mapping (no root)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kanal.dockerplugin import messages as m
from kanal.dockerplugin.protocol import Dispatcher
from kanal.errors import Conflict, DecodeError, KanalError


class Recorder:
    """Handlers that record what they were given (pure logic: no engine)."""

    def __init__(self, fail: KanalError | Exception | None = None) -> None:
        self.got: list[tuple[str, Any]] = []
        self.fail = fail

    def __getattr__(self, name: str) -> Any:
        def call(req: Any = None) -> dict[str, Any]:
            self.got.append((name, req))
            if self.fail is not None:
                raise self.fail
            return {"ok": name}

        return call


def test_activate_lists_what_is_served() -> None:
    assert Dispatcher(Recorder(), Recorder()).handle("/Plugin.Activate", b"") == (
        200,
        {"Implements": ["NetworkDriver", "IpamDriver"]},
    )
    assert Dispatcher(None, Recorder()).handle("/Plugin.Activate", b"{}")[1] == {
        "Implements": ["IpamDriver"]
    }
    status, reply = Dispatcher(None, Recorder()).handle("/NetworkDriver.Join", b"{}")
    assert status == 404 and "Err" in reply


def test_empty_bodies_and_typed_requests() -> None:
    net = Recorder()
    d = Dispatcher(net, Recorder())
    assert d.handle("/NetworkDriver.GetCapabilities", b"") == (200, {"ok": "get_capabilities"})
    body = {
        "NetworkID": "n1",
        "EndpointID": "e1",
        "Interface": {"Address": "10.0.0.2/24", "MacAddress": "AA:BB:CC:DD:EE:FF"},
    }
    assert d.handle("/NetworkDriver.CreateEndpoint", json.dumps(body).encode())[0] == 200
    name, req = net.got[-1]
    assert name == "create_endpoint" and isinstance(req, m.CreateEndpoint)
    assert req.address == "10.0.0.2/24" and req.mac == "aa:bb:cc:dd:ee:ff"
    assert d.handle("/NetworkDriver.DiscoverNew", b'{"DiscoveryType": 1}') == (200, {})


@pytest.mark.parametrize(
    ("path", "fail", "status", "key"),
    [
        ("/NetworkDriver.Leave", Conflict("taken"), 500, "Err"),
        ("/IpamDriver.ReleasePool", Conflict("taken"), 200, "Error"),
        ("/NetworkDriver.Leave", RuntimeError("bug"), 500, "Err"),
    ],
)
def test_failures_map_to_each_interface_s_error_key(
    path: str, fail: Exception, status: int, key: str
) -> None:
    d = Dispatcher(Recorder(fail), Recorder(fail))
    body = b'{"NetworkID": "n", "EndpointID": "e", "PoolID": "p"}'
    got, reply = d.handle(path, body)
    assert got == status and set(reply) == {key} and reply[key]


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[1]", b'"x"', b'{"NetworkID": 5}', b'{"NetworkID": "a/../b"}', b"\xff\xfe"],
)
def test_malformed_requests_are_400_and_reach_no_handler(raw: bytes) -> None:
    net = Recorder()
    status, reply = Dispatcher(net, Recorder()).handle("/NetworkDriver.DeleteNetwork", raw)
    assert status == 400 and reply["Err"] and net.got == []


def test_messages_validate_fields() -> None:
    with pytest.raises(DecodeError, match="Gateway"):
        m.CreateNetwork.parse(
            {"NetworkID": "n", "IPv4Data": [{"Pool": "10.0.0.0/24", "Gateway": "x/24"}]}
        )
    c = m.CreateNetwork.parse(
        {
            "NetworkID": "n",
            "Options": {"com.docker.network.generic": {"a": "b"}},
            "IPv4Data": [{"Pool": "10.0.0.0/24", "Gateway": "10.0.0.1/24"}],
        }
    )
    assert c.ipv4[0].gateway == "10.0.0.1" and c.generic == {"a": "b"}
    with pytest.raises(DecodeError, match="SubPool without Pool"):
        m.RequestPool.parse({"SubPool": "10.0.0.0/25"})
    with pytest.raises(DecodeError, match="SandboxKey"):
        m.Join.parse({"NetworkID": "n", "EndpointID": "e", "SandboxKey": "relative"})
    pb = m.ProgramExternalConnectivity.parse(
        {
            "NetworkID": "n",
            "EndpointID": "e",
            "Options": {
                "com.docker.network.portmap": [
                    {"Proto": 17, "Port": 53, "HostIP": "127.0.0.1", "HostPort": 5353}
                ]
            },
        }
    )
    assert pb.ports == [m.PortBinding("udp", 53, "127.0.0.1", 5353, 0)]
    with pytest.raises(DecodeError, match="HostPort"):
        m.PortBinding.parse({"Port": 80, "HostPort": 70000})
    r = m.RequestAddress.parse(
        {"PoolID": "p", "Options": {"RequestAddressType": "com.docker.network.gateway"}}
    )
    assert r.gateway and not r.address
