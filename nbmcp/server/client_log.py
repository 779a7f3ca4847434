"""nbmcp's log records as MCP log messages (`notifications/message`), at or above each client's level.

Handshake-era clients (before 2026-07-28) choose a level with `logging/setLevel` and hear of
everything nbmcp logs at or above it (default: info), including what happens between their calls: a
reload after an external change, a kernel that died and was restarted. From 2026-07-28 on, log
delivery is an opt-in of each request (its `_meta` names the level) and rides that request's stream:
such clients get the records logged while their call was served, sent before the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import EmptyResult, LoggingLevel, SetLevelRequestParams

__all__ = ["DEFAULT_CLIENT_LEVEL", "ClientLog", "mcp_level"]

logger = logging.getLogger(__name__)

#: MCP log levels, least severe first (RFC 5424 names, as the protocol spells them).
LEVELS: tuple[LoggingLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
#: What a handshake-era client hears before it calls logging/setLevel.
DEFAULT_CLIENT_LEVEL: LoggingLevel = "info"
#: Records kept for one request at most (a chatty loop must not grow memory without bound).
_MAX_PENDING = 100

Entry = tuple[LoggingLevel, str, str]
"""(level, logger name, message)"""


class _Call:
    """The records logged while one tool call is served, sent on its stream before its answer."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.entries: list[Entry] = []
        #: False once the answer went out: records of tasks the call started go to everyone instead.
        self.open = True


_current_call: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("client_log_call", default=None)


def _legacy(ctx: Any) -> bool:
    version = getattr(ctx, "protocol_version", None)
    return version is not None and version < "2026-07-28"


def mcp_level(levelno: int) -> LoggingLevel:
    """The MCP level of a Python logging level."""
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def _at_least(level: LoggingLevel, floor: LoggingLevel) -> bool:
    return LEVELS.index(level) >= LEVELS.index(floor)


@contextlib.contextmanager
def _no_deprecation_warning() -> Iterator[None]:
    # The SDK warns that the logging capability is deprecated from 2026-07-28 on: this module serves
    # the clients that predate that revision, knowingly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        yield


def _let_through(level: LoggingLevel) -> None:
    """Make the nbmcp loggers create records at `level` (what stderr shows is its handler's business)."""
    levelno = logging.DEBUG if level == "debug" else logging.INFO if level in ("info", "notice") else logging.WARNING
    nbmcp = logging.getLogger("nbmcp")
    if nbmcp.getEffectiveLevel() > levelno:
        nbmcp.setLevel(levelno)


class ClientLog(logging.Handler):
    """Forwards the records of the `nbmcp` loggers to the connected MCP clients."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        #: Handshake-era connections and the level each asked for.
        self.levels: weakref.WeakKeyDictionary[Any, LoggingLevel] = weakref.WeakKeyDictionary()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Entry] | None = None

    # -- wiring ---------------------------------------------------------------------------------

    def register(self, server: MCPServer) -> None:
        """Serve `logging/setLevel` (which also declares the logging capability)."""

        async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
            connection = getattr(ctx.session, "_connection", None)
            if connection is not None:
                self.levels[connection] = params.level
            _let_through(params.level)
            logger.debug("client log level set to %s", params.level)
            return EmptyResult()

        # MCPServer has no decorator for the handshake-era method; the low-level server's own
        # registration argument warns that it is deprecated, which this server knows.
        server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)

    def remember(self, connection: Any) -> None:
        """A handshake-era connection that made a call: it hears of background events from now on."""
        if connection is not None and connection not in self.levels:
            self.levels[connection] = DEFAULT_CLIENT_LEVEL

    async def run(self) -> None:
        """Deliver records logged outside any call (watcher, background kernel work) until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=1000)
        root = logging.getLogger("nbmcp")
        root.addHandler(self)
        _let_through(DEFAULT_CLIENT_LEVEL)
        try:
            while True:
                level, name, message = await self._queue.get()
                for connection, floor in list(self.levels.items()):
                    if _at_least(level, floor):
                        try:
                            with _no_deprecation_warning():
                                await connection.log(level, message, logger=name)
                        except Exception as exc:  # a client that went away must not stop the others
                            logger.debug("could not send a log message: %r", exc)
        finally:
            root.removeHandler(self)
            self._loop = self._queue = None

    # -- per call ---------------------------------------------------------------------------------

    def begin_call(self, ctx: Any) -> contextvars.Token[_Call | None]:
        """Collect what is logged while `ctx`'s call is served (a handshake-era caller is remembered)."""
        if _legacy(ctx):
            self.remember(getattr(ctx.session, "_connection", None))
        return _current_call.set(_Call(ctx))

    async def end_call(self, token: contextvars.Token[_Call | None]) -> None:
        """Send the records logged during the call on its own stream, at or above the client's level."""
        call = _current_call.get()
        _current_call.reset(token)
        if call is None:
            return
        call.open = False
        floor: LoggingLevel = "debug"
        if _legacy(call.ctx):
            # Handshake-era sessions send every level: filtering by logging/setLevel is ours to do.
            floor = self.levels.get(getattr(call.ctx.session, "_connection", None), DEFAULT_CLIENT_LEVEL)
        # 2026-07-28+ sessions drop what the request's own _meta level did not ask for.
        for level, name, message in call.entries:
            if not _at_least(level, floor):
                continue
            try:
                with _no_deprecation_warning():
                    await call.ctx.session.send_log_message(level, message, logger=name)
            except Exception as exc:
                logger.debug("could not send a log message: %r", exc)

    # -- logging.Handler ------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == __name__:  # never forward our own delivery problems (a loop)
            return
        try:
            entry = (mcp_level(record.levelno), record.name, record.getMessage())
        except Exception:
            self.handleError(record)
            return
        call = _current_call.get()
        if call is not None and call.open:
            if len(call.entries) < _MAX_PENDING:
                call.entries.append(entry)
            return
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(_put, queue, entry)


def _put(queue: asyncio.Queue[Entry], entry: Entry) -> None:
    if not queue.full():  # a burst of records while no client reads: drop rather than grow
        queue.put_nowait(entry)
