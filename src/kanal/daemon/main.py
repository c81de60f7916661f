"""``kanald``: serves the CNI fast path (later also the engine API, DNS, plugins)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from kanal.fastpath.install import DEFAULT_SOCKET

__all__ = ["main"]


def _warm_up() -> None:
    # Import everything a plugin request touches now, not on the first ADD.
    from kanal.plugins.registry import PLUGINS, load_plugin

    for name in PLUGINS:
        try:
            load_plugin(name)
        except Exception:  # one broken plugin must not take the others down
            logging.exception("plugin %s does not load", name)
    import kanal.netlink.handle
    import kanal.spec.convert  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="kanald", description="the kanal daemon")
    ap.add_argument("--socket", default=DEFAULT_SOCKET, help="fast-path socket for CNI plugins")
    ap.add_argument("--socket-mode", default="0600", help="permissions of the socket (octal)")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="kanald: %(message)s")
    from kanal.fastpath.server import FastPathServer

    _warm_up()
    from kanal.netlink import reaper

    left = reaper.reap_leftovers()
    if left:
        logging.warning("removed %d interfaces a previous kanald left to delete", left)
    reaper.enable()
    server = FastPathServer(args.socket, mode=int(args.socket_mode, 8))
    server.bind()

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"kanald: serving CNI plugins on {args.socket}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
