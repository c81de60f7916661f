"""Property-based tests (hypothesis) of every parser of outside input that runs
without root: the shared rules (kanal.validate), REST bodies and query strings, the
Docker plugin messages, CNI configs, environment and CNI_ARGS, ``-p`` specs.

The property everywhere: any input gives either a value that meets the rules or one
of kanal's own errors (KanalError, with a message) — never another exception, and
never an accepted value holding a control character where it becomes a line.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kanal import validate
from kanal.daemon.messages import filters as _filters
from kanal.daemon.messages import network_spec as spec_from_request
from kanal.daemon.messages import parse_query as _query
from kanal.daemon.messages import sandbox_spec as _sandbox_spec
from kanal.dockerplugin.protocol import IPAM_METHODS, NETWORK_METHODS, Dispatcher
from kanal.engine.ports import parse_publish
from kanal.errors import DecodeError, InvalidConfig, KanalError
from kanal.spec.args import parse_cni_args, validate_container_id, validate_ifname
from kanal.spec.netconf import parse_conflist, parse_plugin_conf

FAST = settings(max_examples=150, deadline=None)
SOME = settings(max_examples=80, deadline=None)

# Text that likes the characters that matter: controls, separators, '.', '-', ':', '/'.
nasty = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("aZ09.-_:/% \t\n\r\x00\x1b\x7f\x85\u2028\u2029é\ud800")),
        st.characters(),
    ),
    max_size=80,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | nasty,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(nasty, kids, max_size=4),
    max_leaves=20,
)


def _no_line_breakers(s: str) -> bool:
    return not validate.has_control(s)


@FAST
@given(nasty)
def test_name_rule(s: str) -> None:
    try:
        out = validate.name(s)
    except InvalidConfig as e:
        assert "invalid network name" in str(e)
        return
    assert out == s and re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}", s)


@FAST
@given(nasty)
def test_hostname_rule(s: str) -> None:
    try:
        validate.hostname(s)
    except InvalidConfig:
        return
    assert len(s) <= validate.UTS_MAX and _no_line_breakers(s)
    assert all(
        re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", x) for x in s.split(".")
    )


@FAST
@given(nasty)
def test_resolver_rules(s: str) -> None:
    for check in (validate.dns_name, validate.dns_option, validate.ip):
        try:
            check(s)
        except InvalidConfig:
            continue
        # whatever is accepted is one token of one line of resolv.conf / hosts
        assert s and _no_line_breakers(s) and not any(c.isspace() for c in s)


@FAST
@given(nasty, nasty)
def test_extra_host_and_env(a: str, b: str) -> None:
    try:
        host, ip = validate.extra_host(f"{a}:{b}")
        assert _no_line_breakers(host + ip) and " " not in host + ip
    except InvalidConfig:
        pass
    try:
        k, v = validate.env(a, b)
        assert k and "=" not in k and "\0" not in k + v
    except InvalidConfig:
        pass


@FAST
@given(st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_decode_json_never_crashes(raw: bytes) -> None:
    try:
        validate.decode_json(raw)
    except DecodeError as e:
        assert str(e)


@SOME
@given(json_values)
def test_decode_json_round_trip_and_depth(v: Any) -> None:
    raw = json.dumps(v).encode()
    depth = validate.json_depth(raw.decode())
    if depth <= validate.MAX_DEPTH:
        assert validate.decode_json(raw) == (v if raw.strip() else {})


@given(st.integers(min_value=1, max_value=200))
def test_depth_limit(n: int) -> None:
    raw = b"[" * n + b"]" * n
    if n > validate.MAX_DEPTH:
        try:
            validate.decode_json(raw)
            raise AssertionError("too deep, accepted")
        except DecodeError:
            pass
    else:
        assert validate.decode_json(raw) is not None


@FAST
@given(
    st.dictionaries(
        st.sampled_from(
            ["Name", "Driver", "IPAM", "Options", "Labels", "EnableIPv6", "Internal", "Attachable"]
        ),
        json_values,
        max_size=8,
    )
)
def test_network_create_body(body: dict[str, Any]) -> None:
    try:
        spec = spec_from_request(body)
    except InvalidConfig:
        return
    for k, v in {**spec.options, **spec.labels}.items():
        assert _no_line_breakers(k + v)


SANDBOX_KEYS = [
    "Cmd",
    "Name",
    "Networks",
    "NetworkMode",
    "Publish",
    "Env",
    "Hostname",
    "Dns",
    "DnsSearch",
    "DnsOptions",
    "ExtraHosts",
    "WorkingDir",
]


@FAST
@given(st.dictionaries(st.sampled_from(SANDBOX_KEYS), json_values, max_size=8))
def test_sandbox_create_body(body: dict[str, Any]) -> None:
    body.setdefault("Cmd", ["true"])
    try:
        spec = _sandbox_spec(body)
    except KanalError as e:
        assert isinstance(e, InvalidConfig | DecodeError), e
        return
    validate.sandbox(spec)  # what the API accepts, the engine accepts
    for s in [spec.hostname, *spec.dns, *spec.dns_search, *spec.dns_options, *spec.extra_hosts]:
        assert _no_line_breakers(s) and "\n" not in s


@FAST
@given(nasty)
def test_query_and_filters(qs: str) -> None:
    try:
        q = _query(qs)
        _filters(q)
    except KanalError as e:
        assert e.http_status == 400


@FAST
@given(nasty)
def test_publish_spec(s: str) -> None:
    try:
        for b in parse_publish(s):
            assert 1 <= b.container_port <= 65535 and b.protocol in ("tcp", "udp", "sctp")
    except InvalidConfig:
        pass


class _Recorder:
    """Plugin handlers that only record what reached them (the parser is under test)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        def handler(req: Any = None) -> dict[str, Any]:
            self.calls.append((name, req))
            return {}

        return handler


@FAST
@given(
    st.sampled_from(
        [f"NetworkDriver.{m}" for m in NETWORK_METHODS] + [f"IpamDriver.{m}" for m in IPAM_METHODS]
    ),
    st.binary(max_size=100) | st.builds(lambda v: json.dumps(v).encode(), json_values),
)
def test_docker_plugin_messages(path: str, raw: bytes) -> None:
    rec = _Recorder()
    status, reply = Dispatcher(rec, rec).handle("/" + path, raw)
    if status == 400:
        assert reply["Err"] and not rec.calls  # refused before any handler ran
    else:
        assert status == 200 and "Err" not in reply, reply
        for _, req in rec.calls:  # every id that reached a handler is a sane token
            for field in ("network_id", "endpoint_id"):
                v = getattr(req, field, None)
                if v is not None:
                    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", v), v


@FAST
@given(st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_cni_configs(raw: bytes) -> None:
    for parse in (parse_plugin_conf, parse_conflist):
        try:
            parse(raw)
        except KanalError as e:
            assert e.code in (1, 2, 6, 7), e


@FAST
@given(nasty)
def test_cni_environment(s: str) -> None:
    for check in (validate_container_id, validate_ifname):
        try:
            check(s)
        except KanalError as e:
            assert e.code in (3, 4)
            continue
        assert "\n" not in s and "/" not in s and s not in (".", "..")
    try:
        pairs = parse_cni_args(s)
    except KanalError as e:
        assert e.code == 4
        return
    assert all("=" not in k for k, _ in pairs)
