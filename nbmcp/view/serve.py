"""Serving the live view on a port of its own: `nbmcp view`, and `nbmcp PATH --view` beside stdio."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import socket
from typing import Any
from urllib.parse import quote

import uvicorn

from ..config import Settings
from ..web import server_limits
from .app import ViewServer, new_token

__all__ = [
    "DEFAULT_VIEW_PORT",
    "RedactToken",
    "attach_view",
    "bind",
    "serve_beside",
    "serve_view",
    "stop_with",
    "url_host",
]

logger = logging.getLogger(__name__)

#: `nbmcp view`'s port (the MCP HTTP transport's default is 4040).
DEFAULT_VIEW_PORT = 4041


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: a free port); OSError says why not."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: a port left in TIME_WAIT by a previous run is reusable, one in use is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_host(host: str, sock: socket.socket) -> str:
    """http://HOST:PORT for the socket: the bind address, or 127.0.0.1 for every interface."""
    port = sock.getsockname()[1]
    name = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"http://{name}:{port}"


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: beside the MCP server, Ctrl+C is the MCP server's to handle."""

    def capture_signals(self) -> Any:
        return contextlib.nullcontext()


async def serve_view(view: ViewServer, sock: socket.socket, *, embedded: bool = False) -> None:
    """Serve the view on `sock` until cancelled, or (not `embedded`) until Ctrl+C stops uvicorn."""
    config = uvicorn.Config(
        view.app(),
        # nbmcp's own logging (stderr): uvicorn's default configuration would send access lines to stdout,
        # which over stdio carries only MCP messages.
        log_config=None,
        access_log=False,
        # The same bounds on each client as the MCP transport's (a request deadline, a connection cap).
        **server_limits(),
        # Event streams never end by themselves: give them a second, then close them.
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
    server = (_EmbeddedServer if embedded else uvicorn.Server)(config)
    # nbconvert takes about a second to import, a 10,000-cell notebook half a second to read: both in a
    # thread now, rather than in the first page's wait.
    asyncio.get_running_loop().run_in_executor(None, view.prepare)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # Stop as uvicorn stops on Ctrl+C: close the streams, the connections, the socket.
        server.should_exit = True
        await view.aclose()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        raise
    finally:
        await view.aclose()


class RedactToken(logging.Filter):
    """Replaces `token=...` in a log record's arguments (uvicorn's access log writes request paths)."""

    _TOKEN = re.compile(r"(?<=token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._TOKEN.sub("<redacted>", a) if isinstance(a, str) else a for a in record.args)
        return True


def attach_view(settings: Settings, sock: socket.socket | None) -> tuple[ViewServer | None, Settings]:
    """The view `nbmcp PATH --view` serves beside MCP, and the settings that carry its URL (None without --view).

    `sock`: where it is reached: its own socket over stdio, the HTTP transport's (then at /view/ on the
    same port, with the transport's token when there is one, so that one secret opens both).
    """
    if not settings.view or sock is None:
        return None, settings
    view = ViewServer(
        settings.path, token=settings.token or new_token(), host=settings.host, extra_hosts=settings.allowed_hosts
    )
    url = view.url(url_host(settings.host, sock))
    if settings.token:
        # The user's --token is never written to a log or an answer: the URL names it instead.
        url = url.replace(f"token={quote(settings.token)}", "token=<your --token>")
    # The HTTP transport's access log writes each request's path, and the view's carry the token.
    logging.getLogger("uvicorn.access").addFilter(RedactToken())
    # Logged once, on stderr (stdout carries only MCP messages).
    logger.warning("live view of %s: %s", settings.path, url)
    return view, dataclasses.replace(settings, view_url=url)


async def serve_beside(view: ViewServer | None, sock: socket.socket | None) -> None:
    """Serve `view` beside MCP over stdio until cancelled (nothing without --view)."""
    if view is not None and sock is not None:
        await serve_view(view, sock, embedded=True)


def stop_with(view: ViewServer | None, server: uvicorn.Server) -> None:
    """End `view`'s event streams when `server` (the HTTP transport's, which serves it) is told to stop."""
    if view is not None:
        view.closing_when = lambda: server.should_exit
