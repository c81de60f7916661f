"""kanald's REST API server: docker's network endpoints over a root-only unix socket.

The protocol is split as the Docker plugin protocol's is: :mod:`.routes` is the
one route table, :mod:`.messages` the typed requests (read through
:mod:`.getters`), :mod:`.shapes` the JSON answers, :mod:`.events` the event
stream's fan-out and :mod:`.resolvers` what a ``Container`` field names. Here:
the HTTP server, and its one error boundary — errors are ``{"message": "..."}``
with the status of the error's class (kanal.errors ``http_status``), like
docker's API; a bug is a 500 with a message, never a dropped connection.
See docs/rest-api.md.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kanal import validate
from kanal.daemon.dockerapi import API_VERSION
from kanal.daemon.events import EventBus, EventFilter
from kanal.daemon.getters import query_one
from kanal.daemon.messages import filters, parse_query
from kanal.daemon.resolvers import (
    ChainedSandboxes,
    NetnsSandboxes,
    NoSandboxes,
    SandboxResolver,
)
from kanal.daemon.routes import Reply, Stream, route
from kanal.engine.controller import Controller
from kanal.errors import KanalError
from kanal.unixsock import PrivateUnixServer, QuietHandler

if TYPE_CHECKING:
    from kanal.daemon.metrics import Metrics
    from kanal.engine.sandboxes import SandboxManager

__all__ = [
    "ApiServer",
    "ChainedSandboxes",
    "EventBus",
    "NetnsSandboxes",
    "SandboxResolver",
    "serve_in_thread",
]

log = logging.getLogger("kanal.api")
#: Seconds an API connection may sit idle (no request line) before it is closed.
IDLE_TIMEOUT = 60.0
#: Seconds a stopping daemon waits for requests already under way to finish.
DRAIN_TIMEOUT = 120.0
#: ``GET /metrics`` (an optional ``/v1.NN`` prefix as every route), served as text
_METRICS_PATH = re.compile(r"^(/v\d+\.\d+)?/metrics/?$")


class ApiServer(PrivateUnixServer):
    """The API on a root-only unix socket; the work is the controller's (and the
    sandbox manager's and resolver's, injected)."""

    allow_reuse_address = True

    def __init__(
        self,
        path: str,
        controller: Controller,
        *,
        sandboxes: SandboxResolver | None = None,
        events: EventBus | None = None,
        mode: int = 0o600,
        manager: SandboxManager | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        metrics: Metrics | None = None,
    ) -> None:
        self.controller = controller
        self.metrics = metrics  # GET /metrics: 404 without
        self.manager = manager  # when sandboxes are on (kanal run)
        self.plugin: Any = None  # kanal.dockerplugin.server.PluginServer, when served
        self.sandboxes = sandboxes or NoSandboxes()
        self.events = events or EventBus()
        controller.listeners.append(self.events.controller_listener)
        self.idle_timeout = idle_timeout
        self._busy = 0
        self._idle = threading.Condition()
        #: set when the daemon stops: long requests (wait, logs -f) end early
        self.stopping = threading.Event()
        super().__init__(path, _Handler, mode=mode, dir_mode=0o700)

    @contextmanager
    def operation(self) -> Iterator[None]:
        """Around one request's work: counted, so that a stopping daemon waits for it;
        the cluster's networks are listed once in it (Controller.one_listing)."""
        with self._idle:
            self._busy += 1
        try:
            with self.controller.one_listing():
                yield
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is under way; False if some still are after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        """The answer to one request (:func:`kanal.daemon.routes.route`)."""
        return route(self, method, path, query, body)

    def server_close(self) -> None:
        # No new connections; a request whose body was received runs to its end
        # (or its rollback) before the process may exit.
        self.stopping.set()
        super().server_close()
        if not self.wait_idle(DRAIN_TIMEOUT):
            log.warning("stopping with %d API requests still under way", self._busy)


class _Handler(QuietHandler):
    server: ApiServer
    server_version = "kanald"
    log = log

    def setup(self) -> None:
        super().setup()
        # An idle keep-alive connection does not hold a thread for ever.
        self.connection.settimeout(self.server.idle_timeout)

    def _docker_headers(self) -> None:
        # What docker clients read from every answer (/_ping's for negotiation).
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")

    def _send(self, status: int, body: Any) -> None:
        if isinstance(body, bytes):
            data, ctype = body, "text/plain; charset=utf-8"
        else:
            data = b"" if body is None else json.dumps(body).encode() + b"\n"
            ctype = "application/json"
        try:
            self.send_response(status)
            self._docker_headers()
            if body is not None:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:
            # The client left: what its request did stays done (or undone), only
            # the answer is lost.
            self.close_connection = True

    def _handle(self, method: str) -> None:
        """The API's one error boundary: whatever happens, the client gets JSON."""
        try:
            url = urlsplit(self.path)
            if url.path.rstrip("/").endswith("/events") and method == "GET":
                self._events(parse_query(url.query))
                return
            if (
                method == "GET"
                and self.server.metrics is not None
                and _METRICS_PATH.match(url.path)
            ):
                self._metrics(self.server.metrics)
                return
            raw = self.read_body()
            if raw is None:
                return  # the body never arrived whole: nothing is done
            body = validate.decode_json(raw)
            query = parse_query(url.query)
            # From here on the request runs to its end whatever the client does.
            with self.server.operation():
                result = self.server.route(method, url.path, query, body)
            if isinstance(result, Stream):
                self._stream(result)
            elif isinstance(result, Reply):
                self._send(result.status, result.body)
            else:
                self._send(200, result)
        except KanalError as e:
            self._send(e.http_status, {"message": str(e)})
        except Exception as e:  # never a dropped connection: the client gets a message
            log.exception("API %s %s", method, self.path)
            self._send(500, {"message": f"internal error: {e}"})

    def _metrics(self, metrics: Metrics) -> None:
        from kanal.daemon.metrics import CONTENT_TYPE  # lazy: only kanald has metrics

        data = metrics.render()
        try:
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _stream(self, s: Stream) -> None:
        """Chunks as they come, until they end or the client leaves."""
        try:
            self.send_response(200)
            self._docker_headers()
            self.send_header("Content-Type", s.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for chunk in s.chunks:
                if not chunk:
                    if _hung_up(self.connection):
                        break
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        finally:
            close = getattr(s.chunks, "close", None)
            if close is not None:
                close()

    def _events(self, query: dict[str, list[str]]) -> None:
        """The stream: the kept events since ``since``, then live ones, filtered;
        it ends at ``until`` (a bad filter or time: 400 before any event)."""
        f = EventFilter.parse(
            filters(query), query_one(query, "since", ""), query_one(query, "until", "")
        )
        bus = self.server.events
        past, q = bus.subscribe_since(f.since)
        try:
            self.send_response(200)
            self._docker_headers()
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for ev in itertools.chain(past, _drain(q, self.connection, f.until)):
                if f.match(ev):
                    line = json.dumps(ev).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")  # until passed: the stream's end
            self.wfile.flush()
        except OSError:
            pass
        finally:
            bus.unsubscribe(q)
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_HEAD(self) -> None:
        self._handle("HEAD")


def _drain(
    q: queue.Queue[dict[str, Any]], conn: socket.socket, until: int | None = None
) -> Iterator[dict[str, Any]]:
    """Events as they come, until the client hangs up (checked while none come) or
    the time ``until`` (ns) has passed."""
    while True:
        wait = 5.0
        if until is not None:
            left = (until - time.time_ns()) / 1e9
            if left < 0:
                return
            wait = min(wait, left + 0.001)
        try:
            yield q.get(timeout=wait)
        except queue.Empty:
            if _hung_up(conn):
                return


def _hung_up(conn: socket.socket) -> bool:
    try:
        ready, _, _ = select.select([conn], [], [], 0)
        return bool(ready) and conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def serve_in_thread(server: ApiServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="kanal-api", daemon=True)
    t.start()
    return t
