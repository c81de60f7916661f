"""The cluster layer: hosts sharing overlay networks through etcd.

Modules (each one's docstring is its contract):

- :mod:`kanal.cluster.nodes` — host registration under a lease (``nodes/<name>``),
  listing, and the "gone for a grace period" tracker used by garbage collection.
- :mod:`kanal.cluster.gipam` — global IPAM: per-host address blocks claimed by
  compare-and-swap, one key per address written under a block-ownership fence,
  garbage collection of a dead host's blocks.
- :mod:`kanal.cluster.vxlan` — one VXLAN device per overlay network on a host, and
  the FDB / neighbour / route entries it needs (desired state, diff, apply).
- :mod:`kanal.cluster.agent` — :class:`~kanal.cluster.agent.OverlayAgent`: watches
  ``nodes/`` and ``overlay/`` and keeps the kernel entries in step, with a periodic
  full reconcile.
- :mod:`kanal.cluster.member` — :class:`~kanal.cluster.member.ClusterMember`, the
  above composed for a daemon, and cluster-unique VNIs.

Keyspace (relative to the etcd store's prefix, e.g. ``/kanal/``)::

    nodes/<name>                          Node JSON, on the host's lease
    ipam/<pool>/blocks/<a.b.c.d-len>      {"host", "epoch", "claimed"}   durable
    ipam/<pool>/ips/<a.b.c.d-len>/<ip>    {"host", "owner", "token"}      durable
    overlay/<net>/endpoints/<id>          {"ip", "mac", "host", "vtep"}   durable
    vnis/<vni>                            <network id>                    durable
    vni-of/<network id>                   <vni>                           durable
    vni-next                              where the next VNI search starts

Everything here talks to :class:`kanal.store.etcd.EtcdStore` (leases, watches and
txn compares are beyond the generic Store contract). Errors are kanal.errors:
``Unavailable`` when etcd cannot be reached in time, ``Conflict`` for lost races
that are final (pool exhausted, node name taken by another address).
"""
