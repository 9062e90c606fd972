"""HTTP probes and metrics: ``/healthz`` (live), ``/readyz``, ``/metrics``.

``/healthz`` fails when the event loop stopped turning or a message has been in flight for
longer than ``maxInFlightAgeS`` with Pulsar and the backend up: a stuck worker is restarted.

Served from a daemon thread by the standard library so a busy event loop can never make the
liveness probe time out; it only reads flags the loop maintains.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class HealthServer:
    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        live: Callable[[], bool],
    ) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/healthz":
                    ok = server.live()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"stuck\n", "text/plain")
                elif self.path == "/readyz":
                    ok = server.ready()
                    self._reply(
                        200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain"
                    )
                elif self.path == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # probes every few seconds would drown the structured logs

        self.ready = ready
        self.live = live
        self._httpd = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
