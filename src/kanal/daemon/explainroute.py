"""``GET /explain?src=REF&dst=REF[:PORT[/PROTO]]``: ``kanal explain``'s answer.

The references are resolved in the engine's records and the walk reads the kernel of
kanald's own namespace (docs/explain.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kanal.daemon.getters import query_one
from kanal.engine.explain import explain
from kanal.engine.explainplaces import LiveKernel, Places, parse_target
from kanal.errors import InvalidConfig

if TYPE_CHECKING:
    from kanal.daemon.api import ApiServer
    from kanal.daemon.routes import Request

__all__ = ["explain_route"]


def explain_route(api: ApiServer, req: Request) -> Any:
    src_ref = query_one(req.query, "src", "")
    dst_text = query_one(req.query, "dst", "")
    if not src_ref or not dst_text:
        raise InvalidConfig("explain needs src and dst")
    dst_ref, port, proto = parse_target(dst_text)
    assert api.manager is not None  # the route table only routes here with sandboxes on
    kernel = LiveKernel()
    places = Places(api.controller, api.manager, kernel)
    src, dst = places.resolve(src_ref), places.resolve(dst_ref)
    places.pair(src, dst)
    return explain(src, dst, port, proto, kernel, owner=places.owner).to_json()
