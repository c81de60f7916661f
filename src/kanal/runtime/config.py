"""Finding network configurations in a directory, as libcni does (``libcni/conf.go``).

Lookup order for :func:`load_network_conf` (Go ``LoadNetworkConf``):

1. every ``*.conflist`` in the directory, sorted by name; the first whose ``name``
   matches wins. Unless it sets ``loadOnlyInlinedPlugins``, the plugin objects in
   ``<dir>/<name>/*.conf`` (sorted) are appended to its ``plugins``.
2. then the deprecated single-plugin ``*.conf`` / ``*.json`` files, sorted; a match is
   up-converted to a one-plugin list.

As in libcni a file that does not parse stops the search (the error names the file),
so a broken config is reported rather than silently skipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from kanal.errors import InvalidConfig, IOFailure, KanalError, NotFound
from kanal.runtime._util import prefixed
from kanal.spec.netconf import (
    ConfList,
    conf_to_conflist,
    parse_conflist,
    parse_plugin_conf,
    validate_network_name,
)

__all__ = [
    "DEFAULT_CONF_DIR",
    "NetworkNotFound",
    "NoConfigsFound",
    "conf_files",
    "list_networks",
    "load_conf_file",
    "load_conflist_file",
    "load_network_conf",
]

DEFAULT_CONF_DIR = "/etc/cni/net.d"

_LIST_EXTS = (".conflist",)
_SINGLE_EXTS = (".conf", ".json")


class NetworkNotFound(NotFound):
    """No configuration with that network name (libcni ``NotFoundError``)."""

    def __init__(self, conf_dir: str, name: str) -> None:
        super().__init__(f'no net configuration with name "{name}" in {conf_dir}')
        self.conf_dir = conf_dir
        self.name = name


class NoConfigsFound(NotFound):
    """The directory holds no configuration at all (libcni ``NoConfigsFoundError``)."""

    def __init__(self, conf_dir: str) -> None:
        super().__init__(f"no net configurations found in {conf_dir}")
        self.conf_dir = conf_dir


def conf_files(conf_dir: str, extensions: Sequence[str]) -> list[str]:
    """Sorted paths of the non-directory entries of ``conf_dir`` with one of ``extensions``.

    A missing directory has no files (Go ``ConfFiles``).

    Raises:
        IOFailure: the directory exists but cannot be read.
    """
    try:
        entries = list(os.scandir(conf_dir))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise IOFailure(f"cannot read configuration directory {conf_dir}", str(e)) from e
    out = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        if os.path.splitext(entry.name)[1] in extensions:
            out.append(os.path.join(conf_dir, entry.name))
    return sorted(out)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise IOFailure(f"error reading {path}", e.strerror or str(e)) from e


def _in_file(path: str, e: KanalError) -> KanalError:
    return prefixed(e, f"{path}: ")


def _plugin_files(conf_dir: str, name: str) -> list[dict[str, object]]:
    """The plugin objects of ``<conf_dir>/<name>/*.conf`` (Go ``NetworkPluginConfsFromFiles``)."""
    plugins = []
    for path in conf_files(os.path.join(conf_dir, name), (".conf",)):
        try:
            plugins.append(parse_plugin_conf(_read(path), require_name=False).raw)
        except KanalError as e:
            raise _in_file(path, e) from e
    return plugins


def _parse_list(path: str) -> ConfList:
    try:
        return parse_conflist(_read(path), path, require_plugins=False)
    except KanalError as e:
        raise _in_file(path, e) from e


def _with_plugin_files(conflist: ConfList, path: str) -> ConfList:
    if not conflist.load_only_inlined_plugins:
        conflist.plugins.extend(_plugin_files(os.path.dirname(path), conflist.name))
    if not conflist.plugins:
        raise InvalidConfig(f"{path}: no plugin configs found")
    return conflist


def load_conflist_file(path: str) -> ConfList:
    """One ``.conflist`` file with its plugin directory (Go ``NetworkConfFromFile``).

    Raises:
        IOFailure: unreadable file.
        DecodeError, InvalidConfig: a bad list or plugin file, or no plugins at all
            ("no plugin configs found"); the message starts with the file's path.
    """
    return _with_plugin_files(_parse_list(path), path)


def load_conf_file(path: str) -> ConfList:
    """A deprecated single-plugin ``.conf``/``.json`` file, up-converted to a list.

    Raises:
        IOFailure, DecodeError, InvalidConfig: as :func:`load_conflist_file`.
    """
    try:
        return conf_to_conflist(_read(path), path)
    except KanalError as e:
        raise _in_file(path, e) from e


def _single_conf_name(path: str) -> str:
    try:
        return parse_plugin_conf(_read(path), require_name=False).name
    except KanalError as e:
        raise _in_file(path, e) from e


def load_network_conf(conf_dir: str, name: str) -> ConfList:
    """The configuration list of network ``name`` in ``conf_dir`` (Go ``LoadNetworkConf``).

    ``name`` is validated first: it becomes a path component (``<dir>/<name>/``).

    Raises:
        InvalidConfig: a bad ``name``; a bad file met on the way (see module doc).
        NetworkNotFound: ``no net configuration with name "x" in DIR``.
        NoConfigsFound: ``no net configurations found in DIR`` (nothing there at all).
        IOFailure: an unreadable directory or file.
    """
    validate_network_name(name)
    lists = conf_files(conf_dir, _LIST_EXTS)
    for path in lists:
        conflist = _parse_list(path)
        if conflist.name == name:
            return _with_plugin_files(conflist, path)
    singles = conf_files(conf_dir, _SINGLE_EXTS)
    if not singles:
        if lists:
            raise NetworkNotFound(conf_dir, name)
        raise NoConfigsFound(conf_dir)
    for path in singles:
        if _single_conf_name(path) == name:
            return load_conf_file(path)
    raise NetworkNotFound(conf_dir, name)


def list_networks(conf_dir: str, errors: list[KanalError] | None = None) -> list[ConfList]:
    """Every network configured in ``conf_dir``, in lookup order, one per name.

    Conflists first (sorted), then up-converted single configs; when two files use
    the same name the first one wins, as :func:`load_network_conf` would pick it.

    ``errors``: when given, a file that fails to load is recorded there and skipped;
    otherwise its error is raised.
    """
    out: list[ConfList] = []
    seen: set[str] = set()
    candidates = [(p, load_conflist_file) for p in conf_files(conf_dir, _LIST_EXTS)]
    candidates += [(p, load_conf_file) for p in conf_files(conf_dir, _SINGLE_EXTS)]
    for path, load in candidates:
        try:
            conflist = load(path)
        except KanalError as e:
            if errors is None:
                raise
            errors.append(e)
            continue
        if conflist.name not in seen:
            seen.add(conflist.name)
            out.append(conflist)
    return out
