"""Attach and detach one container, kanal's engine vs netavark 1.4 (podman's stack).

The same work on both sides: one container joins an existing bridge network with
one published TCP port and DNS on, then leaves. netavark is run as podman runs
it (``netavark setup|teardown NETNS`` with the options JSON on stdin, aardvark-dns
for DNS, its iptables firewall driver); a container stays attached so the bridge
and aardvark-dns stay up between samples, as netavark's fast case. kanal: the
controller's connect (address from the store, bridge + portmap through the CNI
plugins, result cached, endpoint stored) plus embedded DNS for the sandbox, then
DNS detach and disconnect — what kanald does for `kanal network connect`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import create_netns, delete_netns, unique  # noqa: E402

NETAVARK = "/usr/lib/podman/netavark"
AARDVARK = "/usr/lib/podman/aardvark-dns"


def _nv_options(cid: str, name: str, bridge: str, ip: str, port: int) -> dict[str, Any]:
    net_id = "ab" * 32
    return {
        "container_id": cid,
        "container_name": name,
        "networks": {"nvnet": {"interface_name": "eth0", "static_ips": [ip], "aliases": [name]}},
        "network_info": {
            "nvnet": {
                "name": "nvnet",
                "id": net_id,
                "driver": "bridge",
                "network_interface": bridge,
                "subnets": [{"subnet": "10.212.0.0/16", "gateway": "10.212.0.1"}],
                "ipv6_enabled": False,
                "internal": False,
                "dns_enabled": True,
                "ipam_options": {"driver": "host-local"},
            }
        },
        "port_mappings": [
            {"host_ip": "", "container_port": 80, "host_port": port, "range": 1, "protocol": "tcp"}
        ],
    }


def _nv(cfg: Path, cmd: str, netns: str, opts: dict[str, Any]) -> float:
    t = time.perf_counter()
    p = subprocess.run(
        [NETAVARK, "--config", str(cfg), "-a", AARDVARK, cmd, netns],
        input=json.dumps(opts).encode(),
        capture_output=True,
    )
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"netavark {cmd} failed: {p.stderr!r}")
    return dt


def run(samples: int, report: Callable[[str], None]) -> dict[str, object]:
    if not os.path.exists(NETAVARK):
        report("netavark is not installed (apt-get install netavark aardvark-dns): skipped")
        return {}
    from kanal.daemon.cniruntime import inprocess_cni
    from kanal.engine.context import EngineContext
    from kanal.engine.controller import Controller, NetworkSpec, SandboxRef
    from kanal.engine.dns import DnsService
    from kanal.engine.model import PortBinding, new_id
    from kanal.netlink import reaper
    from kanal.store import open_store

    reaper.enable()
    tmp = Path(tempfile.mkdtemp(prefix="kanal-nv-bench-"))
    made: list[str] = []
    res: dict[str, object] = {}
    try:
        # --- netavark -------------------------------------------------------------
        cfg = tmp / "nv"
        cfg.mkdir()
        bridge = unique("knv", 15)
        keep = create_netns(unique("knk", 30))
        made.append(keep)
        keep_opts = _nv_options(secrets.token_hex(32), "keeper", bridge, "10.212.0.2", 40000)
        _nv(cfg, "setup", f"/run/netns/{keep}", keep_opts)
        nv_up, nv_down = [], []
        for k in range(samples):
            ns = create_netns(unique("kns", 30))
            try:
                opts = _nv_options(
                    secrets.token_hex(32), f"c{k}", bridge, f"10.212.1.{k + 2}", 41000 + k
                )
                nv_up.append(_nv(cfg, "setup", f"/run/netns/{ns}", opts))
                nv_down.append(_nv(cfg, "teardown", f"/run/netns/{ns}", opts))
            finally:
                delete_netns(ns)
        _nv(cfg, "teardown", f"/run/netns/{keep}", keep_opts)

        # --- kanal ----------------------------------------------------------------
        ctrl = Controller(
            open_store(f"sqlite://{tmp}/state.db"),
            EngineContext(
                cni_runtime=inprocess_cni,
                state_dir=str(tmp / "state"),
                cni_conf_dir=str(tmp / "none"),
            ),
            default_bridge=unique("kkb", 15),
            default_subnet="10.213.0.0/24",
        )
        ctrl.ensure_builtin()
        ctrl.create_network(NetworkSpec("kbench", ipam=[]))
        names: dict[str, list[str]] = {}
        dns = DnsService(lambda sb, q: names.get(q))
        dns.start()
        keeper_ns = create_netns(unique("kkk", 30))
        made.append(keeper_ns)
        ctrl.connect("kbench", SandboxRef(new_id(), "keeper", f"/run/netns/{keeper_ns}"))
        k_up, k_down = [], []
        for k in range(samples):
            ns = create_netns(unique("kks", 30))
            try:
                sb = SandboxRef(new_id(), f"c{k}", f"/run/netns/{ns}")
                t = time.perf_counter()
                ep = ctrl.connect("kbench", sb, ports=[PortBinding(80, "tcp", "", 42000 + k)])
                names[sb.name] = [ep.ipv4.split("/")[0]]
                dns.attach(sb.id, sb.netns, [])
                k_up.append(time.perf_counter() - t)
                t = time.perf_counter()
                dns.detach(sb.id)
                names.pop(sb.name, None)
                ctrl.disconnect("kbench", sb.id)
                k_down.append(time.perf_counter() - t)
            finally:
                delete_netns(ns)
        dns.stop()

        def p50(xs: list[float]) -> float:
            return statistics.median(xs) * 1000

        nv, ka = p50(nv_up) + p50(nv_down), p50(k_up) + p50(k_down)
        report(
            f"attach+detach with a published port and DNS: kanal {p50(k_up):.1f}+{p50(k_down):.1f}"
            f" ms, netavark {p50(nv_up):.1f}+{p50(nv_down):.1f} ms: ratio {ka / nv:.2f}"
            " (goal <= 0.3)"
        )
        res = {
            "kanal_attach_p50_ms": p50(k_up),
            "kanal_detach_p50_ms": p50(k_down),
            "netavark_setup_p50_ms": p50(nv_up),
            "netavark_teardown_p50_ms": p50(nv_down),
            "ratio": ka / nv,
        }
        return res
    finally:
        for ns in made:
            delete_netns(ns)
        shutil.rmtree(tmp, ignore_errors=True)
