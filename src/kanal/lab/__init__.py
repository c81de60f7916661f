"""``kanal lab``: multi-host labs on one machine, with faults on demand.

A lab is N "hosts" — each a network namespace with its own kanald (state,
sockets, sandbox namespaces and cluster membership under the lab's directory) —
and an M-member etcd cluster, all on one underlay bridge in a namespace of its
own. Everything lives in namespaces the lab creates and is recorded on disk
(``<lab root>/<name>/lab.json``, root-only), so any later shell can list the lab,
inject faults and take it down; namespace names carry a random id, so labs and
parallel test runs never collide.

- :class:`~kanal.lab.lab.Lab` — ``Lab.up(LabSpec(...), root)``, ``Lab.load(name,
  root)``, ``lab.down()``; ``lab.run(member, *cmd)``, ``lab.kanal(host, *args)``,
  ``lab.env(member)``; faults: ``netem``, ``partition``/``heal``, ``kill``,
  ``freeze``/``thaw``, ``restart``, ``clear``; ``status()``.
- :class:`~kanal.lab.spec.LabSpec` — the options (hosts, etcd members, underlay
  MTU, OVS, the cluster timings given to kanald and etcd).
- :mod:`kanal.lab.impair` — link impairments in user space (the relay).
- :mod:`kanal.lab.record` — the on-disk record.

Used by ``kanal lab`` (kanal.cli.lab), by the multi-host tests and benchmarks
(tests/multihost.py) and by the examples.
"""

from kanal.lab.impair import Impairment
from kanal.lab.lab import Lab
from kanal.lab.spec import LabSpec

__all__ = ["Impairment", "Lab", "LabSpec"]
