"""The stdio transport: the SDK's, fed by a stdin reader that never holds up shutdown.

The SDK reads stdin in an AnyIO worker thread that a cancellation must wait for: Ctrl+C or SIGTERM
with stdin held open (a terminal, a client that stopped writing) logged "shutting down" and then
waited for the next line, 34 s or forever (issue 24). Here a daemon thread reads stdin; shutting
down stops listening to it, and the process exits without waiting for the thread.

A client that gives up on its `server/discover` probe before nbmcp is ready (Claude Code waits about
2.9 s) and falls back to `initialize` would find both queued: the SDK lets a connection's first request
choose the protocol era, so the stale probe locked it into the 2026 era and the `initialize` the client
was waiting for was refused (-32022). The probe is dropped when an `initialize` is already waiting
behind it: that client no longer waits for the probe's answer.

A client that closes stdin ends nbmcp within `STDIN_HANGUP_POLL` seconds, and requests
still queued in the pipe are dropped, not applied: piping a file of requests into nbmcp and closing the
pipe does not work; keep stdin open until the answers arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.stdio import stdio_server

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = [
    "STDIN_HANGUP_POLL",
    "LineReader",
    "StdinLines",
    "claimed_stdin",
    "drop_abandoned_probe",
    "run_stdio",
    "serve_stdio",
]

logger = logging.getLogger(__name__)


class StdinLines:
    """The lines of a file descriptor, read by a daemon thread, as an async iterator of text.

    The thread reads the pipe in chunks and hands over one line at a time, waiting until the previous
    one was taken; what a client queued beyond a chunk stays in the pipe.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._send: MemoryObjectSendStream[str]
        self._receive: MemoryObjectReceiveStream[str]
        self._send, self._receive = anyio.create_memory_object_stream[str](0)
        self._thread: threading.Thread | None = None

    def __aiter__(self) -> StdinLines:
        return self

    async def __anext__(self) -> str:
        if self._thread is None:
            loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._read, args=(loop,), name="nbmcp stdin", daemon=True)
            self._thread.start()
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        reader = LineReader(self._fd)
        lines = drop_abandoned_probe(reader)
        while line := (lines.pop(0) if lines else reader.readline()):
            if not self._hand_over(loop, self._send.send(line.decode("utf-8", errors="replace"))):
                return
        self._hand_over(loop, self._send.aclose())

    @staticmethod
    def _hand_over(loop: asyncio.AbstractEventLoop, step: Coroutine[Any, Any, None]) -> bool:
        """Run `step` on the event loop and wait for it; False once nobody listens any more."""
        try:
            asyncio.run_coroutine_threadsafe(step, loop).result()
        except (
            RuntimeError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            asyncio.CancelledError,
        ):
            step.close()  # the loop is closed or the server stopped reading: the thread's work is over
            return False
        return True


class LineReader:
    """Lines of a file descriptor, with a look that never blocks: is another whole line there already?"""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already known to hold no newline (a long line grows)
        self._eof = False

    def readline(self, *, block: bool = True) -> bytes | None:
        """The next line (with its newline; the last may lack it), b"" at the end, None if not there yet."""
        while True:
            end = self._buffer.find(b"\n", self._scanned) + 1
            if end:
                line = bytes(self._buffer[:end])
                del self._buffer[:end]
                self._scanned = 0
                return line
            self._scanned = len(self._buffer)
            if self._eof:
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            if not block and not select.select([self._fd], [], [], 0)[0]:
                return None
            chunk = os.read(self._fd, 65536)
            self._buffer += chunk
            self._eof = not chunk


def _method(line: bytes) -> str | None:
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message.get("method") if isinstance(message, dict) and "id" in message else None


def drop_abandoned_probe(reader: LineReader) -> list[bytes]:
    """The first lines of the connection, without a `server/discover` the client already gave up on.

    A probe followed at once (already in the pipe) by an `initialize` was abandoned by its client; left
    in, it would set the connection's era and the `initialize` would be refused.
    """
    first = reader.readline()
    if not first or _method(first) != "server/discover":
        return [first] if first else []
    following: list[bytes] = []
    while (line := reader.readline(block=False)) and _method(line) != "initialize":
        following.append(line)
    if line:
        return [*following, line]  # the probe is dropped: its client moved on to the handshake
    return [first, *following]


@contextlib.contextmanager
def claimed_stdin() -> Iterator[StdinLines | None]:
    """Stdin's lines for MCP alone, with fd 0 pointing at the null device meanwhile (as the SDK does).

    None where descriptors cannot be moved (Windows): the SDK's own stdin reading is used there.
    """
    if os.name != "posix":
        yield None
        return
    import fcntl

    try:
        private = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError:
        yield None
        return
    # Children and handlers that read stdin get end-of-file instead of the client's messages.
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
    finally:
        os.close(null)
    try:
        yield StdinLines(private)
    finally:
        # The private descriptor stays open: the reading thread may still be blocked on it, and a
        # descriptor closed under a blocked read could be reused for another file meanwhile.
        os.dup2(private, 0)


async def run_stdio(server: MCPServer) -> None:
    """Serve `server` over stdin and stdout until the client leaves or the task is cancelled."""
    with claimed_stdin() as lines:
        # The SDK only iterates its stdin argument line by line, which StdinLines provides.
        stdin = cast("anyio.AsyncFile[str] | None", lines)
        async with stdio_server(stdin=stdin) as (read_stream, write_stream):
            lowlevel = server._lowlevel_server  # MCPServer.run_stdio_async does the same, with the SDK's stdin
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


async def _cancel_on_signals(scope: anyio.CancelScope) -> None:
    # SIGTERM would otherwise end Python without running the lifespan's clean-up: kernels would be
    # orphaned. Turn it (and SIGINT) into a cancellation that shuts the kernels down first.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            logger.info("received %s; shutting down", signal.Signals(received).name)
            scope.cancel()
            return


#: How often (seconds) stdio mode checks whether the client closed its end of stdin.
STDIN_HANGUP_POLL = 0.2


def _dup_stdin() -> int | None:
    if not hasattr(select, "poll"):
        return None  # Windows: the SDK's own end-of-file handling is all there is
    try:
        return os.dup(0)
    except OSError:
        return None


async def _cancel_when_stdin_closes(fd: int, scope: anyio.CancelScope) -> None:
    """Stop serving as soon as the client closes stdin, even with requests still unread in the pipe.

    The SDK reads stdin a line at a time and notices the end only after the last queued request, so
    a client that left with hundreds of edits queued had them applied for minutes (issue 13). The
    pipe's hang-up flag is set as soon as the writer closes, whatever is still buffered.
    """
    poller = select.poll()
    poller.register(fd, select.POLLHUP | select.POLLERR)  # no POLLIN: data waiting is not the question
    while True:
        await anyio.sleep(STDIN_HANGUP_POLL)  # a poll of one descriptor five times a second costs nothing
        if poller.poll(0):
            break
    logger.info("the client closed stdin; its unanswered requests are dropped")
    scope.cancel()


async def serve_stdio(server: MCPServer, beside: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Serve over stdio, with `beside` running alongside, until the client leaves or a signal arrives."""
    # A duplicate of stdin, taken before the SDK claims fd 0, to watch for the client hanging up.
    hangup_fd = _dup_stdin()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_signals, tg.cancel_scope)
            if hangup_fd is not None:
                tg.start_soon(_cancel_when_stdin_closes, hangup_fd, tg.cancel_scope)
            tg.start_soon(beside)
            await run_stdio(server)
            tg.cancel_scope.cancel()
    finally:
        if hangup_fd is not None:
            os.close(hangup_fd)
