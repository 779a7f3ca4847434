"""The MCP server: builds the MCPServer for a notebook and runs it on a transport."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resources import FunctionResource
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp.types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams
from nbformat import NotebookNode

from .. import __version__
from ..config import Settings
from ..errors import UsageError
from ..kernels.base import Kernel
from ..kernels.choice import choose_kernel
from ..kernels.local import LocalKernel
from ..notebook.encoder import dumps_notebook
from ..notebook.memory import tune_memory
from ..notebook.store import LocalStore, NotebookStore
from ..notebook.watcher import NotebookWatcher
from ..session.session import KernelFactory, NotebookSession
from . import collector
from .client_log import ClientLog
from .mcp_app import NotebookServer, notebook_app
from .paths import confine, relative_name
from .stdio import serve_stdio
from .tools import make_tools, requested_notebook

__all__ = [
    "INSTRUCTIONS",
    "MAX_LISTED_NOTEBOOKS",
    "NotebookHost",
    "Workspace",
    "build_server",
    "create_server",
    "make_session",
    "run",
    "serve",
]

logger = logging.getLogger(__name__)

#: The first line stands alone: some clients show only it (Codex, issue 23).
INSTRUCTIONS = """\
nbmcp edits and runs Jupyter notebooks (.ipynb); every change is saved to the file at once.
A person who has the notebook open in VS Code or JupyterLab sees each change. Cells are addressed by
index (0 = first cell) or by id; ids stay valid when cells are inserted or moved, so prefer them.
read_notebook gives a paged overview (index, id, first line) of a notebook of any size.
Code runs in a kernel that keeps its state between calls, like a notebook a person runs cell by cell.
A person may edit the notebook at the same time: read it again before relying on indices from long ago.
An answer that leaves something out says so in its first line, with the call that returns the rest.
The notebook is also a resource (its nbformat JSON) that a client can subscribe to.
"""

FOLDER_INSTRUCTIONS = """\
This server serves every notebook under a folder: list_notebooks() shows them, use_notebook(path)
makes one the notebook your calls work on, and any notebook tool also takes notebook_path to name
its notebook outright.
"""

#: Notebooks list_notebooks reports at most (a huge folder tree is cut, with a note).
MAX_LISTED_NOTEBOOKS = 1000
#: Folders list_notebooks does not descend into (besides hidden ones).
_SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages", "build", "dist"})


def make_session(settings: Settings, local_store: LocalStore | None = None) -> NotebookSession:
    """The session for `settings`: the one place where local or remote notebook and kernel are chosen.

    `local_store`: the local notebook's store when the caller has already read it (parsed once).
    """
    store: NotebookStore | None = None if settings.document_url else local_store
    kernel_factory: KernelFactory | None = None
    if settings.document_url or settings.runtime_url:
        # Imported only for a Jupyter server: httpx and tornado's websocket client cost a local start-up.
        from ..kernels.remote import RemoteKernel
        from ..notebook.contents import ContentsStore
    if settings.document_url:
        store = ContentsStore(settings.document_server(), settings.path.as_posix())
    if settings.runtime_url:
        server = settings.runtime_server()
        # The session on the runtime server is named after the notebook's path there (or its file name).
        session_path = settings.path.as_posix() if settings.document_url else settings.path.name

        def remote_kernel(nb: NotebookNode) -> Kernel:
            return RemoteKernel(
                server,
                session_path,
                kernel_id=settings.runtime_id,
                start_new=settings.start_new_runtime,
                kernel_name=settings.kernel or nb.metadata.get("kernelspec", {}).get("name"),
            )

        kernel_factory = remote_kernel
    elif settings.gateway_url:  # KERNEL_WORKING_DIR: a local notebook's folder (none for a Contents server's)
        from ..kernels.gateway import gateway_kernels

        g, folder = settings, None if settings.document_url else settings.path.parent
        url = settings.gateway_url
        kernel_factory = gateway_kernels(url, g.gateway_token, g.path.name, dict(g.kernel_env), folder, g.kernel)
    elif settings.document_url:
        # A remote notebook with a local kernel: the kernel runs in the folder nbmcp was started in.

        def local_kernel(nb: NotebookNode) -> Kernel:
            choice = choose_kernel(
                kernel_name=settings.kernel,
                python=settings.python,
                notebook_kernel=nb.metadata.get("kernelspec", {}).get("name"),
                notebook_dir=Path.cwd(),
            )
            logger.info("notebook %s: kernel %s", store.path if store else settings.path, choice.describe())
            return LocalKernel(choice, Path.cwd())

        kernel_factory = local_kernel
    return NotebookSession(
        settings.path,
        kernel_name=settings.kernel,
        python=settings.python,
        timeout=settings.timeout,
        store=store,
        kernel_factory=kernel_factory,
        read_only=settings.read_only,
    )


class NotebookHost:
    """The server-side state of one open notebook: its session, its watcher and who to tell of changes."""

    def __init__(self, session: NotebookSession, bus: InMemorySubscriptionBus, *, watch: bool = True) -> None:
        self.session = session
        self.watch = watch
        # A notebook on a Jupyter server is named by its Contents-API URL; a local one by its file URI.
        self.uri = session.store.path if isinstance(session.store.path, str) else session.path.as_uri()
        #: Modern (2026-07-28+) clients hear of changes through `subscriptions/listen` on this bus.
        self.bus = bus
        self._subscribed: weakref.WeakSet[Any] = weakref.WeakSet()
        self.watcher_ready = anyio.Event()
        self.external_changes = 0
        self._watch_scope: anyio.CancelScope | None = None
        #: Held while the notebook is opened, so two first calls open it once.
        self.opening = anyio.Lock()
        #: Set while the server opens it in the background, after `initialize` was answered.
        self.opening_in_background = False

    async def start(self, tg: TaskGroup, *, start_kernel: bool = True) -> None:
        """Open the notebook (its kernel starts in the background) and start watching it."""
        await self.session.open(start_kernel=start_kernel)
        if self.watch and isinstance(self.session.store, LocalStore):
            tg.start_soon(self._watch)

    async def _watch(self) -> None:
        with anyio.CancelScope() as self._watch_scope:
            assert isinstance(self.session.store, LocalStore)
            try:
                await NotebookWatcher(self.session.store, self.on_external_change).run(ready=self.watcher_ready)
            except Exception:
                # Watching only makes nbmcp prompt: a failure in it must not end the server, whose
                # tool calls still check the file themselves before each read and write.
                logger.exception("stopped watching %s for changes by others", self.session.path)

    async def close(self) -> None:
        """Stop watching and shut the kernel down."""
        if self._watch_scope is not None:
            self._watch_scope.cancel()
        with anyio.CancelScope(shield=True):
            await self.session.close()

    def subscribe(self, connection: Any, on: bool) -> None:
        if on:
            self._subscribed.add(connection)
        else:
            self._subscribed.discard(connection)

    async def on_external_change(self) -> None:
        """Tell clients that the notebook changed on disk (called by the watcher after reloading)."""
        self.external_changes += 1
        await self.bus.publish(ResourceUpdated(uri=self.uri))
        # The reload itself reaches clients as a log message through ClientLog (the store logs it).
        for client in list(self._subscribed):
            try:
                await client.send_resource_updated(self.uri)
            except Exception as exc:  # a client that went away must not stop the others
                logger.debug("could not notify a client: %r", exc)

    async def health(self) -> dict[str, Any]:
        session = self.session
        entry: dict[str, Any] = {"path": str(session.path), "kernel": "not started"}
        if self.opening_in_background and not session.read_only:
            entry["kernel"] = "starting"  # it starts as soon as the notebook is open
        if session.kernel is not None:
            entry["kernel"] = session.kernel.state.value
        try:
            entry["cells"] = len((await anyio.to_thread.run_sync(session.store.read)).cells)
        except Exception as exc:  # the health check must answer even when the notebook is broken
            entry["error"] = type(exc).__name__
        return entry


def _connection(session: Any) -> Any:
    """The connection behind a per-request ServerSession: it lives as long as the client is connected.

    The SDK offers no public accessor; notifications outside a request need the connection.
    """
    return getattr(session, "_connection", None)


def _client_key(ctx: Context) -> Any:
    """Who is calling, for the per-client active notebook.

    Over HTTP: the MCP session id (handshake-era, stateful sessions). A stateless 2026-07-28 HTTP
    request carries no identity that lasts between calls: None, and such clients name the notebook
    with notebook_path. Over stdio (or in memory) the process has exactly one client.
    """
    headers = ctx.headers
    if headers is None:
        return "local"
    return headers.get("mcp-session-id") or None


class Workspace:
    """The notebooks one server serves: a single notebook, or every notebook under a folder.

    With a folder, each client (MCP session) has its own active notebook, chosen with use_notebook;
    a tool call may also name its notebook outright (notebook_path). Each notebook has its own
    kernel, started when the notebook is first used; unuse_notebook shuts an idle one down.
    """

    def __init__(self, settings: Settings, session: NotebookSession | None = None) -> None:
        self.settings = settings
        path = settings.path
        self.root = path if path.is_dir() else path.parent
        self.bus = InMemorySubscriptionBus()
        self.hosts: dict[Path, NotebookHost] = {}
        self.default: NotebookHost | None = None
        #: Started with one notebook file: only that notebook is served.
        # A notebook on a Jupyter server is always served alone, and polled instead of watched.
        self.single = bool(settings.document_url) or not path.is_dir()
        if self.single:
            watch = settings.watch and not settings.document_url
            self.default = NotebookHost(session or make_session(settings), self.bus, watch=watch)
            self.hosts[self.default.session.path] = self.default
        self._active: dict[Any, Path] = {}
        self._tg: TaskGroup | None = None
        #: Guards `hosts` and `_opening` only; never held during file I/O.
        self._lock = anyio.Lock()
        #: Hosts created but not yet opened (their file is being read, their kernel started).
        self._opening: dict[Path, NotebookHost] = {}
        self._server: MCPServer | None = None
        #: nbmcp's log records as MCP log messages (the logging capability).
        self.client_log = ClientLog()
        #: Set once the client has its tool list (stdio): the default notebook's kernel starts then.
        self.settled = anyio.Event()
        if settings.transport != "stdio":
            self.settled.set()  # an HTTP server starts before any client: its kernel starts at once

    def _new_session(self, path: Path) -> NotebookSession:
        # Folder mode is local only, so this is make_session's local case for another notebook.
        return make_session(dataclasses.replace(self.settings, path=path))

    @asynccontextmanager
    async def lifespan(self, app: MCPServer) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.client_log.run)
            if self.default is not None:
                self._register_resource(self.default)
                # Opened in the background (its kernel starts at once), so that `initialize` is answered
                # without waiting for it (issue 14); a tool call meanwhile waits for the opening to end.
                # The health check calls its kernel "starting" meanwhile, unless it starts later.
                self.default.opening_in_background = self.settings.kernel_at_open
            tg.start_soon(self._settle, self.default)
            try:
                yield
            finally:
                with anyio.CancelScope(shield=True):
                    for host in list(self.hosts.values()):
                        await host.close()
                tg.cancel_scope.cancel()
                self._tg = None

    async def _settle(self, host: NotebookHost | None) -> None:
        # Over stdio the kernel starts once the client has its tool list, or SETTLE_WAIT after the
        # server started: starting it loads jupyter_client and zmq, which would otherwise hold up the
        # answers to `initialize` and `tools/list` by tens of milliseconds, and some clients give a
        # server only about a second to list its tools. A tool call before then opens the notebook itself.
        # Garbage collection, held off by the command while the server started, resumes then too.
        with anyio.move_on_after(SETTLE_WAIT):
            await self.settled.wait()
        collector.release()
        if host is None:
            return
        try:
            await self.open(host.session.path)
        except Exception as exc:
            # The server still answers, so the client can show the user why tools fail (each tool
            # call tries to open it again and says why it cannot).
            logger.error("could not open %s: %s", host.session.path, exc)
        finally:
            host.opening_in_background = False

    async def open(self, path: Path, *, create: bool = False) -> NotebookHost:
        """The host of the notebook at `path` (confined to the root), opening it if needed.

        The workspace's lock guards only its dicts: the file is opened under the notebook's own lock,
        so a notebook that is slow to open (a FIFO, a hung network share) holds up no other (issue 13).
        """
        host = self.hosts.get(path) or self._opening.get(path)
        if host is None:
            if not create and not await anyio.Path(path).exists():
                raise UsageError(
                    f"no notebook at {relative_name(self.root, path)}; list_notebooks() shows the notebooks, "
                    "use_notebook(path, create=True) creates one"
                )
            if not await anyio.Path(path.parent).is_dir():
                raise UsageError(f"folder {relative_name(self.root, path.parent)} does not exist")
            # Made outside the lock (a store resolves its path); dropped if another call got there first.
            candidate = NotebookHost(self._new_session(path), self.bus, watch=self.settings.watch)
            async with self._lock:
                host = self.hosts.get(path) or self._opening.get(path)
                if host is None:
                    host = candidate
                    self._register_resource(host)
                    self._opening[path] = host
        async with host.opening:
            if host.session.kernel is None:
                if self._tg is None:
                    raise UsageError("the server is not running")
                await host.start(self._tg, start_kernel=self.settings.kernel_at_open)
            async with self._lock:
                self._opening.pop(path, None)
                self.hosts[path] = host
        return host

    async def close(self, path: Path) -> bool:
        """Shut a notebook's kernel down and stop watching it; False if it was not open."""
        host = self.hosts.pop(path, None)
        if host is None:
            return False
        if host is self.default:
            self.default = None
        for key in [k for k, p in self._active.items() if p == path]:
            del self._active[key]
        await host.close()
        return True

    def resolve(self, user_path: str) -> Path:
        return confine(self.root, user_path)

    async def host_for(self, ctx: Context) -> NotebookHost:
        """The notebook a tool call works on: its notebook_path, else the client's active one."""
        requested = requested_notebook.get()
        if requested and self.single:
            assert self.default is not None
            if self.resolve(requested) != self.default.session.path:
                raise UsageError(
                    f"this server serves only {self.default.session.path.name}; start nbmcp with a folder "
                    "to work on several notebooks"
                )
            host = self.default
            if host.session.kernel is None:
                host = await self.open(host.session.path)  # still being opened: wait for it
        elif requested:
            host = await self.open(self.resolve(requested))
        else:
            path = self._active.get(_client_key(ctx))
            if path is not None and path in self.hosts:
                host = self.hosts[path]
            elif self.default is not None:
                host = self.default
            else:
                raise UsageError(
                    f"no notebook chosen: this server serves the notebooks under {self.root}; "
                    "call list_notebooks() and use_notebook(path), or pass notebook_path"
                )
            if host.session.kernel is None:
                host = await self.open(host.session.path)
        return host

    async def get_session(self, ctx: Context) -> NotebookSession:
        return (await self.host_for(ctx)).session

    async def use(self, ctx: Context, user_path: str, *, create: bool) -> NotebookHost:
        key = _client_key(ctx)
        path = self.resolve(user_path)
        if key is None:
            raise UsageError(
                "this connection is stateless (2026-07-28 streamable HTTP has no session to remember a "
                f"choice in): pass notebook_path={relative_name(self.root, path)!r} to each notebook tool instead"
            )
        host = await self.open(path, create=create)
        self._active[key] = host.session.path
        return host

    def active_path(self, ctx: Context) -> Path | None:
        path = self._active.get(_client_key(ctx))
        return path if path is not None else (self.default.session.path if self.default else None)

    def list_paths(self) -> tuple[list[Path], bool]:
        """Notebooks under the root (hidden folders, checkpoints and environments skipped), capped."""
        found: list[Path] = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
            for name in sorted(files):
                if name.endswith(".ipynb") and not name.startswith("."):
                    found.append(Path(folder) / name)
                    if len(found) >= MAX_LISTED_NOTEBOOKS:
                        return found, True
        return found, False

    async def health(self) -> dict[str, Any]:
        return {"root": str(self.root), "notebooks": [await h.health() for h in list(self.hosts.values())]}

    def _register_resource(self, host: NotebookHost) -> None:
        if self._server is None:
            return
        store = host.session.store

        async def notebook_json() -> str:
            nb = await anyio.to_thread.run_sync(store.read)
            return dumps_notebook(nb).decode("utf-8")

        self._server.add_resource(
            FunctionResource.from_function(
                notebook_json,
                uri=host.uri,
                name=relative_name(self.root, host.session.path),
                description="The notebook's nbformat JSON as it is on disk (subscribe to hear of changes).",
                mime_type="application/x-ipynb+json",
            )
        )

    def register(self, server: MCPServer) -> None:
        """Resources for open notebooks, with subscriptions for handshake-era clients."""
        self._server = server

        def host_of(uri: Any) -> NotebookHost | None:
            return next((h for h in self.hosts.values() if h.uri == str(uri)), None)

        async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
            host, connection = host_of(params.uri), _connection(ctx.session)
            if host is not None and connection is not None:
                host.subscribe(connection, True)
            return EmptyResult()

        async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
            host, connection = host_of(params.uri), _connection(ctx.session)
            if host is not None and connection is not None:
                host.subscribe(connection, False)
            return EmptyResult()

        # MCPServer has no decorator for the handshake-era resources/subscribe: register it on the
        # low-level server (2026-07-28 clients use subscriptions/listen, served from self.bus).
        lowlevel = server._lowlevel_server
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


def create_server(settings: Settings, session: NotebookSession | None = None) -> tuple[MCPServer, Workspace]:
    """An MCPServer serving the notebook (or folder) of `settings`, and its workspace."""
    workspace = Workspace(settings, session)
    tools, exposed = make_tools(
        workspace.get_session,
        max_output_chars=settings.max_output_chars,
        max_image_bytes=settings.max_image_bytes,
        default_timeout=settings.timeout,
        max_wait=settings.max_wait,
        tools=settings.tools,
        read_only=settings.read_only,
        workspace=None if workspace.single else workspace,
        client_log=workspace.client_log,
        view_url=settings.view_url,
        structured_output=settings.structured_output,
    )
    server = NotebookServer(
        "nbmcp",
        version=__version__,
        instructions=INSTRUCTIONS if workspace.default is not None else INSTRUCTIONS + FOLDER_INSTRUCTIONS,
        lifespan=workspace.lifespan,
        log_level=settings.log_level,  # type: ignore[arg-type]
        subscriptions=workspace.bus,
        warn_on_duplicate_resources=False,
        extensions=[notebook_app(workspace.get_session, requested_notebook)],
        tools=tools,
    )
    server.exposed = exposed
    server.listed = workspace.settled
    workspace.register(server)
    workspace.client_log.register(server)
    return server, workspace


def build_server(settings: Settings, session: NotebookSession | None = None) -> MCPServer:
    """An MCPServer serving the notebook (or folder) of `settings`."""
    return create_server(settings, session)[0]


#: Seconds a stdio server waits for the client's `tools/list` before it starts the kernel anyway.
SETTLE_WAIT = 0.5


async def serve(
    settings: Settings,
    store: LocalStore | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve on the transport of `settings` until the client leaves or a signal arrives.

    `store`: the notebook's store, already read by the command line's check (parsed once).
    `sock`: the socket the command line bound for HTTP or --view (a port in use is found before a kernel starts).
    """
    if settings.transport != "stdio":
        collector.release()  # an HTTP server starts before its clients: nothing to answer sooner
    view = None
    if settings.view or settings.transport != "stdio":
        # The view's web server (uvicorn, h11) is loaded only when something is served over HTTP: a
        # stdio server answers `initialize` sooner without it (issue 23).
        from ..view.serve import attach_view, serve_beside, stop_with

        view, settings = attach_view(settings, sock)  # (None, settings) without --view
    session = make_session(settings, store) if store is not None else None
    server, workspace = create_server(settings, session)
    if view is not None:
        view.follow_sessions(workspace.hosts)
    if settings.transport == "stdio":
        if view is None:
            await serve_stdio(server, anyio.sleep_forever)
        else:
            await serve_stdio(server, lambda: serve_beside(view, sock))  # the live view beside, with --view
        return
    import uvicorn

    from ..view.app import with_view
    from ..web import server_limits
    from .http import http_app

    app = http_app(
        server,
        host=settings.host,
        token=settings.token,
        health=workspace.health,
        extra_hosts=settings.allowed_hosts,
    )
    app = with_view(app, view.app()) if view is not None else app
    logger.info(
        "serving %s over streamable HTTP at http://%s:%d/mcp (health: /api/healthz)%s",
        settings.path,
        settings.host,
        sock.getsockname()[1] if sock is not None else settings.port,
        "; bearer token required" if settings.token else "",
    )
    # uvicorn handles SIGINT/SIGTERM itself: it stops accepting, then runs the lifespan's clean-up.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        **server_limits(),
    )
    server_ = uvicorn.Server(config)
    stop_with(view, server_)  # pages of the live view left open must not hold up the shutdown
    await server_.serve(sockets=[sock] if sock is not None else None)


def run(
    settings: Settings,
    store: LocalStore | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve until the client disconnects (stdio) or the process is told to stop."""
    tune_memory()
    anyio.run(serve, settings, store, sock)
