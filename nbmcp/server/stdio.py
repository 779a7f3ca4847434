"""The stdio transport: the SDK's, fed by a stdin reader that never holds up shutdown.

The SDK reads stdin in an AnyIO worker thread that a cancellation must wait for: Ctrl+C or SIGTERM
with stdin held open (a terminal, a client that stopped writing) logged "shutting down" and then
waited for the next line, 34 s or forever (issue 24). Here a daemon thread reads stdin; shutting
down stops listening to it, and the process exits without waiting for the thread.

A client that closes stdin ends nbmcp within `nbmcp.server.app.STDIN_HANGUP_POLL` seconds, and requests
still queued in the pipe are dropped, not applied: piping a file of requests into nbmcp and closing the
pipe does not work; keep stdin open until the answers arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.stdio import stdio_server

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = ["StdinLines", "claimed_stdin", "run_stdio"]


class StdinLines:
    """The lines of a file descriptor, read by a daemon thread, as an async iterator of text.

    One line is read ahead at most: the thread waits until the previous line was taken, so a client's
    queued requests stay in the pipe (where the hang-up check sees them) rather than in memory.
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
        # closefd=False: the descriptor belongs to claimed_stdin, which puts it back on fd 0.
        with os.fdopen(self._fd, "rb", closefd=False) as stream:
            for raw in stream:
                if not self._hand_over(loop, self._send.send(raw.decode("utf-8", errors="replace"))):
                    return
        self._hand_over(loop, self._send.aclose())

    @staticmethod
    def _hand_over(loop: asyncio.AbstractEventLoop, step: Coroutine[Any, Any, None]) -> bool:
        """Run `step` on the event loop and wait for it; False once nobody listens any more."""
        try:
            asyncio.run_coroutine_threadsafe(step, loop).result()
        except (RuntimeError, anyio.BrokenResourceError, anyio.ClosedResourceError, asyncio.CancelledError):
            step.close()  # the loop is closed or the server stopped reading: the thread's work is over
            return False
        return True


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
