"""``kanal lab``: multi-host labs with fault injection on one machine (kanal.lab).

::

    kanal lab up NAME [--hosts N] [--etcd M] [--etcd-tls] [--underlay-mtu BYTES] [--ovs] ...
    kanal lab exec NAME MEMBER -- CMD...        # MEMBER: h1.. (hosts), e1.. (etcd), ul
    kanal lab ls [NAME] [--format json] [-q]
    kanal lab down NAME...
    kanal lab fault NAME netem MEMBER[,...]|all [--delay MS] [--jitter MS] [--loss %]
                                               [--duplicate %] [--reorder %] [--clear]
    kanal lab fault NAME partition GROUP [GROUP...]    # GROUP: h1,h2,e1
    kanal lab fault NAME heal | clear
    kanal lab fault NAME kill|freeze|thaw|restart|start MEMBER...

Labs live under ``--lab-dir`` (or ``$KANAL_LAB_DIR``, default /run/kanal-lab).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

__all__ = ["register"]


def _lab(args: argparse.Namespace, name: str) -> Any:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.lab import Lab

    return Lab.load(name, args.lab_dir)


def cmd_up(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.lab import Lab, LabSpec

    spec = LabSpec(
        args.name,
        hosts=args.hosts,
        etcd=args.etcd,
        underlay_mtu=args.underlay_mtu,
        ovs=args.ovs,
        node_ttl=args.node_ttl,
        grace=args.cluster_grace,
        resync=args.cluster_resync,
        etcd_heartbeat_ms=args.etcd_heartbeat,
        etcd_election_ms=args.etcd_election,
        log_level=args.log_level,
        kanald_args=args.kanald_arg,
        tls=args.etcd_tls,
    )
    spec.check()

    def say(msg: str) -> None:
        sys.stderr.write(f"kanal lab {args.name}: {msg}\n")
        sys.stderr.flush()

    lab = Lab.up(spec, args.lab_dir, progress=say)
    _print_reach(lab)
    return 0


def _print_reach(lab: Any) -> None:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import render_table

    st = lab.status()
    store = f" (cluster store {st['ClusterStore']})" if st["ClusterStore"] else ""
    print(f"lab {lab.name} is up: {st['Hosts']} hosts, {st['Etcd']} etcd members{store}")
    if st["Tls"]:
        print(f"etcd over TLS: client certificates, CA and etcd users' passwords in {st['Pki']}")
    rows = [["MEMBER", "ADDRESS", "NETNS", "KANALD API"]]
    for m in st["Members"]:
        rows.append([m["Member"], m["Addr"], m["Netns"], m.get("Api", "-")])
    print(render_table(rows))
    h = "h2" if st["Hosts"] > 1 else "h1"
    first = st["Members"][0]
    print(
        "\nReach a host (kanal there talks to that host's kanald):\n"
        f"  kanal lab exec {lab.name} {h} -- kanal node ls\n"
        f"  kanal lab exec {lab.name} {h} -- bash       # a shell on {h}\n"
        "By hand, without kanal lab:\n"
        f"  nsenter --net=/run/netns/{first['Netns']} env KANAL_HOST={first.get('Api', '')} "
        "kanal ps\n"
        f"Faults:  kanal lab fault {lab.name} --help\n"
        f"Remove:  kanal lab down {lab.name}"
    )


def cmd_exec(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        # lazy: a kanal command loads only what it runs (the CLI starts for every call)
        from kanal.errors import InvalidConfig

        raise InvalidConfig("kanal lab exec: no command (kanal lab exec NAME MEMBER -- CMD...)")
    lab = _lab(args, args.name)
    argv = lab.exec_argv(args.member, cmd)
    env = {**os.environ, **lab.env(args.member)}
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)  # noqa: S606 (an argument list, no shell)
    return 127  # not reached


def cmd_ls(args: argparse.Namespace) -> int:
    import json

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import render_table
    from kanal.lab import Lab
    from kanal.lab.record import lab_root

    if args.name:
        st = _lab(args, args.name).status()
        if args.format == "json":
            print(json.dumps(st, indent=2))
            return 0
        print(f"lab {st['Name']} ({st['State']}), {st['Dir']}")
        if st["ClusterStore"]:
            tls = f" (TLS, certificates in {st['Pki']})" if st["Tls"] else " (plain)"
            print(f"cluster store {st['ClusterStore']}{tls}")
        rows = [["MEMBER", "ADDRESS", "PROCESSES", "SWITCH", "NETEM", "NETNS"]]
        for m in st["Members"]:
            procs = ", ".join(f"{k} {v}" for k, v in sorted(m["Processes"].items())) or "-"
            rows.append(
                [m["Member"], m["Addr"], procs, m["Switch"], m.get("Netem", "-"), m["Netns"]]
            )
        print(render_table(rows))
        return 0
    names = Lab.names(args.lab_dir)
    if args.quiet:
        for n in names:
            print(n)
        return 0
    out = []
    rows = [["NAME", "HOSTS", "ETCD", "TLS", "STATE", "RUNNING", "FAULTS", "DIR"]]
    for n in names:
        try:
            st = _lab(args, n).status()
        except Exception as e:  # one bad record must not hide the others
            rows.append([n, "?", "?", "?", f"unreadable: {e}", "", "", ""])
            continue
        out.append(st)
        running = sum(1 for m in st["Members"] for v in m["Processes"].values() if v != "stopped")
        total = sum(len(m["Processes"]) for m in st["Members"])
        faults = []
        if st["Partition"]:
            faults.append("partition " + " | ".join(",".join(g) for g in st["Partition"]))
        netem = [m["Member"] for m in st["Members"] if "Netem" in m]
        if netem:
            faults.append("netem " + ",".join(netem))
        frozen = [m["Member"] for m in st["Members"] if "frozen" in m["Processes"].values()]
        if frozen:
            faults.append("frozen " + ",".join(frozen))
        rows.append(
            [n, str(st["Hosts"]), str(st["Etcd"]), "yes" if st["Tls"] else "no", st["State"],
             f"{running}/{total}",
             "; ".join(faults) or "-", st["Dir"]]
        )  # fmt: skip
    if args.format == "json":
        print(json.dumps(out, indent=2))
    elif names or not args.quiet:
        print(render_table(rows))
        if not names:
            sys.stderr.write(f"no labs in {lab_root(args.lab_dir)}\n")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import KanalError

    failed = False
    for name in args.names:
        try:
            problems = _lab(args, name).down()
        except KanalError as e:
            sys.stderr.write(f"kanal: {e}\n")
            failed = True
            continue
        if problems:
            sys.stderr.write(f"kanal: lab {name}: left behind: {'; '.join(problems)}\n")
            failed = True
        else:
            print(name)
    return 1 if failed else 0


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(us|ms|s)?\Z")
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)%?\Z")


def _ms(text: str) -> float:
    """``100ms``, ``0.1s``, ``100`` (ms) → milliseconds."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: want e.g. 100ms or 0.1s")
    v = float(m.group(1))
    return {"us": v / 1000, "s": v * 1000}.get(m.group(2) or "ms", v)


def _pct(text: str) -> float:
    m = _PERCENT.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r}: want e.g. 1%")
    return float(m.group(1))


def _members(lab: Any, spec: str) -> list[str]:
    if spec == "all":
        return list(lab.rec.members)
    return [m for m in spec.split(",") if m]


def cmd_fault(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import InvalidConfig
    from kanal.lab import Impairment

    lab = _lab(args, args.name)
    what = args.fault
    if what == "netem":
        members = _members(lab, args.members)
        if args.clear:
            lab.netem(members, None)
            print(f"netem cleared on {','.join(members)}")
            return 0
        imp = Impairment(args.delay, args.jitter, args.loss, args.duplicate, args.reorder).check()
        if imp == Impairment():
            raise InvalidConfig(
                "netem: give --delay, --loss, --duplicate or --reorder (or --clear)"
            )
        lab.netem(members, imp)
        print(f"netem {imp} on {','.join(members)} (both directions of each link)")
    elif what == "partition":
        groups = [[m for m in g.split(",") if m] for g in args.groups]
        lab.partition(groups)
        print("partition: " + " | ".join(",".join(g) for g in lab.rec.partition) + " | the rest")
    elif what == "heal":
        lab.heal()
        print("healed: every member on one switch")
    elif what == "clear":
        lab.clear()
        print("cleared: no impairment, no partition, nothing frozen")
    else:
        for m in args.targets:
            if what == "kill":
                was = lab.kill(m)
                print(f"{m}: killed" if was else f"{m}: was not running")
            elif what == "freeze":
                lab.freeze(m)
                print(f"{m}: frozen (SIGSTOP)")
            elif what == "thaw":
                lab.thaw(m)
                print(f"{m}: thawed (SIGCONT)")
            elif what == "restart":
                lab.restart(m)
                print(f"{m}: restarted")
            elif what == "start":
                lab.start(m)
                print(f"{m}: started")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("lab", help="multi-host labs with fault injection on one machine")
    p.add_argument(
        "--lab-dir", default=None, help="where labs are kept ($KANAL_LAB_DIR, /run/kanal-lab)"
    )
    sub = p.add_subparsers(title="commands", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(handler=None, _parser=p)

    up = sub.add_parser("up", help="make a lab: hosts with kanald, an etcd cluster, an underlay")
    up.add_argument("name", metavar="NAME")
    up.add_argument("--hosts", type=int, default=3, help="hosts, each with its own kanald (3)")
    up.add_argument("--etcd", type=int, default=3, help="etcd members (3; 0: no cluster)")
    up.add_argument(
        "--etcd-tls",
        action="store_true",
        help="etcd over TLS with client certificates and users (a PKI of the lab's own)",
    )
    up.add_argument("--underlay-mtu", type=int, default=1500, metavar="BYTES")
    up.add_argument("--ovs", action="store_true", help="Open vSwitch on every host (userspace)")
    up.add_argument("--node-ttl", type=int, default=5, help="kanald --node-ttl (5 s)")
    up.add_argument("--cluster-grace", type=float, default=15.0, help="kanald's (15 s)")
    up.add_argument("--cluster-resync", type=float, default=30.0, help="kanald's (30 s)")
    up.add_argument("--etcd-heartbeat", type=int, default=100, metavar="MS")
    up.add_argument("--etcd-election", type=int, default=1000, metavar="MS")
    up.add_argument("--log-level", default="info", help="kanald's")
    up.add_argument(
        "--kanald-arg", action="append", default=[], metavar="ARG", help="more kanald options"
    )
    up.set_defaults(handler=cmd_up)

    ex = sub.add_parser("exec", help="run a command on a lab host (kanal there talks to it)")
    ex.add_argument("name", metavar="NAME")
    ex.add_argument("member", metavar="MEMBER", help="h1.. (hosts), e1.. (etcd), ul (underlay)")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    ex.set_defaults(handler=cmd_exec)

    ls = sub.add_parser("ls", aliases=["list"], help="list labs, or one lab's members")
    ls.add_argument("name", nargs="?", metavar="NAME")
    ls.add_argument("--format", default="", help="table (default) or json")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.set_defaults(handler=cmd_ls)

    dn = sub.add_parser("down", aliases=["rm"], help="remove labs (leaves nothing behind)")
    dn.add_argument("names", nargs="+", metavar="NAME")
    dn.set_defaults(handler=cmd_down)

    f = sub.add_parser("fault", help="inject or undo faults")
    f.add_argument("name", metavar="NAME")
    fs = f.add_subparsers(title="faults", metavar="FAULT", parser_class=type(p), dest="fault")
    f.set_defaults(handler=None, _parser=f)
    ne = fs.add_parser("netem", help="delay/jitter/loss/duplicate/reorder on underlay links")
    ne.add_argument("members", metavar="MEMBER[,MEMBER...]|all")
    ne.add_argument("--delay", type=_ms, default=0.0, metavar="MS")
    ne.add_argument("--jitter", type=_ms, default=0.0, metavar="MS")
    ne.add_argument("--loss", type=_pct, default=0.0, metavar="PCT")
    ne.add_argument("--duplicate", type=_pct, default=0.0, metavar="PCT")
    ne.add_argument("--reorder", type=_pct, default=0.0, metavar="PCT")
    ne.add_argument("--clear", action="store_true", help="restore the links")
    ne.set_defaults(handler=cmd_fault)
    pa = fs.add_parser("partition", help="cut the underlay into groups (h1,h2 e1 ...)")
    pa.add_argument("groups", nargs="+", metavar="GROUP")
    pa.set_defaults(handler=cmd_fault)
    for name, help_ in (
        ("heal", "undo the partition"),
        ("clear", "undo every fault (netem, partition, frozen processes)"),
    ):
        fs.add_parser(name, help=help_).set_defaults(handler=cmd_fault)
    for name, help_ in (
        ("kill", "SIGKILL a host's kanald or an etcd member"),
        ("freeze", "SIGSTOP a host's kanald or an etcd member"),
        ("thaw", "SIGCONT what freeze stopped"),
        ("restart", "kill (if running) and start again"),
        ("start", "start what kill stopped"),
    ):
        k = fs.add_parser(name, help=help_)
        k.add_argument("targets", nargs="+", metavar="MEMBER")
        k.set_defaults(handler=cmd_fault)
