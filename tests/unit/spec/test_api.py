"""The public surface other layers code against, and the import-weight rule."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

API = {
    "kanal.spec.versions": [
        "ALL_VERSIONS",
        "CURRENT",
        "parse_version",
        "version_ge",
        "version_gt",
        "check_supported",
        "version_reply",
        "decode_version_reply",
        "highest_version",
        "legacy_supported_versions",
    ],
    "kanal.spec.types": [
        "Interface",
        "IPConfig",
        "Route",
        "DNS",
        "Result",
        "IPInterface",
        "IPAddr",
        "parse_cidr",
        "parse_ip",
    ],
    "kanal.spec.result_020": ["VERSIONS", "Result020", "IPConfig020", "from_wire", "to_wire"],
    "kanal.spec.result_040": [
        "VERSIONS",
        "Result040",
        "Interface040",
        "IPConfig040",
        "from_wire",
        "to_wire",
    ],
    "kanal.spec.result_100": ["VERSIONS", "from_wire", "to_wire"],
    "kanal.spec.convert": [
        "converter",
        "convert",
        "render_result",
        "parse_result",
        "convert_result",
        "dumps",
        "decode_wire",
        "encode_wire",
        "WireResult",
    ],
    "kanal.spec.netconf": [
        "NAME_RE",
        "MAX_CONFIG_BYTES",
        "validate_network_name",
        "PluginConf",
        "parse_plugin_conf",
        "plugin_fields",
        "ConfList",
        "parse_conflist",
        "conf_to_conflist",
        "build_plugin_request",
        "GCAttachment",
    ],
    "kanal.spec.args": [
        "CONTAINER_ID_RE",
        "MAX_CONTAINER_ID_LEN",
        "MAX_IFNAME_LEN",
        "validate_container_id",
        "validate_ifname",
        "parse_cni_args",
        "load_args",
    ],
    "kanal.spec.env": ["CmdEnv", "parse_env", "COMMANDS", "required_vars"],
    "kanal.spec.error": ["error_to_wire", "error_from_wire"],
}


@pytest.mark.parametrize("module", sorted(API), ids=sorted(API))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(API[module])
    for name in API[module]:
        assert hasattr(mod, name), name


def test_signatures_other_layers_rely_on() -> None:
    from kanal.spec import convert, netconf, types

    assert list(inspect.signature(convert.render_result).parameters) == ["result", "version"]
    assert list(inspect.signature(convert.parse_result).parameters)[:2] == ["data", "version"]
    params = inspect.signature(netconf.build_plugin_request).parameters
    assert list(params) == ["conflist", "plugin", "prev_result", "capability_args", "extra"]
    assert [f for f in types.Route.__dataclass_fields__] == [
        "dst",
        "gw",
        "mtu",
        "advmss",
        "priority",
        "table",
        "scope",
    ]
    assert [f for f in types.Interface.__dataclass_fields__] == [
        "name",
        "mac",
        "sandbox",
        "mtu",
        "socket_path",
        "pci_id",
    ]
    assert [f for f in netconf.ConfList.__dataclass_fields__] == [
        "name",
        "cni_version",
        "cni_versions",
        "disable_check",
        "disable_gc",
        "load_only_inlined_plugins",
        "plugins",
        "raw",
        "bytes",
        "source",
    ]


def test_spec_imports_stay_light() -> None:
    code = (
        "import sys\n"
        "import kanal.spec.convert, kanal.spec.netconf, kanal.spec.env, kanal.spec.error\n"
        "heavy = {'pyroute2', 'asyncio', 'email', 'http', 'subprocess', 'socket'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "print(sorted(m for m in sys.modules if m.startswith('kanal.') and\n"
        "      not m.startswith('kanal.spec') and\n"
        "      m not in ('kanal.errors', 'kanal._json', 'kanal._dataclass')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "[]"]
