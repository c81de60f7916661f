"""The loopback plugin in-process through the dispatcher, in a namespace made here."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from kanal.plugins.loopback import PLUGIN
from kanal.skel.dispatcher import Dispatcher
from kanal.spec.versions import ALL_VERSIONS
from tests.helpers import ip_json


def call(
    cmd: str, netns: str, version: str, extra: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any] | None]:
    env = {
        "CNI_COMMAND": cmd,
        "CNI_CONTAINERID": "lo1",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/nonexistent",
    }
    conf = {"cniVersion": version, "name": "lo", "type": "loopback", **(extra or {})}
    out = io.StringIO()
    code = Dispatcher(env, io.BytesIO(json.dumps(conf).encode()), out, io.StringIO()).run(PLUGIN)
    return code, (json.loads(out.getvalue()) if out.getvalue() else None)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_loopback_add_check_del(make_netns, version: str) -> None:
    ns = make_netns("ktl")
    path = f"/run/netns/{ns}"
    # Start with lo down so ADD has something to do.
    from tests.helpers import nsexec

    nsexec(ns, "ip", "link", "set", "lo", "down")
    code, res = call("ADD", path, version)
    assert code == 0, res
    assert res is not None and res["cniVersion"] == version
    if version >= "0.3.0":
        assert res["interfaces"] == [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": path}]
        assert {ip["address"] for ip in res["ips"]} == {"127.0.0.1/8", "::1/128"}
    else:
        assert res["ip4"]["ip"] == "127.0.0.1/8"
    lo = ip_json(ns, "link", "show", "lo")[0]
    assert "UP" in lo["flags"]
    if version >= "0.4.0":
        assert call("CHECK", path, version, {"prevResult": res})[0] == 0
    assert call("DEL", path, version)[0] == 0
    assert "UP" not in ip_json(ns, "link", "show", "lo")[0]["flags"]
    if version >= "0.4.0":
        code, err = call("CHECK", path, version, {"prevResult": res})
        assert code == 1 and err is not None and "down" in err["msg"]


def test_loopback_del_is_idempotent_without_netns() -> None:
    assert call("DEL", "/run/netns/kanal-gone-12345", "1.0.0")[0] == 0
    assert call("DEL", "", "1.0.0")[0] == 0


def test_loopback_add_on_missing_netns_fails() -> None:
    code, err = call("ADD", "/run/netns/kanal-gone-12345", "1.0.0")
    assert code == 1 and err is not None and "failed to open netns" in err["msg"]
