"""The metrics endpoint: HTTP on 127.0.0.1:PORT or on a Unix socket (root only, 0600).

Any GET path answers with the metrics (prometheus_client's handler: text format,
or OpenMetrics when asked for, gzip when accepted); one thread per request.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socketserver
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import MetricsHandler

from runner.errors import NirunnerError
from runner.model.types import MetricsConfig


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def get_request(self):  # type: ignore[no-untyped-def]
        conn, _ = super().get_request()
        return conn, ("unix", 0)  # the handler expects a (host, port) client address


class _TcpHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


class Endpoint:
    def __init__(self, config: MetricsConfig, registry: CollectorRegistry) -> None:
        self.config = config
        handler = MetricsHandler.factory(registry)
        path = config.unix_path
        try:
            if path is not None:
                sock = Path(path)
                sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if sock.is_socket():
                    sock.unlink()
                old = os.umask(0o177)  # born 0600: like the API, root only
                try:
                    self.server: socketserver.BaseServer = _UnixHTTPServer(path, handler)
                finally:
                    os.umask(old)
            else:
                self.server = _TcpHTTPServer(("127.0.0.1", config.port), handler)
        except OSError as e:
            raise NirunnerError(f"metrics: listen on {config.listen}: "
                                f"{e.strerror or e}") from None
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="metrics")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        path = self.config.unix_path
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
