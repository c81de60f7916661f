"""Many allocators on one directory: threads of this process plus other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from kanal.ipam import hostlocal
from kanal.ipam.disk import disk_store, forget_stores
from kanal.ipam.diskfiles import INDEX_NAME

THREADS = 8
PER_THREAD = 100
PROCS = 2
PER_PROC = 100

_WORKER = r"""
import json, sys
from kanal.ipam import hostlocal
from kanal.ipam.disk import disk_store
conf = hostlocal.load_conf(json.loads(sys.argv[1]))
store = disk_store(conf.data_dir, conf.name)
out = {}
for i in range(int(sys.argv[3])):
    cid = f"{sys.argv[2]}-{i}"
    out[cid] = str(hostlocal.add(conf, store, cid, "eth0").ips[0].address.ip)
print(json.dumps(out))
"""


def raw_conf(tmp_path: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "busy",
        "ipam": {
            "type": "host-local",
            "dataDir": str(tmp_path / "data"),
            "ranges": [[{"subnet": "10.50.0.0/21"}]],
        },
    }


@pytest.mark.slow
def test_threads_and_processes_never_share_an_address(tmp_path: Path) -> None:
    forget_stores()
    raw = raw_conf(tmp_path)
    conf = hostlocal.load_conf(raw)
    store = disk_store(conf.data_dir, conf.name)
    got: dict[str, str] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS + 1)

    def worker(t: int) -> None:
        try:
            start.wait()
            for i in range(PER_THREAD):
                cid = f"t{t}-{i}"
                ip = str(hostlocal.add(conf, store, cid, "eth0").ips[0].address.ip)
                with lock:
                    got[cid] = ip
        except BaseException as e:
            errors.append(e)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, json.dumps(raw), f"p{p}", str(PER_PROC)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for p in range(PROCS)
    ]
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    start.wait()
    for th in threads:
        th.join()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        got.update(json.loads(out))
    assert not errors, errors

    total = THREADS * PER_THREAD + PROCS * PER_PROC
    assert len(got) == total
    assert len(set(got.values())) == total, "an address was handed out twice"
    d = tmp_path / "data" / "busy"
    on_disk = {n: (d / n).read_bytes() for n in os.listdir(d) if n[0].isdigit()}
    assert len(on_disk) == total
    for cid, ip in got.items():
        assert on_disk[ip] == f"{cid}\r\neth0".encode()

    for cid in got:
        hostlocal.delete(store, cid, "eth0")
    assert sorted(n for n in os.listdir(d) if n != INDEX_NAME) == ["last_reserved_ip.0", "lock"]
    forget_stores()
