"""What every HTTP endpoint nbmcp serves shares: who may reach it, and how much one client may hold.

The MCP transport (`nbmcp.server.http`) and the live view (`nbmcp.view`) both serve HTTP on a laptop,
which is what a malicious web page can reach through DNS rebinding, so both:

- bind to loopback by default (`is_loopback` tells a reachable address);
- check Host and Origin on every request (`security_settings`, for the SDK's TransportSecurityMiddleware:
  a bad Host gets 421, a bad Origin 403);
- run uvicorn with `server_limits()`: a connection must deliver its whole request within
  REQUEST_TIMEOUT seconds, an idle keep-alive connection is closed after KEEP_ALIVE_TIMEOUT, and
  connections beyond MAX_CONNECTIONS are closed as soon as they are accepted, so a flood of half-open
  connections cannot exhaust the process's file descriptors (issue 13: 1,100 of them stopped the server
  answering).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    # The MCP library costs a second of imports: only where a page is served (`nbmcp doctor` imports
    # `is_loopback` from here and must not pay for it, issue 26).
    from mcp.server.transport_security import TransportSecuritySettings

__all__ = [
    "KEEP_ALIVE_TIMEOUT",
    "MAX_CONNECTIONS",
    "REQUEST_TIMEOUT",
    "GuardedH11Protocol",
    "is_loopback",
    "security_settings",
    "server_limits",
]

logger = logging.getLogger(__name__)

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
    from mcp.server.transport_security import TransportSecuritySettings

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
