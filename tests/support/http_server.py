"""A real HTTP server on 127.0.0.1 for download tests: Range, redirects, errors, dropped connections, HTML pages,
query-dependent answers (Google Drive's confirmation form) and HEAD with extra headers (the Hugging Face hub)."""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    redirect_to: str | None = None
    drop_after: int | None = None  # close the connection after this many body bytes ...
    drops_left: int = 0  # ... this many times
    honour_range: bool = True
    endless: bool = False  # no Content-Length, the body never ends (until the client hangs up)
    range_from: int | None = None  # answer a Range request with 206 from this byte, whatever was asked
    content_length: int | None = None  # announce this Content-Length instead of the true one
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (X-Linked-Size, ...)
    needs_query: dict[str, str] | None = None  # serve this route only when the query has these values ...
    otherwise: Route | None = None  # ... else this one (a confirmation page)


@dataclass
class FileServer:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def start(self) -> FileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _route(self) -> Route | None:
                route = server.routes.get(self.path.split("?")[0])
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                while route is not None and route.needs_query is not None and any(
                    query.get(key) != value for key, value in route.needs_query.items()
                ):
                    route = route.otherwise
                return route

            def do_HEAD(self) -> None:  # noqa: N802
                server.requests.append(("HEAD " + self.path, dict(self.headers.items())))
                route = self._route()
                if route is None:
                    self._simple(404, b"", head=True)
                    return
                self.send_response(302 if route.redirect_to else route.status)
                if route.redirect_to:
                    self.send_header("Location", route.redirect_to)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", "0" if route.redirect_to else str(len(route.body)))
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append((self.path, dict(self.headers.items())))
                route = self._route()
                if route is None:
                    self._simple(404, b"not found")
                    return
                if route.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", route.redirect_to)
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.status != 200:
                    self._simple(route.status, b"error")
                    return
                body, start = route.body, 0
                wanted = self.headers.get("Range")
                if route.endless:
                    self._endless(route)
                    return
                if wanted and route.range_from is not None:
                    start = route.range_from
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                elif wanted and route.honour_range:
                    start = int(wanted.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self._simple(416, b"")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", route.content_type)
                length = route.content_length if route.content_length is not None else len(body) - start
                self.send_header("Content-Length", str(length))
                self.end_headers()
                payload = body[start:]
                if route.drop_after is not None and route.drops_left > 0:
                    route.drops_left -= 1
                    self.wfile.write(payload[: route.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)

            def _endless(self, route: Route) -> None:
                self.send_response(200)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                block = (route.body or b"\0") * max(1, (1 << 16) // max(1, len(route.body or b"\0")))
                try:
                    while True:
                        self.wfile.write(block)
                except OSError:  # the client hung up: what a client that stops in time does
                    return

            def _simple(self, status: int, body: bytes, head: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def serve_tiny_pair(text: bytes, mmproj: bytes) -> FileServer:
    """A server with the tiny pair at /tiny.gguf and /mmproj.gguf (what tests.test_download.write_catalog lists)."""
    server = FileServer().start()
    server.routes["/tiny.gguf"] = Route(text)
    server.routes["/mmproj.gguf"] = Route(mmproj)
    return server
