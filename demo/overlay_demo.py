"""`make demo`, part 4: a 3-host overlay (seeds 001, 002 and 004's multi-host networks).

Three "hosts" (a kanal lab: namespaces on an underlay bridge, 192.0.2.1-3, and a
3-member etcd at 192.0.2.201-203) each run kanald with ``--cluster-store``; an
overlay network made on one host is seen by all, sandboxes on different hosts
talk by name over VXLAN, then host 3 dies and the others heal: its entries are
dropped after its lease, its addresses freed after the grace period. Everything
is removed at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.overlay_hosts import Hosts, available  # noqa: E402
from tests.helpers import nsexec  # noqa: E402
from tests.multihost import wait_for  # noqa: E402

from demo.engine_demo import echo, say  # noqa: E402


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("demo: needs root (it creates network namespaces)")
    why = available()
    if why:
        print(f"demo part 4 (overlay) skipped: {why}")
        return
    h = Hosts(Path(tempfile.mkdtemp(prefix="kanal-demo4-")))

    def kanal(i: int, *args: str, check: bool = True) -> str:
        return echo(f"[h{i}] $ kanal {shlex.join(args)}", h.kanal(i, *args, check=check))

    def sh(i: int, *cmd: str) -> str:
        return echo(f"[h{i}] $ {shlex.join(cmd)}", nsexec(h.ns[i], *cmd, check=False))

    try:
        say("Three hosts, an etcd member and kanald on each (--cluster-store, --advertise-addr)")
        h.setup()
        kanal(1, "node", "ls")

        say("1. An overlay network made on h1 is global: h2 and h3 see it")
        kanal(1, "network", "create", "-d", "overlay", "--subnet", "10.99.0.0/24", "web")
        kanal(3, "network", "ls")

        say("2. One sandbox per host; they reach each other by name across hosts")
        for i in (1, 2, 3):
            kanal(i, "run", "-d", "--name", f"app{i}", "--network", "web", "--", "sleep", "600")
        ip3 = h.ip_of(3, "app3", "web")
        wait_for(
            "app1 -> app3",
            lambda: h.kanal(
                1, "exec", "app1", "ping", "-c", "1", "-W", "1", ip3, check=False
            ).returncode
            == 0,
        )
        kanal(1, "exec", "app1", "ping", "-c", "2", "app3")
        kanal(2, "exec", "app2", "getent", "hosts", "app1")

        say("3. What kanal programmed on h1 from etcd: the VXLAN device's FDB and neighbours")
        dev = next(
            ln["ifname"]
            for ln in json.loads(nsexec(h.ns[1], "ip", "-j", "-d", "link", "show").stdout)
            if ln.get("linkinfo", {}).get("info_kind") == "vxlan"
        )
        sh(1, "ip", "-d", "link", "show", dev)
        sh(1, "bridge", "fdb", "show", "dev", dev)
        sh(1, "ip", "neigh", "show", "dev", dev)

        say("4. h3 dies (its kanald killed, its underlay link gone)")
        h.kill_kanald(3)
        nsexec(h.ns[3], "ip", "link", "del", "ul0")
        wait_for(
            "h1 forgets h3",
            lambda: "192.0.2.3"
            not in nsexec(h.ns[1], "bridge", "fdb", "show", "dev", dev).stdout.decode(),
            60,
        )
        print("after its lease expired, h1 holds no entry towards 192.0.2.3:")
        sh(1, "bridge", "fdb", "show", "dev", dev)
        wait_for(
            "h3 gone from the nodes",
            lambda: "h3" not in h.kanal(1, "node", "ls", "-q").stdout.split(),
            60,
        )
        kanal(1, "node", "ls")

        say("5. The others keep working: a new sandbox on h2, reached from h1 by name")
        kanal(2, "run", "-d", "--name", "app4", "--network", "web", "--", "sleep", "600")
        ip4 = h.ip_of(2, "app4", "web")
        wait_for(
            "app1 -> app4",
            lambda: h.kanal(
                1, "exec", "app1", "ping", "-c", "1", "-W", "1", ip4, check=False
            ).returncode
            == 0,
        )
        kanal(1, "exec", "app1", "ping", "-c", "2", "app4")

        say("6. Clean up")
        kanal(1, "rm", "-f", "app1")
        kanal(2, "rm", "-f", "app2", "app4")
    finally:
        h.close()
    print("\ndemo part 4 done: every host namespace is gone.")


if __name__ == "__main__":
    main()
