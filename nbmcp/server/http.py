"""Streamable HTTP: the ASGI app (MCP at /mcp, GET /api/healthz) and its security.

An HTTP server on a laptop is what a malicious web page can reach through DNS rebinding, so:

- the default bind is loopback; a non-loopback bind refuses to start without a bearer token;
- Host and Origin are checked on every MCP request (bad Host 421, bad Origin 403: the MCP transport
  spec's answers, given by the SDK's TransportSecurityMiddleware);
- with a token, every MCP request must carry `Authorization: Bearer <token>` (compared in constant
  time) or gets 401; the token is never logged;
- request bodies are capped (413);
- `/api/healthz` gets the same Host/Origin checks; with a token configured, a request without it learns
  only `{"status": ...}`, never the folder or notebook paths;
- a connection must deliver its whole request within REQUEST_TIMEOUT seconds, an idle keep-alive
  connection is closed after KEEP_ALIVE_TIMEOUT, and connections beyond MAX_CONNECTIONS are closed as
  soon as they are accepted: a flood of half-open connections cannot exhaust the process's file
  descriptors (issue 13: 1,100 of them stopped the server answering).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from .. import __version__

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "KEEP_ALIVE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_REQUEST_BODY_BYTES",
    "MCP_PATH",
    "REQUEST_TIMEOUT",
    "BearerTokenMiddleware",
    "GuardedH11Protocol",
    "http_app",
    "is_loopback",
    "security_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4040
MCP_PATH = "/mcp"
HEALTH_PATH = "/api/healthz"
#: Largest MCP request body accepted (a cell source of a few MB is already unusual).
MAX_REQUEST_BODY_BYTES = 8 * 1024 * 1024

#: Seconds a new connection has to deliver its request (headers and body); then it is closed.
REQUEST_TIMEOUT = 10.0
#: Seconds an idle keep-alive connection stays open after a response.
KEEP_ALIVE_TIMEOUT = 5
#: Open connections at most; one more is closed as soon as it is accepted. A client holds one or two
#: (its requests and, while listening, a GET stream), so this serves dozens of clients at once.
MAX_CONNECTIONS = 200

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    """True for an address or name that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def security_settings(host: str, extra_hosts: tuple[str, ...] = ()) -> TransportSecuritySettings:
    """Host/Origin allow-lists: loopback names, plus the bind address and names given by the user."""
    names = list(_LOOPBACK_NAMES)
    if not is_loopback(host):
        if host not in ("0.0.0.0", "::", ""):
            names.append(f"[{host}]" if ":" in host else host)
        else:
            # Bound to every interface: the machine's own name is how others will reach it.
            names.append(socket.gethostname())
    names += list(extra_hosts)
    hosts = [h for n in names for h in (n, f"{n}:*")]
    origins = [o for n in names for o in (f"http://{n}", f"http://{n}:*", f"https://{n}", f"https://{n}:*")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


class BearerTokenMiddleware:
    """Refuses MCP requests that lack `Authorization: Bearer <token>` (401)."""

    def __init__(self, app: ASGIApp, token: str, protected_prefix: str = MCP_PATH) -> None:
        self.app = app
        self._token = token.encode()
        self._prefix = protected_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self._prefix):
            header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            scheme, _, given = header.partition(b" ")
            # compare_digest: the time taken does not reveal how much of a guess was right.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self._token):
                response = Response(
                    json.dumps({"error": "missing or wrong bearer token"}),
                    status_code=401,
                    media_type="application/json",
                    headers={"WWW-Authenticate": 'Bearer realm="nbmcp"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request and a cap on open connections.

    uvicorn times out idle keep-alive connections but not one that never completes its first request,
    so a slow or half-open client kept a file descriptor forever.
    """

    _request_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > MAX_CONNECTIONS:
            logger.warning("over %d open connections; closing a new one", MAX_CONNECTIONS)
            transport.close()
            return
        self._request_deadline = self.loop.call_later(REQUEST_TIMEOUT, self._drop_if_incomplete)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
        super().connection_lost(exc)

    def _drop_if_incomplete(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.more_body:
            logger.info("closing a connection that sent no complete request within %g s", REQUEST_TIMEOUT)
            self.transport.close()


def server_limits() -> dict[str, Any]:
    """uvicorn.Config arguments that bound what one client can hold (see the module docstring)."""
    return {
        "http": GuardedH11Protocol,
        "timeout_keep_alive": KEEP_ALIVE_TIMEOUT,
        # uvicorn answers 503 to a request arriving when this many connections or requests are open.
        "limit_concurrency": MAX_CONNECTIONS,
    }


def _has_token(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


HealthReport = Callable[[], Awaitable[dict[str, Any]]]


def http_app(
    server: MCPServer,
    *,
    host: str,
    token: str | None,
    health: HealthReport,
    extra_hosts: tuple[str, ...] = (),
) -> ASGIApp:
    """The ASGI app serving MCP at /mcp and the health check at /api/healthz."""

    security = security_settings(host, extra_hosts)
    checks = TransportSecurityMiddleware(security)

    @server.custom_route(HEALTH_PATH, methods=["GET"])  # type: ignore[untyped-decorator]  # SDK leaves it untyped
    async def healthz(request: Request) -> Response:
        # The same DNS-rebinding checks as /mcp: the answer names the folder and notebooks.
        refused = await checks.validate_request(request, is_post=False)
        if refused is not None:
            return refused
        if token and not _has_token(request, token):
            # Enough for a load balancer's probe; paths and versions only for the token's holder.
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "ok", "version": __version__, **(await health())})

    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=security,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
        host=host,
    )
    if token:
        app = BearerTokenMiddleware(app, token)
    return app
