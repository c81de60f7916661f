"""The ``tuning`` CNI plugin (chained): sysctls and link attributes in the container.

As the reference: netns-scoped ``net.*`` sysctls (``IFNAME`` in a key becomes the
interface name; an allowlist of regexes in /etc/cni/tuning/allowlist.conf, when it
exists, limits them), ``mac``/``mtu``/``promisc``/``allmulti``/``txQLen`` with
their original values saved to ``<dataDir>/<cid>_<ifname>.json`` and restored on
DEL. kanal also removes the backup when the netns is already gone and
garbage-collects backups of attachments that are no longer valid (GC).
The allowlist path can be changed with ``KANAL_TUNING_ALLOWLIST`` in the plugin's
environment.
"""

from __future__ import annotations

import os

from kanal import _json
from kanal._dataclass import dataclass, field
from kanal.errors import Internal, InvalidConfig, KanalError
from kanal.netlink.ns import NetnsNotFound
from kanal.plugins import _conf as c
from kanal.plugins._iface import in_container
from kanal.skel.cmdargs import PluginFuncs
from kanal.spec import gotypes
from kanal.spec.gojson import BOOL, INT, STRING, Map, Ptr, Struct, decode_lenient
from kanal.spec.versions import ALL_VERSIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from kanal.netlink.handle import Netlink
    from kanal.skel.cmdargs import CmdArgs
    from kanal.spec.types import Result

__all__ = ["PLUGIN", "main"]

DEFAULT_DATA_DIR = "/run/cni/tuning"
DEFAULT_ALLOWLIST = "/etc/cni/tuning/allowlist.conf"
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200


@dataclass
class TuningConf:
    data_dir: str = DEFAULT_DATA_DIR
    sysctl: dict[str, str] = field(default_factory=dict)
    mac: str = ""
    promisc: bool = False
    mtu: int = 0
    txqlen: int | None = None
    allmulti: bool | None = None
    conf: dict[str, Any] = field(default_factory=dict)  # as decoded

    @property
    def touches_link(self) -> bool:
        return bool(
            self.mac
            or self.mtu
            or self.promisc
            or self.allmulti is not None
            or self.txqlen is not None
        )


_TUNING_ARGS = Struct(
    "IPAMArgs",
    [
        ("sysctl", Ptr(Map(STRING))),
        ("mac", Ptr(STRING)),
        ("promisc", Ptr(BOOL)),
        ("mtu", Ptr(INT)),
        ("allmulti", Ptr(BOOL)),
        ("txQLen", Ptr(INT)),
    ],
)
NETCONF = gotypes.NETCONF.extend(
    "TuningConf",
    [
        ("dataDir", STRING),
        ("sysctl", Map(STRING)),
        ("mac", STRING),
        ("promisc", BOOL),
        ("mtu", INT),
        ("txQLen", Ptr(INT)),
        ("allmulti", Ptr(BOOL)),
        ("runtimeConfig", c.MAC_ONLY),
        ("args", Ptr(Struct("", [("cni", Ptr(_TUNING_ARGS))], pkg=""))),
    ],
)


def _no_duplicate_sysctls(args: CmdArgs) -> None:
    """Go decodes ``sysctl`` a second time with a key type that refuses a key seen
    before (a repeated key, also across repeated ``sysctl`` members)."""
    seen: set[str] = set()

    def key(k: str) -> None:
        if k in seen:
            raise ValueError("duplicated sysctl keys are not allowed")
        seen.add(k)

    check = Struct("sysctlCheck", [("sysctl", Map(STRING, key=key))])
    _, err = decode_lenient(check, args.conf)
    if err == "duplicated sysctl keys are not allowed":  # (other errors: load_conf's)
        raise InvalidConfig(err)


def load_conf(args: CmdArgs, *, lenient: bool = False) -> TuningConf:
    """The config (Go's parseConf), checked; ``lenient`` (DEL): no checks."""
    from kanal.spec.args import load_args

    conf = c.load(NETCONF, args, lenient=lenient)
    if not lenient:
        _no_duplicate_sysctls(args)
    t = TuningConf(data_dir=args.abspath(conf["dataDir"] or DEFAULT_DATA_DIR), conf=conf)
    if lenient:
        return t
    t.sysctl = dict(conf["sysctl"] or {})
    t.mac = conf["mac"]
    t.promisc = conf["promisc"]
    t.mtu = conf["mtu"]
    t.txqlen = conf["txQLen"]
    t.allmulti = conf["allmulti"]
    if args.args:
        env_mac = load_args(args.args, ("MAC",)).get("MAC", "")
        if env_mac:
            t.mac = env_mac
    if conf["runtimeConfig"]["mac"]:
        t.mac = conf["runtimeConfig"]["mac"]
    a = (conf["args"] or {}).get("cni")
    if a is not None:
        if a["sysctl"] is not None:
            t.sysctl.update(a["sysctl"])
        if a["mac"] is not None:
            t.mac = a["mac"]
        if a["promisc"] is not None:
            t.promisc = a["promisc"]
        if a["mtu"] is not None:
            t.mtu = a["mtu"]
        if a["allmulti"] is not None:
            t.allmulti = a["allmulti"]
        if a["txQLen"] is not None:
            t.txqlen = a["txQLen"]
    if t.mac:
        t.mac = c.valid_mac(t.mac)
    if t.mtu < 0:
        raise InvalidConfig(f"invalid MTU {t.mtu}")
    if t.txqlen is not None and t.txqlen < 0:
        raise InvalidConfig(f"invalid txQLen {t.txqlen}")
    return t


def sysctl_path(key: str, ifname: str) -> str:
    """Go's getSysctlFilename: dots become slashes, IFNAME the interface, under /proc/sys/net."""
    rel = key.replace(".", "/").replace("IFNAME", ifname, 1)
    path = os.path.normpath(os.path.join("/proc/sys", rel))
    if not path.startswith("/proc/sys/net/"):
        raise InvalidConfig(f"invalid net sysctl key: {rel!r}")
    return path


def _check_allowlist(t: TuningConf, args: CmdArgs) -> None:
    path = args.abspath(args.env.get("KANAL_TUNING_ALLOWLIST") or DEFAULT_ALLOWLIST)
    try:
        with open(path) as f:
            allowed = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return
    import re  # only with an allowlist: its import costs a plugin exec ~4 ms

    for key in t.sysctl:
        try:
            ok = any(re.search(rx, key) for rx in allowed)
        except re.error as e:
            raise InvalidConfig(f"invalid regex in {path}", str(e)) from e
        if not ok:
            raise InvalidConfig(
                f"Sysctl {key} is not allowed. Only the following sysctls "
                f"are allowed: {allowed}"
            )


def _backup_path(t: TuningConf, args: CmdArgs) -> str:
    return os.path.join(t.data_dir, f"{args.container_id}_{args.ifname}.json")


def _write_backup(path: str, data: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_json.dumps(data, indent=1))
    os.replace(tmp, path)


def cmd_add(args: CmdArgs) -> Result:
    t = load_conf(args)
    for key in t.sysctl:
        sysctl_path(key, args.ifname)
    _check_allowlist(t, args)
    result = c.prev_result(t.conf, args)
    if result is None:
        raise InvalidConfig("Required prevResult missing")
    backup = _backup_path(t, args)

    def apply(nl: Netlink) -> None:
        # All or nothing: a missing key is refused before any sysctl is written, and
        # a later failure puts back what was changed.
        for key in t.sysctl:
            if not os.path.exists(sysctl_path(key, args.ifname)):
                raise InvalidConfig(f"invalid net sysctl key: {key!r} does not exist")
        old: dict[str, str] = {}
        saved: dict[str, Any] | None = None
        try:
            for key, value in t.sysctl.items():
                path = sysctl_path(key, args.ifname)
                try:
                    with open(path) as f:
                        before = f.read().rstrip("\n")
                    with open(path, "w") as f:
                        f.write(value)
                except OSError as e:
                    raise Internal(f"failed to set sysctl {key}", str(e)) from e
                old.setdefault(path, before)
            if not t.touches_link:
                return
            link = nl.get_link(args.ifname)
            saved = {}
            if t.mac:
                saved["mac"] = link.mac
            if t.promisc:
                saved["promisc"] = bool(link.promiscuity)
            if t.mtu:
                saved["mtu"] = link.mtu
            if t.allmulti is not None:
                saved["allmulti"] = bool(link.flags & IFF_ALLMULTI)
            if t.txqlen is not None:
                saved["txQLen"] = link.txqlen
            _write_backup(backup, saved)
            if t.mac:
                nl.set_link(link.index, address=t.mac)
            if t.promisc:
                nl.set_link(link.index, flags=IFF_PROMISC, change=IFF_PROMISC)
            if t.mtu:
                nl.set_link(link.index, mtu=t.mtu)
            if t.allmulti is not None:
                nl.set_link(
                    link.index, flags=IFF_ALLMULTI if t.allmulti else 0, change=IFF_ALLMULTI
                )
            if t.txqlen is not None:
                nl.set_link(link.index, txqlen=t.txqlen)
        except BaseException:
            _undo(nl, args.ifname, old, saved, backup)
            raise

    try:
        in_container(args.netns_path, apply)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
    if t.mac:
        for iface in result.interfaces:
            if iface.name == args.ifname:
                iface.mac = t.mac
    result.cni_version = args.cni_version
    return result


def _restore(nl: Netlink, ifname: str, saved: dict[str, Any]) -> None:
    link = nl.find_link(ifname)
    if link is None:
        return
    if saved.get("mtu"):
        nl.set_link(link.index, mtu=int(saved["mtu"]))
    if saved.get("mac"):
        nl.set_link(link.index, address=str(saved["mac"]))
    if saved.get("promisc") is not None:
        nl.set_link(link.index, flags=IFF_PROMISC if saved["promisc"] else 0, change=IFF_PROMISC)
    if saved.get("allmulti") is not None:
        nl.set_link(link.index, flags=IFF_ALLMULTI if saved["allmulti"] else 0, change=IFF_ALLMULTI)
    if saved.get("txQLen") is not None:
        nl.set_link(link.index, txqlen=int(saved["txQLen"]))


def _undo(
    nl: Netlink, ifname: str, old: dict[str, str], saved: dict[str, Any] | None, backup: str
) -> None:
    """A failed ADD: the sysctls and link attributes it changed go back, its backup goes."""
    for path, value in old.items():
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError:
            pass
    if saved is not None:
        try:
            _restore(nl, ifname, saved)
        except KanalError:
            pass
        _unlink_quiet(backup)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # gone already (or a name no ADD could have written)


def cmd_del(args: CmdArgs) -> None:
    """Restore the saved attributes; the backup goes even when the netns is gone."""
    t = load_conf(args, lenient=True)
    backup = _backup_path(t, args)
    try:
        with open(backup) as f:
            saved = _json.loads(f.read())
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and args.netns:
        try:
            in_container(args.netns_path, lambda nl: _restore(nl, args.ifname, saved))
        except KanalError:
            pass  # as Go: DEL never fails on restoring in-namespace state
    _unlink_quiet(backup)


def cmd_check(args: CmdArgs) -> None:
    t = load_conf(args)
    if t.conf["prevResult"] is None:
        raise InvalidConfig("Required prevResult missing")

    def check(nl: Netlink) -> None:
        for key, want in t.sysctl.items():
            path = sysctl_path(key, args.ifname)
            with open(path) as f:
                cur = f.read().rstrip("\n")
            if cur != want:
                raise Internal(
                    f"Error: Tuning configured value of {path} is {want}, "
                    f"current value is {cur}"
                )
        link = nl.find_link(args.ifname)
        if link is None:
            raise Internal(f"Cannot find container link {args.ifname}")
        if t.mac and t.mac != link.mac:
            raise Internal(
                f"Error: Tuning configured Ethernet of {args.ifname} is {t.mac}, "
                f"current value is {link.mac}"
            )
        if bool(link.promiscuity) != t.promisc:
            raise Internal(
                f"Error: Tuning link {args.ifname} configured promisc is "
                f"{t.promisc}, current value is {link.promiscuity}"
            )
        if t.mtu and t.mtu != link.mtu:
            raise Internal(
                f"Error: Tuning configured MTU of {args.ifname} is {t.mtu}, "
                f"current value is {link.mtu}"
            )
        if t.allmulti is not None and bool(link.flags & IFF_ALLMULTI) != t.allmulti:
            raise Internal(
                f"Error: Tuning configured all-multicast mode of {args.ifname} " f"is {t.allmulti}"
            )
        if t.txqlen is not None and t.txqlen != link.txqlen:
            raise Internal(
                f"Error: Tuning configured Transmit Queue Length of "
                f"{args.ifname} is {t.txqlen}, current value is {link.txqlen}"
            )

    try:
        in_container(args.netns_path, check)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e


def cmd_gc(args: CmdArgs) -> None:
    """Remove backups of attachments not in ``cni.dev/valid-attachments``."""
    from kanal.spec.netconf import parse_plugin_conf

    t = load_conf(args)
    valid = parse_plugin_conf(args.conf, require_name=False).valid_attachments
    if valid is None or not os.path.isdir(t.data_dir):
        return
    keep = {f"{a.container_id}_{a.ifname}.json" for a in valid}
    for name in os.listdir(t.data_dir):
        if name.endswith(".json") and name not in keep:
            try:
                os.unlink(os.path.join(t.data_dir, name))
            except FileNotFoundError:
                pass


PLUGIN = PluginFuncs(
    about="kanal tuning plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    gc=cmd_gc,
)


def main() -> None:
    from kanal.skel.dispatcher import plugin_main

    plugin_main(PLUGIN)
