"""A real HTTP receiver on 127.0.0.1 for notification tests: it can be up, down, slow or failing.

It records every request it answered (or started to answer), so a test can check bodies, headers
and idempotency keys. Anything a test starts it stops: use it as a context manager.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from support.ports import free_port


@dataclass
class Request:
    """One request as received."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``behaviour``: "ok" (204), "fail" (500) or "slow" (answer 200 after ``delay`` seconds)."""

    behaviour: str = "ok"
    delay: float = 5.0
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"  # the real node's gateway, for an operator that runs in a pod
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                behaviour = receiver.behaviour
                status = {"ok": 204, "fail": 500, "slow": 200}[behaviour]
                with receiver._lock:
                    receiver.requests.append(
                        Request(self.path, dict(self.headers.items()), body, time.time(), status)
                    )
                if behaviour == "slow":
                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # The same port after a restart ("down", then "up" again).
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def received(self, path: str | None = None, status: int | None = None) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (path is None or r.path == path) and (status is None or r.status == status)
            ]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
