"""The server's guards: security headers on every response, the access token
when the server listens beyond this machine, the Host check against DNS
rebinding on loopback, and the CSRF token of write actions.

Pure ASGI middleware (no per-request task or body buffering), so a guard
costs a few dictionary lookups.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import URL, Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSP",
    "TOKEN_COOKIE",
    "AccessGuard",
    "SecurityHeaders",
    "is_loopback",
    "new_secret",
    "same_secret",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""Scripts and styles from this server's static files only: nothing inline, nothing
from elsewhere, no plugins, no framing. Images may be data: URLs (raster images
from payloads, decoded and re-encoded)."""

_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]

TOKEN_COOKIE = "aisopod_token"
"""The token cookie's name, before the server's port: browsers share cookies
between the ports of one host, and two servers there have two tokens."""
_LOOPBACK_NAMES = ("localhost",)


def new_secret() -> str:
    """A fresh random secret (an access or CSRF token)."""
    return secrets.token_urlsafe(32)


def same_secret(given: str | None, expected: str) -> bool:
    """Whether `given` is the secret, compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def is_loopback(host: str) -> bool:
    """Whether a host to bind names this machine only."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SecurityHeaders:
    """Adds the CSP and the other hardening headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = kept + _HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


class AccessGuard:
    """Refuses requests for another host (DNS rebinding) and, with a token,
    requests without it.

    The token is accepted as `Authorization: Bearer T`, as the cookie it sets,
    or once as `?token=T` in the address the command prints: that answer is a
    redirect to the same address without it, setting the cookie (HttpOnly,
    SameSite=Strict), so the token leaves the address bar and the history.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, hosts: Iterable[str] | None) -> None:
        self.app = app
        self.token = token
        self.hosts = None if hosts is None else {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        if self.hosts is not None and _host_name(headers.get("host", "").lower()) not in self.hosts:
            return PlainTextResponse("unknown host", status_code=421)
        if self.token is None:
            return None
        authorization = headers.get("authorization", "")
        if authorization.startswith("Bearer ") and same_secret(authorization[7:], self.token):
            return None
        name = _cookie_name(scope)
        cookie = SimpleCookie(headers.get("cookie", ""))
        if name in cookie and same_secret(cookie[name].value, self.token):
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        given = dict(query).get("token")
        if given is not None and same_secret(given, self.token) and scope["method"] == "GET":
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            target = URL(scope=scope).replace(query=rest)
            response = RedirectResponse(f"{target.path}{'?' + rest if rest else ''}", 303)
            response.set_cookie(name, self.token, httponly=True, samesite="strict")
            return response
        return PlainTextResponse(
            "this server needs its access token (open the address it printed)", status_code=401
        )


def _cookie_name(scope: Scope) -> str:
    server = scope.get("server")
    return f"{TOKEN_COOKIE}_{server[1]}" if server and server[1] else TOKEN_COOKIE


def _host_name(host: str) -> str:
    """The name in a Host header, without its port (`[::1]:8765` -> `[::1]`)."""
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host
