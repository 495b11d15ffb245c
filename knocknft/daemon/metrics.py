"""The Prometheus endpoint: the daemon's counters as text exposition format 0.0.4 on /metrics.

The packet loop never waits on it and takes no lock for it: every few seconds the loop hands
over the stats dict it just wrote to stats.json (`publish`, one reference assignment), and a
thread of its own renders whatever dict it holds when a scrape comes. One scrape is served at a
time, each with a time limit, so a slow or hostile client can hold up scrapes but nothing else
and never makes the daemon start threads without bound.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import MappingProxyType
from typing import Any

from knocknft.config import ListenAddress
from knocknft.daemon.stats import STATS, DaemonStats
from knocknft.errors import KnocknftError

log = logging.getLogger("knocknft")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds a client may take to send its request and read the answer.
CLIENT_TIME_LIMIT = 5.0


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


class _Server(HTTPServer):
    """One request at a time (no ThreadingMixIn): scrapes are rare, and no client can make the
    daemon start threads."""

    def __init__(self, address: ListenAddress) -> None:
        self.address_family = socket.AF_INET6 if address.host.version == 6 else socket.AF_INET
        self.snapshot: Mapping[str, object] | None = None
        super().__init__((str(address.host), address.port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIME_LIMIT

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, "text/plain; charset=utf-8", "knocknft serves /metrics only\n")
            return
        snapshot = self.server.snapshot
        if snapshot is None:
            self._answer(503, "text/plain; charset=utf-8", "no stats yet\n")
            return
        self._answer(200, CONTENT_TYPE, render_metrics(snapshot))

    def _answer(self, code: int, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not worth a log line


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
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics on http://%s/metrics", address)

    def publish(self, stats: DaemonStats) -> None:
        """Hand over the latest stats: a read-only copy, swapped in by one assignment."""
        self._server.snapshot = MappingProxyType(dict(stats))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=CLIENT_TIME_LIMIT)
