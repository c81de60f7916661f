"""Running a network configuration list against a container (Go ``libcni/api.go``).

:class:`CNIConfig` is the runtime half of CNI: it executes the plugins of a
:class:`~kanal.spec.netconf.ConfList` in order for ADD/CHECK/STATUS/GC and in reverse
for DEL, injects ``prevResult`` and ``runtimeConfig`` the way libcni does, and keeps
libcni's result cache (:mod:`kanal.runtime.cache`).

Where kanal deliberately differs from libcni:

- ADD resolves every plugin of the chain before running the first one, and validates
  the network name, container ID and interface name for every operation (they become
  cache path components), so bad input fails before anything is touched.
- CHECK without a cached result is an error here (libcni would send CHECK with no
  ``prevResult``, which every plugin then rejects less clearly).
- GC reports a cache directory it cannot list instead of silently returning.
- Errors keep their class and CNI code; context is prepended to the message
  (``plugin type="bridge" failed (add): ...``), as Go's ``%w`` wrapping does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kanal.errors import IncompatibleVersion, InvalidConfig, KanalError, NotFound, TeardownError
from kanal.runtime._util import prefixed
from kanal.runtime.cache import DEFAULT_CACHE_DIR, CacheEntry, ResultCache
from kanal.runtime.invoke import Exec, SubprocessExec, get_version_info, plugin_env
from kanal.spec.args import validate_container_id, validate_ifname
from kanal.spec.convert import parse_result, render_result
from kanal.spec.gotext import quote
from kanal.spec.netconf import (
    ConfList,
    GCAttachment,
    build_plugin_request,
    plugin_fields,
    validate_network_name,
)
from kanal.spec.types import Result
from kanal.spec.versions import version_ge

__all__ = ["CNIConfig", "RuntimeConf"]

GC_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


@dataclass(slots=True)
class RuntimeConf:
    """The per-container half of a call (Go ``libcni.RuntimeConf``).

    ``args`` become CNI_ARGS (``K=V;...``). ``capability_args`` are offered to every
    plugin; each receives, as ``runtimeConfig``, only the keys it declares true in
    its ``capabilities``.
    """

    container_id: str
    netns: str
    ifname: str
    args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: dict[str, Any] = field(default_factory=dict)


def _describe(plugin: Mapping[str, Any]) -> str:
    # Go pluginDescription: type="x" plus name="y" when the plugin object has its own.
    plugin_type, name, _ = plugin_fields(plugin)
    out = f"type={quote(plugin_type)}"
    if name:
        out += f" name={quote(name)}"
    return out


def _attachment_dicts(
    attachments: Iterable[GCAttachment | Mapping[str, str]],
) -> list[dict[str, str]]:
    out = []
    for a in attachments:
        if isinstance(a, GCAttachment):
            cid, ifname = a.container_id, a.ifname
        else:
            cid, ifname = a.get("containerID", ""), a.get("ifname", "")
        if not isinstance(cid, str) or not isinstance(ifname, str):
            raise InvalidConfig("valid attachments must be {containerID, ifname} strings")
        out.append({"containerID": cid, "ifname": ifname})
    return out


class CNIConfig:
    """Executes configuration lists (Go ``libcni.CNIConfig``).

    Args:
        paths: directories searched for plugin executables (CNI_PATH), in order.
        cache_dir: the result cache root (libcni default ``/var/lib/cni``).
        exec: how plugins are found and run; default :class:`SubprocessExec`.
        version_probe: send VERSION to every plugin of the list before each ADD and
            DEL, as podman does; on ADD a plugin that does not support the list's
            version then fails the call before anything runs.
        base_env: the environment plugins inherit (default: this process's, read at
            call time); CNI_* are always set on top.
        durable_cache: fsync cache writes (see ResultCache); off only for a caller
            that keeps its own record of every attachment.

    Not thread-safe for the same attachment: the spec forbids concurrent operations
    on one container, and GC must not run while any ADD/DEL is in flight.
    """

    def __init__(
        self,
        paths: Sequence[str],
        cache_dir: str = DEFAULT_CACHE_DIR,
        exec: Exec | None = None,  # the libcni name; shadows the builtin here only
        *,
        version_probe: bool = False,
        base_env: Mapping[str, str] | None = None,
        durable_cache: bool = True,
    ) -> None:
        self.paths = [p for p in paths if p]
        self.cache = ResultCache(cache_dir, durable=durable_cache)
        self.exec: Exec = exec if exec is not None else SubprocessExec()
        self.version_probe = version_probe
        self._base_env = base_env

    # --- helpers -------------------------------------------------------------------

    def _env(self, command: str, rt: RuntimeConf | None = None) -> dict[str, str]:
        base = os.environ if self._base_env is None else self._base_env
        if rt is None:
            return plugin_env(command, path=self.paths, base=base)
        return plugin_env(
            command,
            container_id=rt.container_id,
            netns=rt.netns,
            ifname=rt.ifname,
            args=rt.args,
            path=self.paths,
            base=base,
        )

    def _find(self, plugin: Mapping[str, Any]) -> str:
        return self.exec.find_in_path(plugin_fields(plugin)[0], self.paths)

    @staticmethod
    def _validate(conflist: ConfList, rt: RuntimeConf) -> None:
        validate_network_name(conflist.name)
        validate_container_id(rt.container_id)
        validate_ifname(rt.ifname)
        if not conflist.plugins:
            raise InvalidConfig(f"network {quote(conflist.name)}: no plugin configs found")

    def _probe(self, conflist: ConfList, paths: Sequence[str], *, enforce: bool) -> None:
        want = conflist.cni_version or "0.1.0"
        for plugin, path in zip(conflist.plugins, paths):
            if not path:
                continue  # not found: DEL reports that itself
            try:
                supported = get_version_info(self.exec, path, self._base_env)
            except KanalError:
                if enforce:
                    raise
                continue
            if enforce and want not in supported:
                raise IncompatibleVersion(
                    f"plugin {_describe(plugin)} does not support config version {quote(want)}",
                    f"it supports {', '.join(supported)}",
                )

    # --- ADD -----------------------------------------------------------------------

    def add_network_list(self, conflist: ConfList, rt: RuntimeConf) -> Result:
        """ADD every plugin in order; returns the last plugin's result.

        Each plugin after the first gets the previous result as ``prevResult``. The
        final result is cached only after the whole chain succeeded; on failure no
        cache is written (the caller must still DEL, as the spec requires).
        The returned model's ``cni_version`` is the version the plugin answered in.

        Raises:
            InvalidConfig / InvalidEnv: bad names; PluginNotFound: a plugin is missing
                (nothing was run); KanalError: the first failing plugin's error, its
                message prefixed ``plugin type="x" failed (add): ``; IOFailure: the
                cache could not be written (``failed to set network "n" cached result``).
        """
        self._validate(conflist, rt)
        paths = [self._find(p) for p in conflist.plugins]
        if self.version_probe:
            self._probe(conflist, paths, enforce=True)
        env = self._env("ADD", rt)
        result: Result | None = None
        for plugin, path in zip(conflist.plugins, paths):
            try:
                prev = None if result is None else render_result(result, result.cni_version)
                stdin = build_plugin_request(
                    conflist, plugin, prev_result=prev, capability_args=rt.capability_args
                )
                out = self.exec.exec_plugin(path, stdin, env)
                result = parse_result(out, conflist.cni_version)
            except KanalError as e:
                raise prefixed(e, f"plugin {_describe(plugin)} failed (add): ") from e
        assert result is not None  # the list has at least one plugin
        try:
            self.cache.write(
                CacheEntry(
                    network=conflist.name,
                    container_id=rt.container_id,
                    ifname=rt.ifname,
                    config=conflist.bytes,
                    netns=rt.netns,
                    cni_args=list(rt.args),
                    capability_args=dict(rt.capability_args),
                    result=render_result(result, result.cni_version),
                )
            )
        except KanalError as e:
            raise prefixed(
                e, f"failed to set network {quote(conflist.name)} cached result: "
            ) from e
        return result

    # --- CHECK ---------------------------------------------------------------------

    def check_network_list(self, conflist: ConfList, rt: RuntimeConf) -> None:
        """CHECK every plugin in order with the cached result as ``prevResult``.

        Needs a config version >= 0.4.0; does nothing when ``disableCheck`` is set.
        The cached result is converted to the config's version first.

        Raises:
            IncompatibleVersion: ``configuration version "X" does not support the
                CHECK command``; NotFound: no cached result (no ADD before);
            KanalError: a corrupt cache, or the first failing plugin's error
                (prefixed ``plugin type="x" failed (check): ``).
        """
        if not version_ge(conflist.cni_version, "0.4.0"):
            raise IncompatibleVersion(
                f"configuration version {quote(conflist.cni_version)} "
                "does not support the CHECK command"
            )
        if conflist.disable_check:
            return
        self._validate(conflist, rt)
        what = f"failed to get network {quote(conflist.name)} cached result"
        try:
            cached = self.cache.read_result(
                conflist.name, rt.container_id, rt.ifname, conflist.cni_version
            )
        except KanalError as e:
            raise prefixed(e, f"{what}: ") from e
        if cached is None:
            raise NotFound(
                what,
                f"no cached result for container {rt.container_id} interface {rt.ifname}; "
                "CHECK needs a previous ADD",
            )
        env = self._env("CHECK", rt)
        for plugin in conflist.plugins:
            try:
                stdin = build_plugin_request(
                    conflist, plugin, prev_result=cached, capability_args=rt.capability_args
                )
                self.exec.exec_plugin(self._find(plugin), stdin, env)
            except KanalError as e:
                raise prefixed(e, f"plugin {_describe(plugin)} failed (check): ") from e

    # --- DEL -----------------------------------------------------------------------

    def del_network_list(self, conflist: ConfList, rt: RuntimeConf) -> None:
        """DEL every plugin in reverse order; remove the cache entry after success.

        For config versions >= 0.4.0 each plugin gets the cached result (converted to
        the config's version) as ``prevResult``. A missing cache entry means no
        ``prevResult``; an unreadable, corrupt (e.g. 0-byte) or unconvertible one is
        removed first and DEL runs without ``prevResult`` (cni PR#1072). On failure
        the entry is kept so that the DEL can be retried. Idempotent as far as the
        plugins' DEL is (the spec requires it to be).

        Raises:
            InvalidConfig / InvalidEnv: bad names; KanalError: the first failing
                plugin's error, prefixed ``plugin type="x" failed (delete): ``.
        """
        self._validate(conflist, rt)
        cached: dict[str, Any] | None = None
        if version_ge(conflist.cni_version, "0.4.0"):
            try:
                cached = self.cache.read_result(
                    conflist.name, rt.container_id, rt.ifname, conflist.cni_version
                )
            except KanalError:
                self._drop_cache(conflist.name, rt)
                cached = None
        if self.version_probe:
            probe_paths = []
            for plugin in conflist.plugins:
                try:
                    probe_paths.append(self._find(plugin))
                except KanalError:
                    probe_paths.append("")
            self._probe(conflist, probe_paths, enforce=False)
        env = self._env("DEL", rt)
        for plugin in reversed(conflist.plugins):
            try:
                stdin = build_plugin_request(
                    conflist, plugin, prev_result=cached, capability_args=rt.capability_args
                )
                self.exec.exec_plugin(self._find(plugin), stdin, env)
            except KanalError as e:
                raise prefixed(e, f"plugin {_describe(plugin)} failed (delete): ") from e
        self._drop_cache(conflist.name, rt)

    def _drop_cache(self, network: str, rt: RuntimeConf) -> None:
        try:
            self.cache.delete(network, rt.container_id, rt.ifname)
        except KanalError:
            pass  # as libcni: a cache file we cannot remove does not fail the DEL

    # --- GC ------------------------------------------------------------------------

    def gc_network_list(
        self,
        conflist: ConfList,
        valid_attachments: Sequence[GCAttachment | Mapping[str, str]] | None = None,
    ) -> None:
        """Clean up attachments of this network that are not in ``valid_attachments``.

        As libcni ``GCNetworkList``: nothing at all when ``disableGC`` is set. First a
        DEL (with the current config, and the cached netns/args/capabilities) for
        every cached attachment of the network not in the valid set -- all of them
        when ``valid_attachments`` is None (what cnitool does). Then, for config
        versions >= 1.1.0, GC to every plugin, with the valid set under both
        ``cni.dev/valid-attachments`` and the 1.1.0-tag name ``cni.dev/attachments``
        (neither key when ``valid_attachments`` is None). Every step is attempted.

        Raises:
            TeardownError: one or more steps failed; ``errors`` holds each, e.g.
                ``failed to delete stale attachment CID IFNAME: ...``,
                ``failed to GC plugin TYPE: ...``.
        """
        if conflist.disable_gc:
            return
        valid = None if valid_attachments is None else _attachment_dicts(valid_attachments)
        keep = {(a["containerID"], a["ifname"]) for a in valid or []}
        errors: list[KanalError] = []
        try:
            cached = self.cache.attachments(network=conflist.name)
        except KanalError as e:
            errors.append(e)
            cached = []
        for att in cached:
            if (att.container_id, att.ifname) in keep:
                continue
            rt = RuntimeConf(
                container_id=att.container_id,
                netns=att.netns,
                ifname=att.ifname,
                args=list(att.cni_args),
                capability_args=dict(att.capability_args),
            )
            try:
                self.del_network_list(conflist, rt)
            except KanalError as e:
                errors.append(
                    prefixed(
                        e, f"failed to delete stale attachment {att.container_id} {att.ifname}: "
                    )
                )
        if _version_at_least(conflist.cni_version, "1.1.0"):
            extra = {} if valid is None else dict.fromkeys(GC_KEYS, valid)
            env = self._env("GC")
            for plugin in conflist.plugins:
                try:
                    stdin = build_plugin_request(conflist, plugin, extra=extra)
                    self.exec.exec_plugin(self._find(plugin), stdin, env)
                except KanalError as e:
                    errors.append(prefixed(e, f"failed to GC plugin {plugin_fields(plugin)[0]}: "))
        if errors:
            raise TeardownError(f"GC of network {quote(conflist.name)} failed", errors)

    # --- STATUS --------------------------------------------------------------------

    def get_status_network_list(self, conflist: ConfList) -> None:
        """STATUS to every plugin in order; returns when all are ready.

        Does nothing for config versions below 1.1.0 (as libcni). Stops at the first
        plugin that is not ready, so its code (50 unavailable, 51 degraded) is what the
        caller sees.

        Raises:
            KanalError: the first failing plugin's error, its code kept, prefixed
                ``plugin type="x" failed (status): ``.
        """
        if not _version_at_least(conflist.cni_version, "1.1.0"):
            return
        env = self._env("STATUS")
        for plugin in conflist.plugins:
            try:
                stdin = build_plugin_request(conflist, plugin)
                self.exec.exec_plugin(self._find(plugin), stdin, env)
            except KanalError as e:
                raise prefixed(e, f"plugin {_describe(plugin)} failed (status): ") from e

    # --- queries -------------------------------------------------------------------

    def get_version_info(self, plugin_type: str) -> list[str]:
        """The spec versions plugin ``plugin_type`` supports (VERSION).

        Raises:
            PluginNotFound, InvalidConfig: as ``find_in_path``; KanalError: the plugin failed.
        """
        path = self.exec.find_in_path(plugin_type, self.paths)
        return get_version_info(self.exec, path, self._base_env)

    def validate_network_list(self, conflist: ConfList) -> list[str]:
        """Check every plugin exists and supports the list's version (Go
        ``ValidateNetworkList``); returns the sorted capabilities the list declares.

        Raises:
            InvalidConfig: one or more plugins failed the check (all are reported).
        """
        want = conflist.cni_version or "0.1.0"
        errors: list[str] = []
        caps: set[str] = set()
        for plugin in conflist.plugins:
            plugin_type, _, plugin_caps = plugin_fields(plugin)
            try:
                supported = self.get_version_info(plugin_type)
                if want not in supported:
                    errors.append(
                        f"plugin {plugin_type} does not support config version {quote(want)}"
                    )
            except KanalError as e:
                errors.append(str(e))
            caps.update(k for k, on in plugin_caps.items() if on is True)
        if errors:
            raise InvalidConfig(f"network {quote(conflist.name)} is not usable", "; ".join(errors))
        return sorted(caps)

    def get_cached_result(self, conflist: ConfList, rt: RuntimeConf) -> dict[str, Any] | None:
        """The cached ADD result converted to the list's version, or None.

        Raises:
            DecodeError, IOFailure, KanalError: as :meth:`ResultCache.read_result`.
        """
        return self.cache.read_result(
            conflist.name, rt.container_id, rt.ifname, conflist.cni_version
        )

    def get_cached_attachments(self, container_id: str = "") -> list[CacheEntry]:
        """Every cached attachment, or those of one container (Go ``GetCachedAttachments``)."""
        return self.cache.attachments(container_id)


def _version_at_least(version: str, minimum: str) -> bool:
    # libcni ignores a version parse error here (``gt, _ :=``): treat it as too old.
    try:
        return version_ge(version, minimum)
    except KanalError:
        return False
