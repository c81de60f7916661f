"""The runtime's result cache, on disk in libcni's format (``libcni/api.go``).

One file per attachment: ``<cache_dir>/results/<network>-<containerID>-<ifname>``
(directory 0700, file 0600), holding::

    {"kind":"cniCacheV1","containerId":..,"config":<base64 of the conflist bytes>,
     "ifName":..,"networkName":..,"netns":..,"cniArgs":[[k,v],..],
     "capabilityArgs":{..},"result":{..}}

with Go's field order and omissions (``netns``, ``cniArgs``, ``capabilityArgs``,
``result`` left out when empty), so Go libcni and kanal can read each other's cache.
Files written by very old libcni hold only the bare result; they are still read.

Unlike libcni, writes are atomic (temporary file in the same directory, fsync,
rename, fsync of the directory): a crash leaves the old file or the new one, never
the 0-byte files that broke DEL (cni#1055, cni#1149).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kanal.errors import DecodeError, IOFailure, KanalError
from kanal.runtime._util import prefixed
from kanal.spec.args import validate_container_id, validate_ifname
from kanal.spec.convert import convert_result
from kanal.spec.gotext import loads, marshal
from kanal.spec.netconf import validate_network_name

__all__ = [
    "CACHE_KIND",
    "DEFAULT_CACHE_DIR",
    "CacheEntry",
    "ResultCache",
]

CACHE_KIND = "cniCacheV1"
DEFAULT_CACHE_DIR = "/var/lib/cni"
_TMP_PREFIX = "."  # temporary files are hidden, and skipped when listing


@dataclass(slots=True)
class CacheEntry:
    """One cached attachment.

    ``result`` is the final ADD result as wire JSON (at the version the chain
    produced). ``legacy`` marks a bare-result file: only ``result`` came from the file,
    the other fields from its name.
    """

    network: str
    container_id: str
    ifname: str
    config: bytes = b""
    netns: str = ""
    cni_args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    legacy: bool = False


def _go_sorted(obj: Any) -> Any:
    # Go marshals map[string]interface{} with sorted keys at every level.
    if isinstance(obj, Mapping):
        return {k: _go_sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list | tuple):
        return [_go_sorted(v) for v in obj]
    return obj


def encode_entry(entry: CacheEntry) -> bytes:
    """The file content for ``entry`` (Go's ``json.Marshal`` of ``cachedInfo``)."""
    doc: dict[str, Any] = {
        "kind": CACHE_KIND,
        "containerId": entry.container_id,
        "config": base64.b64encode(entry.config).decode("ascii"),
        "ifName": entry.ifname,
        "networkName": entry.network,
    }
    if entry.netns:
        doc["netns"] = entry.netns
    if entry.cni_args:
        doc["cniArgs"] = [[k, v] for k, v in entry.cni_args]
    if entry.capability_args:
        doc["capabilityArgs"] = _go_sorted(entry.capability_args)
    if entry.result:
        doc["result"] = _go_sorted(entry.result)
    return marshal(doc)


def _field(doc: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise DecodeError("bad cache entry", f"{key!r} has the wrong JSON type")
    return value


def decode_entry(data: bytes, network: str, container_id: str, ifname: str) -> CacheEntry:
    """Parse a cache file; the names are used for a legacy bare-result file.

    Raises:
        DecodeError: not JSON, not an object, or a field of the wrong type.
    """
    doc = loads(data, "failed to decode cache entry")
    if not isinstance(doc, dict):
        raise DecodeError("failed to decode cache entry", "not a JSON object")
    if doc.get("kind") != CACHE_KIND:
        # libcni's pre-cniCacheV1 format: the file is the result itself.
        return CacheEntry(network, container_id, ifname, result=doc, legacy=True)
    raw_config = _field(doc, "config", str, "")
    try:
        config = base64.b64decode(raw_config, validate=True)
    except (binascii.Error, ValueError) as e:
        raise DecodeError("bad cache entry", f"'config' is not base64: {e}") from e
    pairs = _field(doc, "cniArgs", list, [])
    cni_args: list[tuple[str, str]] = []
    for pair in pairs:
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
        ):
            raise DecodeError("bad cache entry", "'cniArgs' must be a list of [key, value]")
        cni_args.append((pair[0], pair[1]))
    return CacheEntry(
        network=_field(doc, "networkName", str, ""),
        container_id=_field(doc, "containerId", str, ""),
        ifname=_field(doc, "ifName", str, ""),
        config=config,
        netns=_field(doc, "netns", str, ""),
        cni_args=cni_args,
        capability_args=_field(doc, "capabilityArgs", dict, {}),
        result=_field(doc, "result", dict, None),
    )


class ResultCache:
    """The cache directory of one runtime (libcni ``CacheDir``, default /var/lib/cni).

    Every name is validated before it becomes part of a path: a network name or
    container ID like ``../x`` is refused (InvalidConfig / InvalidEnv), never joined.
    """

    def __init__(self, cache_dir: str = DEFAULT_CACHE_DIR, *, durable: bool = True) -> None:
        self.cache_dir = cache_dir
        # durable=False: atomic (temp file + rename) but not fsync'ed; for a caller
        # whose own store is the record and who can rebuild the cache (the engine).
        self.durable = durable

    @property
    def results_dir(self) -> str:
        return os.path.join(self.cache_dir, "results")

    def path(self, network: str, container_id: str, ifname: str) -> str:
        """The cache file of one attachment.

        Raises:
            InvalidConfig: bad network name. InvalidEnv: bad container ID or ifname.
        """
        validate_network_name(network)
        validate_container_id(container_id)
        validate_ifname(ifname)
        return os.path.join(self.results_dir, f"{network}-{container_id}-{ifname}")

    def write(self, entry: CacheEntry) -> str:
        """Store ``entry`` atomically, replacing any previous one; returns the path.

        Idempotent. Raises IOFailure when the directory or file cannot be written
        (nothing is left behind then), and the validation errors of :meth:`path`.
        """
        final = self.path(entry.network, entry.container_id, entry.ifname)
        data = encode_entry(entry)
        directory = self.results_dir
        tmp = os.path.join(
            directory, f"{_TMP_PREFIX}{os.path.basename(final)}.{os.urandom(6).hex()}"
        )
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            if self.durable:
                _fsync_dir(directory)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise IOFailure(f"failed to write cache file {final}", e.strerror or str(e)) from e
        return final

    def read(self, network: str, container_id: str, ifname: str) -> CacheEntry | None:
        """The cached entry, or None when there is none.

        Raises:
            DecodeError: the file is corrupt (e.g. 0 bytes, truncated JSON).
            IOFailure: the file exists but cannot be read.
            InvalidConfig / InvalidEnv: as :meth:`path`.
        """
        path = self.path(network, container_id, ifname)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise IOFailure(f"failed to read cache file {path}", e.strerror or str(e)) from e
        try:
            return decode_entry(data, network, container_id, ifname)
        except DecodeError as e:
            raise DecodeError(f"corrupt cache file {path}", e.details or e.msg) from e

    def read_result(
        self, network: str, container_id: str, ifname: str, version: str
    ) -> dict[str, Any] | None:
        """The cached result as wire JSON converted to ``version`` (libcni
        ``getCachedResult``: plugins get prevResult in the config's version), or None.

        Raises:
            DecodeError, IOFailure: as :meth:`read`; also a cache entry without a result.
            KanalError: the result cannot be converted (e.g. a 0.1.0 result for a
                config whose conversion fails), message ``failed to convert cached
                result to config version "X": ...``.
        """
        entry = self.read(network, container_id, ifname)
        if entry is None:
            return None
        if entry.result is None:
            raise DecodeError(
                f"corrupt cache file {self.path(network, container_id, ifname)}",
                "no result in the entry",
            )

        try:
            return convert_result(entry.result, version)
        except KanalError as e:
            raise prefixed(
                e, f'failed to convert cached result to config version "{version}": '
            ) from e

    def delete(self, network: str, container_id: str, ifname: str) -> bool:
        """Remove the entry; True if a file was removed. Idempotent.

        Raises:
            IOFailure: the file exists but cannot be removed.
            InvalidConfig / InvalidEnv: as :meth:`path`.
        """
        path = self.path(network, container_id, ifname)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise IOFailure(f"failed to remove cache file {path}", e.strerror or str(e)) from e
        return True

    def attachments(self, container_id: str = "", network: str = "") -> list[CacheEntry]:
        """The well-formed cniCacheV1 entries, sorted by file name (Go ``GetCachedAttachments``).

        Filtered by ``container_id`` (first by the file name, then by content) and by
        ``network`` when they are not empty. Unreadable, corrupt, legacy and
        incomplete files are skipped, as libcni does.

        Raises:
            IOFailure: the results directory exists but cannot be listed.
        """
        try:
            names = sorted(os.listdir(self.results_dir))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise IOFailure(f"cannot list {self.results_dir}", e.strerror or str(e)) from e
        out = []
        part = f"-{container_id}-"
        for name in names:
            if name.startswith(_TMP_PREFIX):
                continue
            if container_id:
                pos = name.find(part)
                if pos <= 0 or pos + len(part) >= len(name):
                    continue
            try:
                with open(os.path.join(self.results_dir, name), "rb") as f:
                    entry = decode_entry(f.read(), "", "", "")
            except (OSError, KanalError):
                continue
            if entry.legacy or not entry.ifname or not entry.network:
                continue
            if container_id and entry.container_id != container_id:
                continue
            if network and entry.network != network:
                continue
            out.append(entry)
        return out


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
