"""Who may talk to `llavacam serve`: the Host and Origin checks that stop web pages from driving it.

A page in the user's browser can reach a loopback server two ways. DNS rebinding: `evil.example` resolves to
127.0.0.1, so the browser treats the server as the page's own origin — the `Host` header still says
`evil.example`, so only Host names that can legitimately reach this server are accepted. Cross-origin requests:
a page may POST a "simple" request (`text/plain`, a form) without asking first — it carries an `Origin`, so
requests from other origins are refused unless the operator allows that origin (`--cors-origin`), and bodies that
are not JSON are refused outright.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def is_loopback_bind(host: str) -> bool:
    address = _ip(host)
    return host in LOOPBACK_NAMES or (address is not None and address.is_loopback)


@lru_cache(maxsize=256)
def _is_local_address(text: str) -> bool:
    """Whether this machine owns the address: binding to it succeeds only then (portable, no interface list)."""
    address = _ip(text)
    if address is None:
        return False
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((text, 0))
        return True
    except OSError:
        return False


def machine_names() -> set[str]:
    """This machine's own names (`hostname`, its FQDN, and the mDNS `.local` name a phone uses)."""
    names: set[str] = set()
    with contextlib.suppress(OSError):
        hostname = socket.gethostname().lower()
        names |= {hostname, f"{hostname.split('.')[0]}.local"}
        names.add(socket.getfqdn().lower())
    return {n for n in names if n}


def split_host(value: str) -> tuple[str, str | None]:
    """`Host` header -> (lower-case host without brackets, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host.rstrip("."), port  # "localhost." is the same name, fully qualified
    return value.rstrip(".") if value.count(":") == 0 else value, None


class HostPolicy:
    """Which `Host` values and `Origin`s are accepted, given where the server is bound."""

    def __init__(self, bind_host: str, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> None:
        self.loopback_only = is_loopback_bind(bind_host)
        self.bind_host = bind_host.lower().strip("[]")
        extra = {h.strip().lower().strip("[]") for h in allowed_hosts if h.strip()}
        self.any_host = "*" in extra
        self.names = set(LOOPBACK_NAMES) | extra
        if not self.loopback_only:
            self.names |= machine_names()
        self.cors_origins = {o.strip().rstrip("/").lower() for o in cors_origins if o.strip()}
        self.any_origin = "*" in self.cors_origins

    def host_allowed(self, host: str) -> bool:
        if self.any_host or host in self.names or host.endswith(".localhost"):
            return True
        address = _ip(host)
        if address is None:
            return False
        if address.is_loopback:
            return True
        if self.loopback_only:
            return False
        if self.bind_host not in ("0.0.0.0", "::", ""):
            return host == self.bind_host
        return _is_local_address(host)

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if self.any_origin or origin in self.cors_origins:
            return True
        parts = urlsplit(origin)
        # Same origin (a page this server would itself serve) is not cross-origin.
        return parts.scheme in ("http", "https") and parts.netloc == host_header.strip().lower()


def _json_error(message: str, status: int, code: str, headers: dict[str, str] | None = None) -> tuple[int, bytes,
                                                                                                       list[Any]]:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": code}}).encode()  # fmt: skip
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, body, raw


class GuardMiddleware:
    """ASGI middleware applying a HostPolicy before any route runs; adds CORS headers for allowed origins."""

    JSON_TYPES = ("application/json",)

    def __init__(self, app: Any, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        origin = headers.get("origin")
        cors: dict[str, str] = {}
        if origin and refusal is None:
            cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                    "Access-Control-Expose-Headers": "Retry-After, X-LlavaCam-Image-Encode-Ms, "
                    "X-LlavaCam-Prompt-Tokens, X-LlavaCam-TTFT-Ms"}  # fmt: skip
        if refusal is None and scope["method"] == "OPTIONS":
            preflight = {**cors, "Allow": "GET, POST, OPTIONS", "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                         "Access-Control-Allow-Headers": "Authorization, Content-Type",
                         "Access-Control-Max-Age": "600", "Content-Length": "0"}  # fmt: skip
            await send({"type": "http.response.start", "status": 204,
                        "headers": [(k.lower().encode(), v.encode()) for k, v in preflight.items()]})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
            return
        if refusal is not None:
            status, body, raw = refusal
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
            return
        if not cors:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k.lower().encode(), v.encode()) for k, v in cors.items())]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _refusal(self, scope: Any, headers: dict[str, str]) -> tuple[int, bytes, list[Any]] | None:
        host_header = headers.get("host")
        if host_header is not None:
            host, _ = split_host(host_header)
            if not self.policy.host_allowed(host):
                return _json_error(
                    f"Host {host_header[:100]!r} is not one this server answers to (a web page using DNS "
                    "rebinding would send that); start the server with --allowed-host NAME to accept it",
                    403, "host_not_allowed")  # fmt: skip
        origin = headers.get("origin")
        if origin is not None and not self.policy.origin_allowed(origin, host_header or ""):
            return _json_error(
                f"requests from the web page at {origin[:100]!r} are refused; start the server with "
                "--cors-origin ORIGIN to allow that page", 403, "origin_not_allowed")  # fmt: skip
        if origin is None and headers.get("sec-fetch-site") == "cross-site" and not self.policy.any_origin:
            return _json_error("cross-site browser requests are refused (--cors-origin allows a page)", 403,
                               "origin_not_allowed")  # fmt: skip
        if scope["method"] == "POST":
            content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if content_type not in self.JSON_TYPES:
                return _json_error(
                    f"the request body must be JSON sent as 'Content-Type: application/json' (got "
                    f"{content_type[:60] or 'no content type'!r})", 415, "unsupported_media_type")  # fmt: skip
        return None
