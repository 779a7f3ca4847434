"""The MCP server: builds the MCPServer for a notebook and runs it on a transport."""

from __future__ import annotations

import logging
import signal
import warnings
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp.types import EmptyResult, SubscribeRequestParams, Tool, UnsubscribeRequestParams

from . import __version__
from .config import Settings
from .session import NotebookSession
from .store import dumps_notebook
from .tools import register_tools
from .watcher import NotebookWatcher

__all__ = ["INSTRUCTIONS", "NotebookHost", "build_server", "create_server", "health_report", "run", "serve"]

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
nbmcp edits and runs one Jupyter notebook (.ipynb) on disk. Every change is saved to the file
immediately, so a person who has the notebook open in VS Code or JupyterLab sees it. Cells are
addressed by index (0 = first cell) or by id; ids stay valid when cells are inserted or moved, so prefer
them. read_notebook gives a paged overview (index, id, first line) of a notebook of any size.
Code runs in a kernel that keeps its state between calls, like a notebook a person runs cell by cell.
A person may edit the notebook at the same time: read it again before relying on indices from long ago.
The notebook is also a resource (its nbformat JSON) that a client can subscribe to.
"""

#: MCP log message sent to clients when the file changed on disk and was reloaded.
RELOADED_MESSAGE = "notebook changed on disk, reloaded"


class NotebookHost:
    """The server-side state of one notebook: its session, its watcher and who to tell of changes."""

    def __init__(self, session: NotebookSession, *, watch: bool = True) -> None:
        self.session = session
        self.watch = watch
        self.uri = session.path.as_uri()
        #: Modern (2026-07-28+) clients hear of changes through `subscriptions/listen` on this bus.
        self.bus = InMemorySubscriptionBus()
        #: Handshake-era client sessions, to which change notices are pushed directly.
        self._legacy_sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._subscribed: weakref.WeakSet[Any] = weakref.WeakSet()
        self.watcher_ready = anyio.Event()
        self.external_changes = 0

    @asynccontextmanager
    async def lifespan(self, app: MCPServer) -> AsyncIterator[None]:
        try:
            await self.session.open()
        except Exception as exc:
            # The server still answers, so the client can show the user why tools fail.
            logger.error("could not open %s: %s", self.session.path, exc)
        async with anyio.create_task_group() as tg:
            if self.watch:
                watcher = NotebookWatcher(self.session.store, self.on_external_change)
                tg.start_soon(lambda: watcher.run(ready=self.watcher_ready))
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await self.session.close()

    async def get_session(self, ctx: Context) -> NotebookSession:
        self._remember_client(ctx)
        if self.session.kernel is None:
            await self.session.open()
        return self.session

    def _remember_client(self, ctx: Context) -> None:
        version = ctx.protocol_version
        connection = _connection(ctx.session)
        if connection is not None and version is not None and version < "2026-07-28":
            self._legacy_sessions.add(connection)

    async def on_external_change(self) -> None:
        """Tell clients that the notebook changed on disk (called by the watcher after reloading)."""
        self.external_changes += 1
        await self.bus.publish(ResourceUpdated(uri=self.uri))
        logger.debug("telling %d handshake-era client(s)", len(self._legacy_sessions))
        for client in list(self._legacy_sessions):
            try:
                with warnings.catch_warnings():
                    # The logging capability is deprecated from 2026-07-28 on; these clients predate it.
                    warnings.simplefilter("ignore")
                    await client.log("info", RELOADED_MESSAGE, logger="nbmcp")
                    if client in self._subscribed:
                        await client.send_resource_updated(self.uri)
            except Exception as exc:  # a client that went away must not stop the others
                logger.debug("could not notify a client: %r", exc)

    def register(self, server: MCPServer) -> None:
        """Expose the notebook as a resource, with subscriptions for handshake-era clients."""
        session = self.session

        @server.resource(
            self.uri,
            name=session.path.name,
            description="The notebook's nbformat JSON as it is on disk (subscribe to hear of changes).",
            mime_type="application/x-ipynb+json",
        )
        async def notebook_json() -> str:
            nb = await anyio.to_thread.run_sync(session.store.read)
            return dumps_notebook(nb).decode("utf-8")

        async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
            connection = _connection(ctx.session)
            if connection is not None:
                self._subscribed.add(connection)
                self._legacy_sessions.add(connection)
            return EmptyResult()

        async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
            connection = _connection(ctx.session)
            if connection is not None:
                self._subscribed.discard(connection)
            return EmptyResult()

        # MCPServer has no decorator for the handshake-era resources/subscribe: register it on the
        # low-level server (2026-07-28 clients use subscriptions/listen, served from self.bus).
        lowlevel = server._lowlevel_server
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


def _connection(session: Any) -> Any:
    """The connection behind a per-request ServerSession: it lives as long as the client is connected.

    The SDK offers no public accessor; notifications outside a request need the connection.
    """
    return getattr(session, "_connection", None)


class _NotebookServer(MCPServer):
    """An MCPServer that lists only the exposed tools (--tools, --read-only).

    The others stay registered, so a client that calls one by name gets a clear refusal.
    """

    exposed: frozenset[str] | None = None

    async def list_tools(self) -> list[Tool]:
        tools = await super().list_tools()
        return [t for t in tools if self.exposed is None or t.name in self.exposed]


def create_server(settings: Settings, session: NotebookSession | None = None) -> tuple[MCPServer, NotebookHost]:
    """An MCPServer serving the notebook of `settings` (or the given session), and its host."""
    if session is None:
        session = NotebookSession(
            settings.path, kernel_name=settings.kernel, python=settings.python, timeout=settings.timeout
        )
    host = NotebookHost(session, watch=settings.watch)
    server = _NotebookServer(
        "nbmcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=host.lifespan,
        log_level=settings.log_level,  # type: ignore[arg-type]
        subscriptions=host.bus,
    )
    server.exposed = register_tools(
        server,
        host.get_session,
        max_output_chars=settings.max_output_chars,
        max_image_bytes=settings.max_image_bytes,
        default_timeout=settings.timeout,
        tools=settings.tools,
        read_only=settings.read_only,
    )
    host.register(server)
    return server, host


def build_server(settings: Settings, session: NotebookSession | None = None) -> MCPServer:
    """An MCPServer serving the notebook of `settings`."""
    return create_server(settings, session)[0]


async def health_report(host: NotebookHost) -> dict[str, Any]:
    """What GET /api/healthz tells about the open notebooks (no secrets)."""
    session = host.session
    entry: dict[str, Any] = {"path": str(session.path), "kernel": "not configured"}
    if session.kernel is not None:
        entry["kernel"] = session.kernel.state.value
    try:
        entry["cells"] = len((await anyio.to_thread.run_sync(session.store.read)).cells)
    except Exception as exc:  # the health check must answer even when the notebook is broken
        entry["error"] = type(exc).__name__
    return {"notebooks": [entry]}


async def _cancel_on_signals(scope: anyio.CancelScope) -> None:
    # SIGTERM would otherwise end Python without running the lifespan's clean-up: kernels would be
    # orphaned. Turn it (and SIGINT) into a cancellation that shuts the kernels down first.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            logger.info("received %s; shutting down", signal.Signals(received).name)
            scope.cancel()
            return


async def serve(settings: Settings) -> None:
    """Serve on the transport of `settings` until the client leaves or a signal arrives."""
    server, host = create_server(settings)
    if settings.transport == "stdio":
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_signals, tg.cancel_scope)
            await server.run_stdio_async()
            tg.cancel_scope.cancel()
        return
    import uvicorn

    from .http import http_app

    app = http_app(
        server,
        host=settings.host,
        token=settings.token,
        health=lambda: health_report(host),
        extra_hosts=settings.allowed_hosts,
    )
    logger.info(
        "serving %s over streamable HTTP at http://%s:%d/mcp (health: /api/healthz)%s",
        settings.path,
        settings.host,
        settings.port,
        "; bearer token required" if settings.token else "",
    )
    # uvicorn handles SIGINT/SIGTERM itself: it stops accepting, then runs the lifespan's clean-up.
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, log_level=settings.log_level.lower()
    )
    await uvicorn.Server(config).serve()


def run(settings: Settings) -> None:
    """Serve until the client disconnects (stdio) or the process is told to stop."""
    anyio.run(serve, settings)
