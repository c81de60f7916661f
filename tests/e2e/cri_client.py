"""A small CRI v1 client (no crictl in Debian 12): hand-encoded protobuf over grpcio.

Only the messages the containerd test needs, with the field numbers of
k8s.io/cri-api/pkg/apis/runtime/v1/api.proto. Encoding is the protobuf wire
format (varints and length-delimited fields); decoding returns
``{field number: [values]}`` (bytes for length-delimited ones).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import grpc

SERVICE = "/runtime.v1.RuntimeService/"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num: int, value: int | str | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def fields(pairs: Iterable[tuple[int, int | str | bytes]]) -> bytes:
    return b"".join(field(n, v) for n, v in pairs)


def decode(data: bytes) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wire = key >> 3, key & 7
        v: int | bytes
        if wire == 0:
            v, i = _read_varint(data, i)
        elif wire == 2:
            n, i = _read_varint(data, i)
            v, i = data[i : i + n], i + n
        elif wire == 1:
            v, i = data[i : i + 8], i + 8
        elif wire == 5:
            v, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.setdefault(num, []).append(v)
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


class CriClient:
    def __init__(self, socket_path: str) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: str, body: bytes, timeout: float = 120) -> dict[int, list[Any]]:
        fn = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        return decode(fn(body, timeout=timeout))

    def version(self) -> str:
        got = self._call("Version", field(1, "v1"))
        name: bytes = got.get(2, [b""])[0]  # runtime_name
        return name.decode()

    def run_pod_sandbox(
        self,
        name: str,
        uid: str,
        namespace: str,
        log_dir: str,
        port_mappings: Iterable[tuple[int, int, str]] = (),
    ) -> str:
        """``port_mappings``: (container port, host port, host IP), TCP."""
        metadata = fields([(1, name), (2, uid), (3, namespace), (4, 0)])
        linux = b""  # no security context: containerd's defaults
        config = fields([(1, metadata), (2, name), (3, log_dir)])
        for container_port, host_port, host_ip in port_mappings:
            # PortMapping: protocol=1 (TCP is 0, the default), container_port=2,
            # host_port=3, host_ip=4
            config += field(5, fields([(2, container_port), (3, host_port), (4, host_ip)]))
        config += field(8, linux)
        got = self._call("RunPodSandbox", field(1, config))
        return str(got[1][0].decode())

    def pod_sandbox_status(self, sandbox_id: str) -> tuple[str, str, str]:
        """(state name, pod IP, network namespace path)."""
        got = self._call("PodSandboxStatus", fields([(1, sandbox_id), (2, 1)]))
        status = decode(got[1][0])
        state = {0: "SANDBOX_READY", 1: "SANDBOX_NOTREADY"}.get(
            status.get(3, [0])[0], str(status.get(3))
        )
        ip = ""
        if 5 in status:
            ip = decode(status[5][0]).get(1, [b""])[0].decode()
        netns = ""
        for entry in got.get(2, []):  # map<string, string> info
            kv = decode(entry)
            if kv.get(1, [b""])[0] == b"info":
                info = json.loads(kv[2][0])
                for ns in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
                    if ns.get("type") == "network":
                        netns = ns.get("path", "")
        return state, ip, netns

    def list_pod_sandboxes(self) -> list[str]:
        """The ids of every pod sandbox containerd knows."""
        got = self._call("ListPodSandbox", b"")
        return [decode(item)[1][0].decode() for item in got.get(1, [])]

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self._call("StopPodSandbox", field(1, sandbox_id))

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._call("RemovePodSandbox", field(1, sandbox_id))
