"""Network configuration: the plugin object, the conflist, and the request a runtime builds.

Go reference: ``pkg/types/types.go`` (``PluginConf``), ``pkg/skel`` (``validateConfig``),
``libcni/conf.go`` (``NetworkConfFromBytes``, ``ConfFromBytes``, ``ConfListFromConf``)
and ``libcni/api.go`` (``buildOneConfig``, ``injectRuntimeConfig``, ``InjectConf``).

Unknown keys are always kept: ``raw`` holds the whole object, and the request bytes
are built from it.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

from kanal._dataclass import dataclass, field
from kanal.errors import DecodeError, InvalidConfig, KanalError
from kanal.spec import gojson, gotypes
from kanal.spec._go import MAX_JSON_BYTES, loads, marshal, type_name
from kanal.spec.args import CONTAINER_ID_RE, validate_network_name
from kanal.spec.versions import CURRENT, parse_version, version_gt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MAX_CONFIG_BYTES",
    "NAME_RE",
    "ConfList",
    "GCAttachment",
    "PluginConf",
    "build_plugin_request",
    "conf_to_conflist",
    "parse_conflist",
    "parse_plugin_conf",
    "plugin_fields",
    "validate_network_name",
]

MAX_CONFIG_BYTES = MAX_JSON_BYTES

# Same rule as container IDs; a matching name is a single safe path component
# (no "/", cannot be "." or "..").
NAME_RE = CONTAINER_ID_RE

_LIST_ERR = "error parsing configuration list"
_CONF_ERR = "error parsing configuration"


@dataclass(frozen=True, slots=True)
class GCAttachment:
    """One entry of ``cni.dev/valid-attachments`` (GC)."""

    container_id: str
    ifname: str


@dataclass(slots=True)
class PluginConf:
    """A plugin's stdin config (or one plugin object of a conflist).

    ``cni_version`` is the effective version: "" or absent reads as "0.1.0" (Go
    ``create.DecodeVersion``); ``raw["cniVersion"]`` keeps what was sent. The dict
    fields are {} when absent. ``valid_attachments`` is None unless the runtime sent
    ``cni.dev/valid-attachments`` (or the 1.1.0-tag name ``cni.dev/attachments``).
    """

    raw: dict[str, Any]
    name: str
    cni_version: str
    type: str
    capabilities: dict[str, bool] = field(default_factory=dict)
    ipam: dict[str, Any] = field(default_factory=dict)
    dns: dict[str, Any] = field(default_factory=dict)
    runtime_config: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    prev_result: dict[str, Any] | None = None
    valid_attachments: list[GCAttachment] | None = None


def _load_object(data: builtins.bytes | str | Mapping[str, Any], what: str) -> dict[str, Any]:
    if isinstance(data, Mapping):
        return dict(data)
    obj = loads(data, what, MAX_CONFIG_BYTES)
    if not isinstance(obj, dict):
        raise DecodeError(what, f"want a JSON object, got {type_name(obj)}")
    return obj


def _bad(key: str, want: str, value: Any) -> InvalidConfig:
    return InvalidConfig(_CONF_ERR, f"{key!r} must be {want}, got {type_name(value)} {value!r}")


def _opt_str(conf: Mapping[str, Any], key: str) -> str:
    v = conf.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _bad(key, "a string", v)
    return v


# types.NetConf as libcni and skel read it, plus what kanal's PluginConf carries.
_PLUGIN_CONF = gotypes.NETCONF.extend(
    "NetConf",
    [
        ("runtimeConfig", gojson.Map(gojson.ANY)),
        ("args", gojson.Map(gojson.ANY)),
        ("cni.dev/attachments", gojson.Slice(gotypes.GC_ATTACHMENT)),
    ],
)


def parse_plugin_conf(
    data: builtins.bytes | str | Mapping[str, Any], *, require_name: bool = True
) -> PluginConf:
    """Parse and check a plugin config.

    ``require_name=False`` is for plugin objects inside a conflist, which get their
    name injected by the runtime (libcni ``ConfFromBytes`` requires only ``type``).

    Raises:
        DecodeError: bad JSON, not an object, or more than MAX_CONFIG_BYTES.
        InvalidConfig: missing ``type``; missing or bad ``name`` (if required); a
            well-known key of the wrong JSON type.
    """
    raw = _load_object(data, "error unmarshall network config")
    conf = gojson.decode(_PLUGIN_CONF, raw, _CONF_ERR)
    name: str = conf["name"]
    if require_name:
        validate_network_name(name)
    if conf["type"] == "":
        raise InvalidConfig(f"{_CONF_ERR}: missing 'type'")
    # (cni.dev/attachments: the name in the 1.1.0 spec text; the library reads
    # cni.dev/valid-attachments)
    valid = conf["cni.dev/valid-attachments"]
    if valid is None and _has_key(raw, "cni.dev/valid-attachments"):
        valid = []
    if valid is None:
        valid = conf["cni.dev/attachments"]
        if valid is None and _has_key(raw, "cni.dev/attachments"):
            valid = []
    return PluginConf(
        raw=raw,
        name=name,
        cni_version=conf["cniVersion"] or "0.1.0",
        type=conf["type"],
        capabilities=dict(conf["capabilities"] or {}),
        ipam=dict(raw_member(raw, "ipam", _PLUGIN_CONF) or {}),
        dns=dict(raw_member(raw, "dns", _PLUGIN_CONF) or {}),
        runtime_config=dict(conf["runtimeConfig"] or {}),
        args=dict(conf["args"] or {}),
        prev_result=None if conf["prevResult"] is None else dict(conf["prevResult"]),
        valid_attachments=None
        if valid is None
        else [GCAttachment(a["containerID"], a["ifname"]) for a in valid],
    )


def plugin_fields(plugin: Mapping[str, Any]) -> tuple[str, str, dict[str, bool]]:
    """``(type, name, capabilities)`` of a plugin object as libcni reads them (Go's
    decoding rules; a value of the wrong type reads as empty)."""
    conf, _ = gojson.decode_lenient(gotypes.NETCONF, plugin)
    return conf["type"], conf["name"], dict(conf["capabilities"] or {})


def _has_key(raw: Mapping[str, Any], name: str) -> bool:
    return any(_PLUGIN_CONF.field_for(k) == name for k, _ in gojson.members(raw))


def raw_member(raw: Mapping[str, Any], name: str, spec: gojson.Struct) -> Any:
    """The raw JSON value Go's decoder would give field ``name`` of ``spec``."""
    found = None
    for key, value in gojson.members(raw):
        if spec.field_for(key) == name:
            found = value
    return found


@dataclass(slots=True)
class ConfList:
    """A parsed network configuration list.

    ``cni_version`` is what libcni sends to every plugin: the highest of
    ``cniVersion`` and ``cniVersions`` that is not above 1.1.0 (``cniVersion`` as
    given when there is no ``cniVersions``; "" when neither is set). ``bytes`` are
    the exact source bytes (libcni caches them, base64, with each attachment).
    """

    name: str
    cni_version: str
    cni_versions: list[str]
    disable_check: bool
    disable_gc: bool
    load_only_inlined_plugins: bool
    plugins: list[dict[str, Any]]
    raw: dict[str, Any]
    bytes: builtins.bytes
    source: str = ""


def _read_bool(raw: Mapping[str, Any], key: str) -> bool:
    """libcni accepts a JSON bool or the strings "true"/"false" (any case)."""
    if key not in raw:
        return False
    v = raw[key]
    if isinstance(v, bool):
        return v
    if not isinstance(v, str):
        raise InvalidConfig(f"{_LIST_ERR}: invalid type {type_name(v)} for {key}")
    s = v.lower()
    if s == "true":
        return True
    if s == "false":
        return False
    raise InvalidConfig(f'{_LIST_ERR}: invalid value "{s}" for {key}')


def _list_version(raw: Mapping[str, Any]) -> tuple[str, list[str]]:
    version = ""
    if "cniVersion" in raw:
        v = raw["cniVersion"]
        if not isinstance(v, str):
            raise InvalidConfig(f"{_LIST_ERR}: invalid cniVersion type {type_name(v)}")
        version = v
    if "cniVersions" not in raw:
        return version, []
    rvs = raw["cniVersions"]
    if not isinstance(rvs, list):
        raise InvalidConfig(f"{_LIST_ERR}: invalid type for cniVersions: {type_name(rvs)}")
    candidates: list[str] = []
    for i, rv in enumerate(rvs):
        if not isinstance(rv, str):
            raise InvalidConfig(
                f"{_LIST_ERR}: invalid type for cniVersions index {i}: {type_name(rv)}"
            )
        try:
            too_new = version_gt(rv, CURRENT)
        except KanalError as e:
            raise InvalidConfig(
                f"{_LIST_ERR}: invalid cniVersions entry {rv} at index {i}: {e}"
            ) from e
        if not too_new:  # libcni skips versions newer than the spec it implements
            candidates.append(rv)
    if version:
        try:
            too_new = version_gt(version, CURRENT)
        except KanalError as e:
            raise InvalidConfig(f"{_LIST_ERR}: invalid cniVersion {version}: {e}") from e
        if not too_new:
            candidates.append(version)
    if candidates:
        version = max(candidates, key=parse_version)
    return version, list(rvs)


def parse_conflist(
    data: builtins.bytes | str, source: str = "", *, require_plugins: bool = True
) -> ConfList:
    """Parse a ``.conflist`` with libcni's rules.

    ``name`` is required and validated. ``plugins``, when present, must be a
    non-empty list of objects each with a ``type``. Without ``plugins``: an error if
    ``loadOnlyInlinedPlugins`` is true; otherwise libcni would look for
    ``<dir>/<name>/*.conf`` plugin files, so a runtime that does that passes
    ``require_plugins=False`` and gets an empty list (and must fail if it finds none).

    Raises:
        DecodeError: bad JSON, not an object, more than MAX_CONFIG_BYTES.
        InvalidConfig: any rule above, a bad name, a bad version, a bad bool.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    raw = _load_object(data, _LIST_ERR)
    if "name" not in raw:
        raise InvalidConfig(f"{_LIST_ERR}: no name")
    name = raw["name"]
    if not isinstance(name, str):
        raise InvalidConfig(f"{_LIST_ERR}: invalid name type {type_name(name)}")
    validate_network_name(name)
    version, versions = _list_version(raw)
    disable_check = _read_bool(raw, "disableCheck")
    disable_gc = _read_bool(raw, "disableGC")
    inlined_only = _read_bool(raw, "loadOnlyInlinedPlugins")
    plugins: list[dict[str, Any]] = []
    if "plugins" not in raw:
        if inlined_only:
            raise InvalidConfig(
                f"{_LIST_ERR}: `loadOnlyInlinedPlugins` is true, and no 'plugins' key"
            )
        if require_plugins:
            raise InvalidConfig("no plugin configs found")
    else:
        rplugins = raw["plugins"]
        if not isinstance(rplugins, list):
            raise InvalidConfig(f"{_LIST_ERR}: invalid 'plugins' type {type_name(rplugins)}")
        if not rplugins:
            raise InvalidConfig(f"{_LIST_ERR}: no plugins in list")
        for i, p in enumerate(rplugins):
            if not isinstance(p, dict):
                raise InvalidConfig(
                    f"failed to parse plugin config {i}: {_CONF_ERR}: "
                    f"want a JSON object, got {type_name(p)}"
                )
            try:
                parse_plugin_conf(p, require_name=False)
            except KanalError as e:
                raise InvalidConfig(f"failed to parse plugin config {i}: {e}") from e
            plugins.append(p)
    return ConfList(
        name=name,
        cni_version=version,
        cni_versions=versions,
        disable_check=disable_check,
        disable_gc=disable_gc,
        load_only_inlined_plugins=inlined_only,
        plugins=plugins,
        raw=raw,
        bytes=data,
        source=source,
    )


def conf_to_conflist(data: builtins.bytes | str, source: str = "") -> ConfList:
    """Up-convert a deprecated single-plugin ``.conf`` (libcni ``ConfListFromConf``).

    The list gets the plugin's ``name`` and ``cniVersion`` and the whole object as
    its only plugin. ``bytes`` are the synthesised list JSON, as libcni's.

    Raises:
        DecodeError, InvalidConfig: as :func:`parse_plugin_conf` and :func:`parse_conflist`.
    """
    conf = parse_plugin_conf(_load_object(data, _CONF_ERR), require_name=False)
    synthesised = {
        "name": conf.name,
        "cniVersion": _opt_str(conf.raw, "cniVersion"),
        "plugins": [conf.raw],
    }
    return parse_conflist(marshal(synthesised, sort_keys=True), source)


def build_plugin_request(
    conflist: ConfList,
    plugin: Mapping[str, Any],
    *,
    prev_result: Mapping[str, Any] | None = None,
    capability_args: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> builtins.bytes:
    """The stdin bytes for one plugin of ``conflist`` (libcni ``buildOneConfig``).

    Starts from the plugin object (unknown keys kept) and sets ``name`` and
    ``cniVersion`` from the list, ``prevResult`` if given, ``runtimeConfig`` to the
    ``capability_args`` whose key is true in the plugin's ``capabilities`` (only
    if any; otherwise the object's own ``runtimeConfig`` stays), then the ``extra``
    keys (e.g. ``cni.dev/valid-attachments`` for GC). Output is compact JSON with
    sorted keys, byte-compatible with libcni's ``json.Marshal`` of a map.

    Raises:
        InvalidConfig: the plugin has no ``type``, bad ``capabilities``, an empty
            ``extra`` key or a None ``extra`` value.
    """
    conf: dict[str, Any] = dict(plugin)
    conf["name"] = conflist.name
    conf["cniVersion"] = conflist.cni_version
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    # libcni reads the capabilities from the decoded types.NetConf (Go's key rules).
    caps = gojson.decode(gotypes.NETCONF, plugin, _CONF_ERR)["capabilities"] or {}
    if capability_args:
        rc = {
            cap: capability_args[cap]
            for cap, on in caps.items()
            if on is True and cap in capability_args
        }
        if rc:
            conf["runtimeConfig"] = rc
    for key, value in (extra or {}).items():
        if key == "":
            raise InvalidConfig("keys cannot be empty")
        if value is None:
            raise InvalidConfig(f"key '{key}' value must not be nil")
        conf[key] = value
    if plugin_fields(conf)[0] == "":
        raise InvalidConfig(f"{_CONF_ERR}: missing 'type'")
    return marshal(conf, sort_keys=True)
