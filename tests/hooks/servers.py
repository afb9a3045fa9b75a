"""Small stdlib HTTP servers for transport tests: behaviours pytest-httpserver cannot produce (a body that drips,
a chosen bind address such as 127.0.0.2, a raw gzip stream), each in the API's JSON format where it answers.

Each server runs ``serve_forever`` in one daemon thread and handles requests in that same thread (no thread per
request), so a test can count threads; handlers that wait do so on ``server.stopping`` so that shutdown is quick.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Server(http.server.HTTPServer):
    """An HTTP server whose handler is a plain function of the request handler; it records the requests."""

    def __init__(self, host: str, respond: Callable[[http.server.BaseHTTPRequestHandler], None]) -> None:
        self.respond = respond
        self.stopping = threading.Event()
        #: (path, headers) of every request received
        self.requests: list[tuple[str, dict[str, str]]] = []
        super().__init__((host, 0), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.server.requests.append((self.path, dict(self.headers.items())))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client may give up: that is the test
            self.server.respond(self)
        # one request per connection: a kept-alive connection would hold the server's only thread (and shutdown)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass


@contextlib.contextmanager
def running(respond: Callable[[http.server.BaseHTTPRequestHandler], None], host: str = "127.0.0.1") -> Iterator[Server]:
    """Serve ``respond`` on ``host`` (a free port) for the duration of the block."""
    server = Server(host, respond)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def send(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None):
    """Answer with ``body`` (its Content-Length set unless the headers say otherwise)."""
    handler.send_response(status)
    headers = {"Content-Type": "application/json", "Connection": "close", **(headers or {})}
    if "Transfer-Encoding" not in headers:
        headers.setdefault("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()
