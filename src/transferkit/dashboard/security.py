"""The dashboard's gate: every request needs the start's random token (in the query once, then in
a cookie), a ``Host`` header naming the address the server listens on (DNS rebinding: a page on
another site that resolves its own name to 127.0.0.1 still sends its own name), and every
response carries a Content-Security-Policy that lets a page load and connect to this server only.

A pure ASGI middleware, so that server-sent event streams pass through unbuffered.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["CSP", "Gate", "allowed_hosts", "cookie_name"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Only this server: no CDN, no fonts, no inline script, no frames, forms post here only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def cookie_name(port: int) -> str:
    """Cookies are not scoped by port: two dashboards on one host keep their own token."""
    return f"transferkit_dashboard_{port}"


def allowed_hosts(host: str, port: int) -> set[str]:
    """The ``Host`` header values a browser sends for this server's own address."""
    names = {host}
    wildcard = host in ("0.0.0.0", "::", "")
    if wildcard or _is_loopback(host):
        names |= {"localhost", "127.0.0.1", "::1"}
    if wildcard:  # reachable by the machine's own names and addresses only
        names |= {socket.gethostname(), socket.getfqdn()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            pass
    return {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Gate:
    """Check the Host header and the token of every request; add the security headers.

    ``allowed`` and ``port`` are set once the socket is bound (``--port 0`` picks the port).
    """

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token
        self.allowed: set[str] = set()
        self.port = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host", "").lower() not in self.allowed:
            await _plain(send, 421, "Unknown Host header: open the dashboard with the address it printed.")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if hmac.compare_digest(query.get("token", ""), self.token):
            await self._set_cookie_and_redirect(scope, query, send)
            return
        if not hmac.compare_digest(_cookie(headers.get("cookie", ""), cookie_name(self.port)), self.token):
            await _plain(send, 403, "Forbidden: open the dashboard with the address it printed "
                                    "(http://HOST:PORT/?token=...); every start has a new token.")
            return
        await self.app(scope, receive, _with_headers(send))

    async def _set_cookie_and_redirect(self, scope: Scope, query: dict[str, str], send: Send) -> None:
        """The token moves from the address bar (history, screenshots) into an HttpOnly cookie."""
        rest = urlencode({k: v for k, v in query.items() if k != "token"})
        location = scope.get("path", "/") + (f"?{rest}" if rest else "")
        cookie = f"{cookie_name(self.port)}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1")),
            (b"content-length", b"0"), *_HEADERS]})
        await send({"type": "http.response.body", "body": b""})


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def _with_headers(send: Send) -> Send:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = [*message.get("headers", []), *(h for h in _HEADERS if h[0] not in present)]
        await send(message)
    return wrapped


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        *_HEADERS]})
    await send({"type": "http.response.body", "body": body})
