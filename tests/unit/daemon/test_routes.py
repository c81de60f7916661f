"""The REST API's route table and typed requests, on a controller with a fake driver.

No socket and no root: :func:`kanal.daemon.routes.route` is called as the server
calls it; the HTTP side and the error boundary are covered end to end in
tests/e2e (test_bad_input_api, test_api_robustness).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kanal.daemon.events import EventBus
from kanal.daemon.resolvers import NetnsSandboxes
from kanal.daemon.routes import Reply, route
from kanal.errors import Conflict, DecodeError, InvalidConfig, NotFound
from tests.unit.engine.test_controller import Engine


@dataclass
class Api:
    """What the routes read of the server."""

    controller: Any
    sandboxes: Any
    manager: Any = None
    events: EventBus = field(default_factory=EventBus)


@pytest.fixture
def api(tmp_path: Path) -> Api:
    netns = tmp_path / "netns"
    netns.mkdir()
    (netns / "ns1").touch()
    return Api(Engine(tmp_path).ctrl, NetnsSandboxes(str(netns)))


def call(api: Api, method: str, path: str, body: Any = None, query: str = "") -> Any:
    q: dict[str, list[str]] = {}
    if query:
        k, _, v = query.partition("=")
        q[k] = [v]
    return route(api, method, path, q, body)  # type: ignore[arg-type]


def test_network_lifecycle_through_the_table(api: Api) -> None:
    events = api.events.subscribe()
    created = call(api, "POST", "/v1.44/networks/create", {"Name": "n1", "Driver": "fake"})
    assert isinstance(created, Reply) and created.status == 201
    net_id = created.body["Id"]
    assert events.get_nowait()["Action"] == "create"
    [listed] = call(api, "GET", "/networks", query='filters={"name": ["n1"]}')
    assert listed["Id"] == net_id and listed["Driver"] == "fake"
    assert call(api, "GET", "/networks", query='filters={"name": ["zz"]}') == []
    assert call(api, "GET", f"/networks/{net_id[:10]}/")["Name"] == "n1"
    body = {"Container": "ns1", "EndpointConfig": {"Aliases": ["web"]}}
    assert call(api, "POST", "/networks/n1/connect", body) is None
    [ep] = call(api, "GET", "/endpoints")
    assert ep["Network"] == "n1" and ep["Name"] == "ns1" and ep["Aliases"] == ["web"]
    with pytest.raises(Conflict):
        call(api, "DELETE", "/networks/n1")
    assert call(api, "POST", "/networks/n1/disconnect", {"Container": "ns1"}) is None
    # -f: a sandbox that is gone is still disconnected (here: never connected).
    with pytest.raises(NotFound, match="not connected"):
        call(api, "POST", "/networks/n1/disconnect", {"Container": "gone", "Force": True})
    assert call(api, "DELETE", "/networks/n1") == Reply(204)
    assert call(api, "GET", "/networks") == []


def test_bad_requests_are_refused_before_anything_is_done(api: Api) -> None:
    bodies: list[Any] = [None, [], {"Driver": "fake"}, {"Name": "x", "EnableIPv6": "yes"}]
    for body in bodies:
        with pytest.raises(InvalidConfig):
            call(api, "POST", "/networks/create", body)
    call(api, "POST", "/networks/create", {"Name": "n1", "Driver": "fake"})
    bad_connects: list[Any] = [
        {"EndpointConfig": {}},
        {"Container": "ns1", "EndpointConfig": []},
        {"Container": "ns1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "300.1.1.1"}}},
        {"Container": "ns1", "EndpointConfig": {"Aliases": "web"}},
    ]
    for body in bad_connects:
        with pytest.raises(InvalidConfig):
            call(api, "POST", "/networks/n1/connect", body)
    with pytest.raises(InvalidConfig):
        call(api, "GET", "/networks", query='filters={"nosuch": ["x"]}')
    with pytest.raises(DecodeError):
        call(api, "GET", "/networks/%ff")
    assert call(api, "GET", "/endpoints") == []


def test_unknown_routes_and_the_sandbox_routes(api: Api) -> None:
    assert call(api, "DELETE", "/_ping") == Reply(200, b"OK")  # any method, plain text
    with pytest.raises(NotFound, match=r"page not found: POST /networks$"):
        call(api, "POST", "/networks")
    with pytest.raises(NotFound, match=r"page not found: GET /sandboxes$"):
        call(api, "GET", "/v1.44/sandboxes")  # no sandboxes in this daemon
    assert call(api, "GET", "/nodes") == []  # a lone kanald
    assert call(api, "GET", "/system/check") == {"Problems": []}
    # The table's order: "create" is a route of its own only for POST.
    with pytest.raises(NotFound, match="network create not found"):
        call(api, "GET", "/networks/create")


def test_docker_engine_routes_without_sandboxes(api: Api) -> None:
    """docker's system endpoints, its version prefixes, and what kanal does not have."""
    from kanal.errors import NotSupported

    v = call(api, "GET", "/v1.47/version")
    assert v["ApiVersion"] == "1.47" and v["MinAPIVersion"] == "1.24" and v["Os"] == "linux"
    info = call(api, "GET", "/v1.41/info")
    assert (
        info["Containers"] == 0 and info["Images"] == 0 and "bridge" in info["Plugins"]["Network"]
    )
    assert call(api, "GET", "/v1.24/containers/json") == []  # no sandboxes: an empty list
    with pytest.raises(
        InvalidConfig, match="client version 1.48 is too new. Maximum supported API version is 1.47"
    ):
        call(api, "GET", "/v1.48/version")
    with pytest.raises(InvalidConfig, match="client version 1.12 is too old"):
        call(api, "GET", "/v1.12/networks")
    for method, path, what in (
        ("POST", "/v1.47/containers/create", "docker run"),
        ("GET", "/images/json", "images not supported by kanal"),
        ("GET", "/v1.47/volumes", "volumes not supported by kanal"),
        ("POST", "/build", "building images not supported by kanal"),
        ("GET", "/containers/c1/json", "not supported by kanal"),  # no sandboxes here
    ):
        with pytest.raises(NotSupported, match=what) as e:
            call(api, method, path)
        assert e.value.http_status == 501
