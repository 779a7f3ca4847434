"""The live view's web face: the page at /view/, its live stream of changes, and its guards.

Endpoints (all GET; nothing here changes anything):

- `/view/?token=T` the page of the notebook (or, for a folder, a list of its notebooks, each opening
  `/view/?token=T&nb=REL`);
- `/view/events?token=T[&nb=REL]` Server-Sent Events: a snapshot (the order and hash of every cell, the
  running cell), then only what changes (changed cells with their HTML, deleted ids, the order when it
  moved, the running cell's elapsed time and outputs so far, the cell a tool changed or ran last);
- `/view/cells?token=T[&nb=REL]&ids=a,b` the HTML of the cells the page shows (a 10,000-cell notebook
  is rendered only where the reader looks);
- `/view/static/NAME` the page's own script and styles (nothing secret; no token needed).

Guards, as for MCP over HTTP (see `nbmcp.server.http`): Host and Origin are checked by the SDK's
TransportSecurityMiddleware with the same settings (a wrong Host 421, a foreign Origin 403: no DNS
rebinding); a random token in the URL is required by the page, the stream and the cells (403 without
it, compared in constant time); the page is served with a strict Content-Security-Policy: scripts only
from /view/static (and the HTML-output frames' resize script, by its hash), images only inline, no
connection but to this server, so a notebook's HTML cannot run in the view's origin or send anything out.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..session.activity import Activity
from ..web import security_settings
from .live import NotebookFeed
from .render import FRAME_SCRIPT, pygments_css, warm_up

__all__ = [
    "HEARTBEAT",
    "MAX_CELLS_PER_REQUEST",
    "VIEW_PATH",
    "ViewServer",
    "content_security_policy",
    "new_token",
    "with_view",
]

logger = logging.getLogger(__name__)

VIEW_PATH = "/view"
#: Seconds between keep-alive comments on an idle event stream (so proxies and browsers keep it open).
HEARTBEAT = 15.0
#: Seconds between looks at whether the hosting server is stopping.
_STOP_POLL = 0.5
#: Cells one /cells request may ask for.
MAX_CELLS_PER_REQUEST = 500
#: Notebooks listed on a folder's index page at most.
_MAX_LISTED = 5_000

_STATIC = {
    "view.js": "application/javascript",
    "view.css": "text/css",
}

ActivityFor = Callable[[Path], Activity | None]


def new_token() -> str:
    """A random token for the view's URL."""
    return secrets.token_urlsafe(24)


def content_security_policy() -> str:
    """The page's CSP: own scripts and styles, inline images, the frames' resize script by its hash."""
    frame_hash = base64.b64encode(hashlib.sha256(FRAME_SCRIPT.encode()).digest()).decode()
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' 'sha256-{frame_hash}'",
            # Inline styles: ANSI 256-colour spans and the HTML-output frames' own <style>.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "frame-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static").joinpath(name).read_text(encoding="utf-8")


def _notebooks_under(folder: Path) -> list[str]:
    """Relative paths of the notebooks under `folder` (hidden folders and checkpoints left out)."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".ipynb") and not name.startswith("."):
                found.append(Path(root, name).relative_to(folder).as_posix())
                if len(found) >= _MAX_LISTED:
                    return found
    return found


class ViewServer:
    """The live view of one notebook, or of the notebooks under a folder, as an ASGI app."""

    def __init__(
        self,
        target: Path,
        *,
        token: str,
        host: str = "127.0.0.1",
        extra_hosts: tuple[str, ...] = (),
        activity_for: ActivityFor | None = None,
    ) -> None:
        self.target = target.absolute()
        self.token = token
        self.host = host
        self._activity_for = activity_for
        self._sessions: Mapping[Path, Any] | None = None
        self.closing_when: Callable[[], bool] | None = None
        """Tells when the server hosting the view is stopping (its event streams then end)."""
        # The MCP SDK's guard, imported only when a view is served: `nbmcp doctor` reads VIEW_PATH from
        # here and must not pay a second for the MCP library (issue 26).
        from mcp.server.transport_security import TransportSecurityMiddleware

        self._checks = TransportSecurityMiddleware(security_settings(host, extra_hosts))
        self._feeds: dict[Path, NotebookFeed] = {}
        if not self.target.is_dir():
            self.feed(None)  # made now, so that `prepare` in a thread and a request never make two
        self._closing = asyncio.Event()
        self._csp = content_security_policy()
        self._static = {name: _static_text(name) for name in _STATIC}
        self._static["pygments.css"] = pygments_css()

    # -- addresses --------------------------------------------------------------------------------

    def url(self, base: str, notebook: str | None = None) -> str:
        """The page's address under `base` (e.g. http://127.0.0.1:4041), with the token."""
        query = f"token={quote(self.token)}" + (f"&nb={quote(notebook)}" if notebook else "")
        return f"{base.rstrip('/')}{VIEW_PATH}/?{query}"

    def follow_sessions(self, hosts: Mapping[Path, Any]) -> None:
        """Show what the sessions of these notebooks do (`hosts[path].session.activity`), as they open."""
        self._sessions = hosts

    def activity_of(self, path: Path) -> Activity | None:
        """The activity of the session serving `path` in this process, if any."""
        if self._activity_for is not None:
            return self._activity_for(path)
        host = self._sessions.get(path) if self._sessions is not None else None
        session = getattr(host, "session", None)
        return getattr(session, "activity", None)

    def feed(self, notebook: str | None) -> NotebookFeed | None:
        """The feed of the target notebook, or of `notebook` (relative) under the target folder."""
        if self.target.is_dir():
            if not notebook or notebook not in _notebooks_under_cached(self.target, notebook):
                return None
            path = self.target / notebook
        elif notebook:
            return None
        else:
            path = self.target
        feed = self._feeds.get(path)
        if feed is None:
            feed = self._feeds[path] = NotebookFeed(path, lambda: self.activity_of(path))
        return feed

    def prepare(self) -> None:
        """Import the renderer and read a single notebook now, before the first page asks (blocking)."""
        warm_up()
        feed = self._feeds.get(self.target)
        if feed is not None:
            feed.load()

    async def aclose(self) -> None:
        """End the event streams and stop the watches."""
        self._closing.set()
        for feed in list(self._feeds.values()):
            await feed.stop()

    # -- the app ----------------------------------------------------------------------------------

    def app(self) -> Starlette:
        """The Starlette app; its routes are under /view."""
        return Starlette(
            routes=[
                Route(f"{VIEW_PATH}/", self._page, methods=["GET"]),
                Route(f"{VIEW_PATH}/events", self._events, methods=["GET"]),
                Route(f"{VIEW_PATH}/cells", self._cells, methods=["GET"]),
                Route(f"{VIEW_PATH}/static/{{name}}", self._asset, methods=["GET"]),
            ]
        )

    async def _refused(self, request: Request, *, token: bool = True) -> Response | None:
        refused = await self._checks.validate_request(request, is_post=False)
        if refused is not None:
            return refused
        given = request.query_params.get("token", "")
        # compare_digest: the time taken does not reveal how much of a guess was right.
        if token and not hmac.compare_digest(given.encode(), self.token.encode()):
            return Response("missing or wrong token: open the URL nbmcp printed", status_code=403)
        return None

    def _headers(self) -> dict[str, str]:
        return {
            "Content-Security-Policy": self._csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
        }

    async def _page(self, request: Request) -> Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        notebook = request.query_params.get("nb")
        if self.target.is_dir() and not notebook:
            return HTMLResponse(self._index(), headers=self._headers())
        feed = self.feed(notebook)
        if feed is None:
            return Response("no such notebook here", status_code=404, headers=self._headers())
        title = html.escape(feed.path.name)
        page = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title} · nbmcp view</title>"
            '<link rel="stylesheet" href="static/view.css"><link rel="stylesheet" href="static/pygments.css">'
            '<script src="static/view.js" defer></script></head><body data-state="loading">'
            f'<header><span class="name">{title}</span><span id="status">connecting…</span>'
            '<label><input type="checkbox" id="follow"> follow</label></header>'
            '<div id="error" hidden></div><main id="cells"></main></body></html>'
        )
        return HTMLResponse(page, headers=self._headers())

    def _index(self) -> str:
        token = quote(self.token)
        rows = "".join(
            f'<li><a href="?token={token}&amp;nb={html.escape(quote(rel))}">{html.escape(rel)}</a></li>'
            for rel in _notebooks_under(self.target)
        )
        title = html.escape(self.target.name or str(self.target))
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>{title} · nbmcp view</title><link rel="stylesheet" href="static/view.css"></head>'
            f'<body class="index"><header><span class="name">{title}</span></header>'
            f"<main><ul>{rows or '<li>no notebooks here</li>'}</ul></main></body></html>"
        )

    async def _asset(self, request: Request) -> Response:
        refused = await self._refused(request, token=False)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        if name not in self._static:
            return Response("not found", status_code=404)
        media = _STATIC.get(name, "text/css")
        return Response(self._static[name], media_type=media, headers={"X-Content-Type-Options": "nosniff"})

    async def _feed_for(self, request: Request) -> NotebookFeed | Response:
        """The request's notebook, read; or the answer refusing it (Host, Origin, token, no such notebook)."""
        refused = await self._refused(request)
        if refused is not None:
            return refused
        feed = self.feed(request.query_params.get("nb"))
        if feed is None:
            return Response("no such notebook here", status_code=404)
        await feed.loaded()
        return feed

    async def _cells(self, request: Request) -> Response:
        feed = await self._feed_for(request)
        if isinstance(feed, Response):
            return feed
        ids = [i for i in request.query_params.get("ids", "").split(",") if i][:MAX_CELLS_PER_REQUEST]
        feed.start()
        cells = await asyncio.to_thread(feed.rendered, ids)
        return JSONResponse({"cells": cells}, headers={"Cache-Control": "no-store"})

    async def _events(self, request: Request) -> Response:
        feed = await self._feed_for(request)
        if isinstance(feed, Response):
            return feed
        return StreamingResponse(
            self._stream(feed),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def _stopping(self) -> bool:
        return self._closing.is_set() or (self.closing_when is not None and self.closing_when())

    async def _stream(self, feed: NotebookFeed) -> AsyncIterator[str]:
        subscriber = feed.subscribe()
        closing = asyncio.ensure_future(self._closing.wait())
        getting: asyncio.Future[dict[str, Any]] | None = None
        idle = 0.0
        try:
            yield _sse(feed.snapshot())
            while not self._stopping():
                if subscriber.lost:
                    subscriber.lost = False
                    while not subscriber.queue.empty():
                        subscriber.queue.get_nowait()
                    yield _sse(feed.snapshot())
                    continue
                getting = asyncio.ensure_future(subscriber.queue.get())
                done, _ = await asyncio.wait({getting, closing}, timeout=_STOP_POLL, return_when="FIRST_COMPLETED")
                if getting in done:
                    idle = 0.0
                    yield _sse(getting.result())
                    continue
                getting.cancel()
                idle += _STOP_POLL
                if idle >= HEARTBEAT:
                    idle = 0.0
                    yield ": keep-alive\n\n"
        finally:
            closing.cancel()
            if getting is not None:
                getting.cancel()
            feed.unsubscribe(subscriber)


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"


_listing_cache: dict[Path, list[str]] = {}


def _notebooks_under_cached(folder: Path, wanted: str) -> list[str]:
    """The folder's notebooks, listed again when `wanted` is not among those last listed."""
    listed = _listing_cache.get(folder)
    if listed is None or wanted not in listed:
        listed = _listing_cache[folder] = _notebooks_under(folder)
    return listed


def with_view(app: ASGIApp, view: ASGIApp) -> ASGIApp:
    """`app`, with the requests under /view/ going to `view` (the HTTP transport serves both on one port)."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] == VIEW_PATH or scope["path"].startswith(VIEW_PATH + "/")):
            await view(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch
