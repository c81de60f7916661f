"""One "host" of the cluster test: runs inside a host namespace (``ip netns exec``).

It registers the node, runs an OverlayAgent and a GlobalIpam per attached network,
and obeys JSON commands, one per line on stdin, answering one JSON line each on
stdout: ``{"ok": true, ...}`` or ``{"ok": false, "error": "<kanal error class>",
"msg": "..."}``. Used only by tests/netns/test_cluster.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kanal.cluster.gipam import Allocation, GlobalIpam, PoolConfig
from kanal.cluster.member import ClusterMember, allocate_vni
from kanal.cluster.vxlan import OverlayLink, overlay_mtu
from kanal.errors import KanalError
from kanal.netlink.handle import Netlink


class Host:
    def __init__(self, args: argparse.Namespace) -> None:
        self.member = ClusterMember(
            args.store,
            args.name,
            args.addr,
            ttl=args.ttl,
            grace=args.grace,
            resync_interval=args.resync,
            timeout=args.timeout,
        )
        self.store = self.member.store
        self.agent = self.member.agent
        self.name = args.name
        self.addr = args.addr
        self.ipam: dict[str, GlobalIpam] = {}
        self.allocs: list[Allocation] = []
        self.lock = threading.Lock()
        self.watched: dict[str, Any] = {}

    def start(self) -> None:
        self.member.start()

    def do(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        if op == "attach":
            with Netlink() as nl:
                nl.ensure_bridge(cmd["bridge"], mtu=overlay_mtu(1500))
            link = OverlayLink(cmd["net"], cmd["vni"], cmd["bridge"], self.addr, overlay_mtu(1500))
            self.agent.attach(link)
            self.ipam[cmd["net"]] = self.member.pool(cmd["net"], PoolConfig(cmd["subnet"], 26))
            return {"device": link.name}
        if op == "alloc":
            return self.alloc(cmd)
        if op == "publish":
            name = cmd.get("name", "")
            rev = self.agent.publish(cmd["net"], cmd["id"], cmd["ip"], cmd["mac"], name=name)
            return {"rev": rev, "seen": self.agent.wait_seen(rev, 10.0)}
        if op == "wait_seen":
            return {"seen": self.agent.wait_seen(cmd["rev"], cmd["timeout"])}
        if op == "unpublish":
            return {"deleted": self.agent.unpublish(cmd["net"], cmd["id"])}
        if op == "names":
            return {"names": {r.name: r.ip for r in self.agent.endpoints(cmd["net"])}}
        if op == "entries":
            d = self.agent.programmed(cmd["net"])
            return {
                "fdb": sorted([f.mac, f.dst] for f in d.fdb),
                "neigh": sorted([n.ip, n.mac] for n in d.neigh),
            }
        if op == "health":
            return {"healthy": self.agent.healthy, "msg": str(self.agent.last_error or "")}
        if op == "held":
            pool = self.ipam[cmd["net"]]
            with self.lock:
                mine = [a for a in self.allocs if a.owner.startswith(cmd["net"] + ":")]
            return {"allocs": [[a.ip, pool.still_held(a)] for a in mine]}
        if op == "blocks":
            return {"blocks": self.ipam[cmd["net"]].blocks()}
        if op == "dump":
            return {"keys": [[e.key, e.value.decode()] for e in self.store.list(cmd["prefix"])]}
        if op == "vnis":
            with ThreadPoolExecutor(4) as ex:
                vnis = list(ex.map(lambda n: allocate_vni(self.store, n), cmd["nets"]))
            return {"vnis": dict(zip(cmd["nets"], vnis))}
        if op == "nodes":
            return {"nodes": [r.to_dict() for r in self.member.nodes()]}
        if op == "gc":
            return {"freed": self.agent.collect_garbage()}
        if op == "put_many":
            for i in range(int(cmd["n"])):
                self.store.put(f"{cmd['prefix']}{i:04d}", str(i).encode())
                time.sleep(float(cmd.get("pace", 0)))
            return {"revision": self.store.revision()}
        if op == "compact":
            rev = self.store.revision()
            self.store.call("/v3/kv/compaction", {"revision": str(rev), "physical": True})
            return {"revision": rev}
        if op == "watch_start":
            return self.watch_start(cmd["prefix"], int(cmd.get("from", 0)))
        if op == "watch_get":
            with self.lock:
                return dict(self.watched)
        raise KeyError(op)

    def watch_start(self, prefix: str, start: int) -> dict[str, Any]:
        """Watch ``prefix`` from ``start`` (0: from a fresh listing) in a thread, keeping
        every event and resync; returns the member the watch starts on."""
        if not start:
            start = self.store.snapshot(prefix)[1] + 1
        w: dict[str, Any] = {"events": [], "resyncs": [], "errors": 0}
        self.watched = w  # a later watch_start reports its own watch
        # The member the watch starts on: the leader, as EtcdStore.watch picks it.
        lead = self.store.leader_index()
        member = self.store.endpoints[self.store._preferred if lead is None else lead]

        def err(_e: Exception) -> None:
            with self.lock:
                w["errors"] += 1

        def run() -> None:
            for b in self.store.watch(prefix, start, on_error=err):
                with self.lock:
                    if b.resync is not None:
                        w["resyncs"].append([e.key for e in b.resync])
                    for e in b.events:
                        w["events"].append([e.type, e.key, e.mod_rev])

        threading.Thread(target=run, daemon=True).start()
        return {"member": list(member), "from": start}

    def alloc(self, cmd: dict[str, Any]) -> dict[str, Any]:
        pool = self.ipam[cmd["net"]]
        pace = float(cmd.get("pace", 0))
        n = int(cmd.get("n", 1))

        def one(i: int) -> tuple[str, str]:
            try:
                a = pool.allocate(f"{cmd['net']}:{cmd.get('owner', 'c')}-{i}")
            except KanalError as e:
                return "", f"{type(e).__name__}: {e}"
            with self.lock:
                self.allocs.append(a)
            time.sleep(pace)
            return a.ip, ""

        t0 = time.time()
        with ThreadPoolExecutor(int(cmd.get("threads", 1))) as ex:
            results = list(ex.map(one, range(n)))
        return {
            "ips": [ip for ip, _ in results if ip],
            "errors": [err for _, err in results if err],
            "t0": t0,
            "t1": time.time(),
        }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--addr", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--ttl", type=int, default=3)
    p.add_argument("--grace", type=float, default=2.0)
    p.add_argument("--resync", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()
    host = Host(args)
    host.start()
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            out: dict[str, Any] = {"ok": True, **host.do(cmd)}
        except KanalError as e:
            out = {"ok": False, "error": type(e).__name__, "msg": str(e)}
        print(json.dumps(out), flush=True)
    host.member.stop()


if __name__ == "__main__":
    main()
