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
- connections are bounded in time and number (`nbmcp.web.server_limits`), as for every page nbmcp serves.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..web import security_settings

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_REQUEST_BODY_BYTES",
    "MCP_PATH",
    "BearerTokenMiddleware",
    "http_app",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4040
MCP_PATH = "/mcp"
HEALTH_PATH = "/api/healthz"
#: Largest MCP request body accepted (a cell source of a few MB is already unusual).
MAX_REQUEST_BODY_BYTES = 8 * 1024 * 1024


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
