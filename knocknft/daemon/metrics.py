"""The Prometheus endpoint: the daemon's counters as text exposition format 0.0.4 on /metrics.

The packet loop never waits on it and takes no lock for it: every few seconds the loop hands
over the stats dict it just wrote to stats.json (`publish`, one reference assignment), and a
thread of its own renders whatever dict it holds when a scrape comes.

That thread serves every client at once from one selector, and each client has one deadline for
its whole request and answer: a client that connects and dribbles bytes (or reads nothing) is
dropped when its time is up, whatever it does meanwhile, and holds up nobody else. The number of
open connections is bounded; past it the oldest is dropped, so a crowd of idle connections can
neither grow without bound nor keep a fresh scrape out.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from knocknft.config import ListenAddress
from knocknft.daemon.stats import STATS, DaemonStats
from knocknft.errors import KnocknftError

log = logging.getLogger("knocknft")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds a client may take to send its request and read the answer, all of it.
CLIENT_TIME_LIMIT = 5.0
# Open connections at most; a new one past this drops the oldest.
MAX_CLIENTS = 32
# A request's head (request line and headers) may be this long; a scrape's is a few hundred bytes.
MAX_REQUEST = 8192


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(stats: Mapping[str, object]) -> str:
    """The stats as Prometheus text: HELP and TYPE for each, values as the daemon wrote them
    (a snapshot of DaemonStats; a value missing from it is left out)."""
    lines = [
        "# HELP knocknft_info The running daemon's version.",
        "# TYPE knocknft_info gauge",
        f'knocknft_info{{version="{_escape_label(str(stats.get("version", "")))}"}} 1',
    ]
    for stat in STATS:
        value = stats.get(stat.key)
        if not isinstance(value, int | float):
            continue
        name = stat.metric_name
        lines += [f"# HELP {name} {stat.help}", f"# TYPE {name} {stat.kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def answer(head: bytes, snapshot: Mapping[str, object] | None) -> bytes:
    """The whole HTTP answer to a request's head (everything up to its blank line)."""
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return _response(400, "text/plain; charset=utf-8", "bad request\n")
    method, target = parts[0], parts[1]
    if method != b"GET":
        return _response(405, "text/plain; charset=utf-8", "knocknft answers GET only\n")
    if target.split(b"?", 1)[0] != b"/metrics":
        return _response(404, "text/plain; charset=utf-8", "knocknft serves /metrics only\n")
    if snapshot is None:
        return _response(503, "text/plain; charset=utf-8", "no stats yet\n")
    return _response(200, CONTENT_TYPE, render_metrics(snapshot))


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def _response(code: int, content_type: str, body: str) -> bytes:
    data = body.encode("utf-8")
    head = (
        f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + data


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    deadline: float
    received: bytearray = field(default_factory=bytearray)
    unsent: memoryview | None = None  # the answer, once the request is in


class _Server:
    """Every client at once, from one thread and one selector; each within its deadline."""

    def __init__(self, address: ListenAddress) -> None:
        family = socket.AF_INET6 if address.host.version == 6 else socket.AF_INET
        self.snapshot: Mapping[str, object] | None = None
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((str(address.host), address.port))
            self._listener.listen(MAX_CLIENTS)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self._wake, self._waker = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake, selectors.EVENT_READ)
        # Oldest first: dicts keep their insertion order.
        self._clients: dict[socket.socket, _Client] = {}
        self._stopping = False

    def serve(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            for client in [c for c in self._clients.values() if c.deadline <= now]:
                self._drop(client)  # out of time, whatever it was doing
            deadline = min((c.deadline for c in self._clients.values()), default=now + 60)
            for key, events in self._selector.select(max(0.0, deadline - now)):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is not self._wake:
                    client = self._clients.get(key.fileobj)  # type: ignore[call-overload]
                    if client is not None:
                        self._serve(client, events)
        for client in list(self._clients.values()):
            self._drop(client)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. out of file descriptors: the next select tries again
            if len(self._clients) >= MAX_CLIENTS:
                self._drop(next(iter(self._clients.values())))
            sock.setblocking(False)
            client = _Client(sock, time.monotonic() + CLIENT_TIME_LIMIT)
            self._clients[sock] = client
            self._selector.register(sock, selectors.EVENT_READ)

    def _serve(self, client: _Client, events: int) -> None:
        try:
            if client.unsent is None and events & selectors.EVENT_READ:
                self._receive(client)
            elif client.unsent is not None and events & selectors.EVENT_WRITE:
                self._send(client)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(client)

    def _receive(self, client: _Client) -> None:
        data = client.sock.recv(4096)
        if not data:
            self._drop(client)  # gone before asking
            return
        client.received += data
        end = client.received.find(b"\r\n\r\n")
        if end >= 0:
            reply = answer(bytes(client.received[:end]), self.snapshot)
        elif len(client.received) > MAX_REQUEST:
            reply = _response(431, "text/plain; charset=utf-8", "request too long\n")
        else:
            return
        client.unsent = memoryview(reply)
        self._selector.modify(client.sock, selectors.EVENT_WRITE)
        self._send(client)

    def _send(self, client: _Client) -> None:
        assert client.unsent is not None
        sent = client.sock.send(client.unsent)
        client.unsent = client.unsent[sent:]
        if not client.unsent:
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        del self._clients[client.sock]
        self._selector.unregister(client.sock)
        client.sock.close()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._waker.send(b"x")

    def close(self) -> None:
        self._selector.close()
        for sock in (self._listener, self._wake, self._waker):
            sock.close()


class MetricsServer:
    """/metrics on `address`, served by a thread of its own. Binds at once, so a port in use
    is an error at start, not a silent absence."""

    def __init__(self, address: ListenAddress) -> None:
        self.address = address
        try:
            self._server = _Server(address)
        except OSError as exc:
            raise KnocknftError(
                f"options.metrics: cannot serve on {address}: {exc.strerror or exc}; pick a free "
                "port or an address of this host"
            ) from exc
        # A daemon thread: it must never hold up the daemon's exit.
        self._thread = threading.Thread(target=self._server.serve, name="metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s/metrics", address)

    def publish(self, stats: DaemonStats) -> None:
        """Hand over the latest stats: a read-only copy, swapped in by one assignment."""
        self._server.snapshot = MappingProxyType(dict(stats))

    def close(self) -> None:
        self._server.stop()
        self._thread.join(timeout=CLIENT_TIME_LIMIT)
        if not self._thread.is_alive():
            self._server.close()
