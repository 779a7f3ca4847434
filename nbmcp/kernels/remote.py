"""The remote kernel: a kernel on a Jupyter server, driven over its REST API and websocket channels.

It behaves like `LocalKernel` (same states, same `ExecutionResult`, same `OutputCollector`), so the
session does not know where code runs. Which kernel, in this order:

- ``RUNTIME_ID``: that running kernel (an error if the server has no such kernel);
- ``START_NEW_RUNTIME=true``: a new kernel of our own, shut down when nbmcp stops;
- otherwise the notebook's session on the server (the kernel JupyterLab shows for that notebook),
  created through ``POST /api/sessions`` if there is none. It outlives nbmcp, like JupyterLab's.

Whenever the notebook has no session on the server, one is created for the kernel we use, so
JupyterLab shows that kernel attached to the notebook.

Messages travel over ``/api/kernels/<id>/channels`` in Jupyter's JSON websocket format (the default
protocol of every Jupyter server, no subprotocol needed), through tornado's websocket client:
tornado is what Jupyter servers themselves are built on and already installed with jupyter_client.
A dead kernel is noticed from the server's ``restarting``/``dead`` status messages, a closed websocket,
or ``GET /api/kernels/<id>`` answering 404 or ``dead`` while we wait; never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import anyio
import httpx2
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ..errors import KernelStartError, NbmcpError, NoKernelsApiError, ServerAuthError, ServerUnreachableError
from ..jupyter.client import HTTP_TIMEOUT, JupyterServer, raise_for_status, translate_errors
from .local import (
    DEFAULT_TIMEOUT,
    INTERRUPT_GRACE,
    KERNEL_START_TIMEOUT,
    POLL_INTERVAL,
    ExecutionResult,
    KernelChoice,
    KernelState,
    ProgressHook,
    drive_execution,
)
from .outputs import OutputCollector

__all__ = ["CONTROL_TIMEOUT", "LIVENESS_INTERVAL", "MAX_MESSAGE_BYTES", "RemoteKernel"]

logger = logging.getLogger(__name__)

#: Largest websocket message accepted from the server (an output with a big image is one message).
MAX_MESSAGE_BYTES = 100 * 1024 * 1024
#: Seconds between `GET /api/kernels/<id>` liveness checks while an execution produces no messages.
LIVENESS_INTERVAL = 1.0
#: Seconds to wait for the execute_reply once the kernel reported idle.
REPLY_GRACE = 2.0
#: Seconds to wait for the server to acknowledge the close of the kernel's websocket.
CLOSE_WAIT = 2.0
#: Seconds between kernel_info_requests while waiting for a kernel's iopub channel to deliver.
NUDGE_INTERVAL = 0.5
#: Seconds a liveness check or an interrupt request may take: a frozen server (SIGSTOP,
#: swapped out) accepts connections but never answers, and a call must not wait HTTP_TIMEOUT for it
#: several times over (issue 13: an execution answered minutes after its timeout).
CONTROL_TIMEOUT = 3.0


class RemoteKernel:
    """A kernel on a Jupyter server, attached to the notebook's session there."""

    def __init__(
        self,
        server: JupyterServer,
        notebook_path: str,
        *,
        kernel_id: str | None = None,
        start_new: bool = False,
        kernel_name: str | None = None,
        start_timeout: float = KERNEL_START_TIMEOUT,
    ) -> None:
        self.server = server
        self.notebook_path = notebook_path.strip("/")
        self.start_timeout = start_timeout
        self.state = KernelState.NOT_STARTED
        self.error: str | None = None
        #: The kernel in use on the server, once known.
        self.kernel_id: str | None = kernel_id
        self._wanted_id = kernel_id
        self._start_new = start_new
        self._kernel_name = kernel_name
        self._reason = (
            "RUNTIME_ID" if kernel_id else "START_NEW_RUNTIME" if start_new else "the notebook's server session"
        )
        self._owned_kernel = False
        self._owned_session: str | None = None
        self._http: httpx2.AsyncClient | None = None
        self._ws: WebSocketClientConnection | None = None
        self._inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._messages = Session(username="nbmcp")
        self._start_task: asyncio.Task[None] | None = None
        self._exec_lock = asyncio.Lock()
        self._next_liveness = 0.0
        #: restart_kernel is under way: a running call that sees the kernel go says why.
        self._restart_requested = False
        #: Why the server stopped answering during the current execution, once it did.
        self._unanswered: str | None = None

    @property
    def choice(self) -> KernelChoice:
        """Which kernel runs the code, for `get_notebook_info` (name, where, and how it was chosen)."""
        where = f"kernel {self.kernel_id} on {self.server.url}" if self.kernel_id else f"a kernel on {self.server.url}"
        return KernelChoice(self._kernel_name or "the server's default", where, self._reason)

    # -- life cycle -------------------------------------------------------------------------------

    def start_background(self) -> None:
        """Begin connecting to (or starting) the kernel without waiting for it."""
        if self._start_task is None:
            self._start_task = asyncio.get_running_loop().create_task(self._start())
            self._start_task.add_done_callback(_swallow)

    async def ensure_started(self) -> None:
        """Wait until the kernel is ready, reconnecting (or starting one) if needed."""
        if self.state in (KernelState.DEAD, KernelState.FAILED, KernelState.NOT_STARTED) and (
            self._start_task is None or self._start_task.done()
        ):
            await self._disconnect()
            self._start_task = None
        if self._start_task is None:
            self._start_task = asyncio.get_running_loop().create_task(self._start())
            self._start_task.add_done_callback(_swallow)
        await asyncio.shield(self._start_task)

    async def _start(self) -> None:
        self.state = KernelState.STARTING
        self.error = None
        started = time.monotonic()
        try:
            kernel_id = await self._resolve_kernel()
            self.kernel_id = kernel_id
            await self._connect(kernel_id)
            await self._wait_ready()
        except Exception as exc:
            self.state = KernelState.FAILED
            if isinstance(exc, NbmcpError):
                self.error = str(exc)
            else:
                self.error = f"could not use a kernel on {self.server.url}: {type(exc).__name__}: {exc}"
            logger.error("%s", self.error)
            await self._disconnect()
            await self._close_http()
            if isinstance(exc, NbmcpError):
                raise
            raise KernelStartError(self.error) from exc
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._disconnect()
                await self._close_http()
            self.state = KernelState.NOT_STARTED
            raise
        self.state = KernelState.IDLE
        logger.info("%s ready in %.2f s", self.choice.describe(), time.monotonic() - started)

    async def restart(self) -> None:
        """Restart the kernel on the server (all variables are lost) and wait until it is ready.

        Does not wait for running code: the server restarts the kernel (killing it if need be), and the
        running call answers within a poll interval with its partial outputs and a note.
        """
        self._restart_requested = True
        try:
            if self.kernel_id is not None and self.state not in (KernelState.FAILED, KernelState.NOT_STARTED):
                with contextlib.suppress(NbmcpError):
                    await self._request("POST", "kernels", self.kernel_id, "restart", what="restarting the kernel")
            async with self._exec_lock:
                await self._disconnect()
                self._start_task = None
                self.state = KernelState.NOT_STARTED
        finally:
            self._restart_requested = False
        await self.ensure_started()

    async def interrupt(self) -> None:
        """Interrupt whatever the kernel is running (`POST /api/kernels/<id>/interrupt`)."""
        if self.kernel_id is not None and self.state in (KernelState.BUSY, KernelState.IDLE):
            await self._request(
                "POST", "kernels", self.kernel_id, "interrupt", what="interrupting the kernel", timeout=CONTROL_TIMEOUT
            )

    async def shutdown(self) -> None:
        """Let go of the kernel; shut it down on the server only if nbmcp started it for itself."""
        # Shielded: it runs while the server closes, often inside a cancelled scope, and must still
        # close every socket (each step is bounded by CLOSE_WAIT or HTTP_TIMEOUT).
        with anyio.CancelScope(shield=True):
            if self._start_task is not None and not self._start_task.done():
                self._start_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._start_task
            await self._disconnect()
            if self._owned_kernel and self.kernel_id is not None:
                with contextlib.suppress(Exception):
                    if self._owned_session is not None:
                        await self._request("DELETE", "sessions", self._owned_session, what="ending the session")
                    await self._request("DELETE", "kernels", self.kernel_id, what="shutting the kernel down", ok=(404,))
                self._owned_kernel = False
            await self._close_http()
            self.state = KernelState.NOT_STARTED

    # -- the REST API -----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        *parts: str,
        what: str,
        json_body: Any = None,
        ok: tuple[int, ...] = (),
        timeout: float = HTTP_TIMEOUT,
    ) -> httpx2.Response:
        if self._http is None:
            self._http = self.server.async_client()
        with translate_errors(self.server):
            r = await self._http.request(method, self.server.api_url(*parts), json=json_body, timeout=timeout)
        if r.status_code not in ok:
            raise_for_status(self.server, r, what)
        return r

    async def _close_http(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def _kernel_model(self, kernel_id: str, *, timeout: float = HTTP_TIMEOUT) -> dict[str, Any] | None:
        r = await self._request("GET", "kernels", kernel_id, what="looking up the kernel", ok=(404,), timeout=timeout)
        if r.status_code == 404:
            return None
        model: dict[str, Any] = r.json()
        return model

    async def _resolve_kernel(self) -> str:
        """The id of the kernel to use: the one we had if it still exists, else per the configuration."""
        if self.kernel_id is not None and await self._kernel_model(self.kernel_id) is not None:
            return self.kernel_id
        sessions = await self._request("GET", "sessions", what="listing sessions", ok=(404,))
        if sessions.status_code == 404:
            raise NoKernelsApiError(self.server.url)
        mine = [s for s in sessions.json() if s.get("path") == self.notebook_path and s.get("kernel")]
        if self._wanted_id is not None:
            model = await self._kernel_model(self._wanted_id)
            if model is None:
                listing = await self._request("GET", "kernels", what="listing kernels")
                running = ", ".join(k["id"] for k in listing.json()) or "none"
                raise KernelStartError(
                    f"the Jupyter server at {self.server.url} has no kernel with id {self._wanted_id} (RUNTIME_ID); "
                    f"running kernels: {running}"
                )
            self._kernel_name = model.get("name")
            kernel_id = self._wanted_id
        elif self._start_new:
            name = await self._installed(self._kernel_name) if self._kernel_name else None
            # The kernel starts in the notebook's folder on the server, as JupyterLab's do (issue 12).
            body: dict[str, Any] = {"path": self.notebook_path.rpartition("/")[0]} | ({"name": name} if name else {})
            r = await self._request("POST", "kernels", what="starting a kernel", json_body=body)
            model = r.json()
            kernel_id, self._kernel_name = model["id"], model.get("name")
            self._owned_kernel = True
            logger.info("started kernel %s (%s) on %s", kernel_id, self._kernel_name, self.server.url)
        elif mine:
            kernel_id, self._kernel_name = mine[0]["kernel"]["id"], mine[0]["kernel"].get("name")
            logger.info("using kernel %s of the notebook's session on %s", kernel_id, self.server.url)
            return str(kernel_id)
        else:
            kernel: dict[str, Any] = {}
            name = await self._installed(self._kernel_name) if self._kernel_name else None
            if name:
                kernel["name"] = name
            session = await self._create_session(kernel)
            kernel_id, self._kernel_name = session["kernel"]["id"], session["kernel"].get("name")
            logger.info("started kernel %s (%s) in a new session on %s", kernel_id, self._kernel_name, self.server.url)
            return str(kernel_id)
        if not mine:
            session = await self._create_session({"id": kernel_id})
            if self._owned_kernel:
                self._owned_session = session["id"]
        return str(kernel_id)

    async def _create_session(self, kernel: dict[str, Any]) -> dict[str, Any]:
        body = {
            "path": self.notebook_path,
            "name": self.notebook_path.rpartition("/")[2],
            "type": "notebook",
            "kernel": kernel,
        }
        r = await self._request("POST", "sessions", what="creating a session for the notebook", json_body=body)
        session: dict[str, Any] = r.json()
        return session

    async def _installed(self, name: str) -> str | None:
        """`name` if the server has that kernelspec, else None (the server's default is used)."""
        r = await self._request("GET", "kernelspecs", what="listing kernelspecs", ok=(404,))
        specs = r.json().get("kernelspecs", {}) if r.status_code == 200 else {}
        if name in specs:
            return name
        logger.info("the server has no kernel %r (it has: %s); using its default", name, ", ".join(specs) or "none")
        return None

    # -- the websocket ----------------------------------------------------------------------------

    async def _connect(self, kernel_id: str) -> None:
        url = self.server.ws_url("kernels", kernel_id, "channels") + f"?session_id={self._messages.session}"
        request = HTTPRequest(
            url, headers=self.server.headers, connect_timeout=HTTP_TIMEOUT, request_timeout=HTTP_TIMEOUT
        )
        connecting = websocket_connect(request, max_message_size=MAX_MESSAGE_BYTES)
        try:
            self._ws = await asyncio.shield(connecting)
        except asyncio.CancelledError:
            # Cancelled mid-connect (nbmcp is closing): tornado completes the connection anyway, so
            # wait for it briefly and close it, or its socket outlives the event loop.
            with contextlib.suppress(Exception):
                self._ws = await asyncio.wait_for(connecting, CLOSE_WAIT)
            await self._disconnect()
            raise
        except HTTPClientError as exc:
            if exc.code in (401, 403):
                raise ServerAuthError(self.server.url, exc.code) from None
            raise KernelStartError(
                f"the Jupyter server at {self.server.url} refused the kernel's websocket (HTTP {exc.code})"
            ) from None
        except OSError as exc:
            raise ServerUnreachableError(self.server.url, f"{type(exc).__name__}: {exc}") from None
        self._inbox = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(_read_loop(self._ws, self._inbox))

    async def _disconnect(self, wait: float = CLOSE_WAIT) -> None:
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        protocol = ws.protocol if ws is not None else None
        if ws is not None:
            ws.close()
        if reader is not None:
            # The reader ends when the server acknowledges the close; then no socket is left open.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader, wait)
        # Whatever the server did, the socket is closed now: tornado would otherwise leave it to
        # a 5 s abort timer on an event loop that may be gone by then.
        if protocol is not None and protocol.stream is not None and not protocol.stream.closed():
            protocol.stream.close()

    def _send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg = self._messages.msg(msg_type, content)
        msg["channel"] = channel
        msg["buffers"] = []
        assert self._ws is not None
        self._ws.write_message(json.dumps(msg, default=json_default))
        return str(msg["header"]["msg_id"])

    async def _wait_ready(self) -> None:
        """Send kernel_info_request until its iopub status arrives (the kernel may still be starting).

        A shell reply alone is not enough: a freshly started kernel answers on shell before the
        server's iopub subscription delivers anything, and outputs sent meanwhile would be lost
        (the "nudge" of jupyter_client and nbclient, done over the websocket).
        """
        deadline = time.monotonic() + self.start_timeout
        sent: set[str] = set()
        while time.monotonic() < deadline:
            sent.add(self._send("kernel_info_request", {}))
            resend_at = min(deadline, time.monotonic() + NUDGE_INTERVAL)
            while time.monotonic() < resend_at:
                try:
                    msg = await asyncio.wait_for(self._inbox.get(), timeout=max(resend_at - time.monotonic(), 0.01))
                except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                    break
                if msg is None:
                    raise KernelStartError(f"the Jupyter server at {self.server.url} closed the kernel's websocket")
                if msg.get("channel") == "iopub" and _parent_id(msg) in sent:
                    return
        raise KernelStartError(
            f"kernel {self.kernel_id} on {self.server.url} did not answer within {self.start_timeout:g} s"
        )

    # -- execution --------------------------------------------------------------------------------

    async def execute(
        self,
        code: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        on_progress: ProgressHook | None = None,
        progress_every: float = 1.0,
        store_history: bool = True,
        collector: OutputCollector | None = None,
    ) -> ExecutionResult:
        """Run `code` and return its outputs; never raises for code errors, timeouts or kernel death."""
        async with self._exec_lock:
            await self.ensure_started()
            return await self._execute(code, timeout, on_progress, progress_every, store_history, collector)

    async def _execute(
        self,
        code: str,
        timeout: float,
        on_progress: ProgressHook | None,
        progress_every: float,
        store_history: bool,
        collector: OutputCollector | None = None,
    ) -> ExecutionResult:
        collector = collector or OutputCollector()
        reply: dict[str, Any] = {}
        started = time.monotonic()
        self.state = KernelState.BUSY
        self._next_liveness = started + LIVENESS_INTERVAL
        content = {
            "code": code,
            "silent": False,
            "store_history": store_history,
            "user_expressions": {},
            # input() raises in the cell instead of waiting forever for a reply.
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg_id = self._send("execute_request", content)
        self._unanswered = None
        status, note = await drive_execution(
            collector,
            started=started,
            timeout=timeout,
            on_progress=on_progress,
            progress_every=progress_every,
            pump=lambda wait: self._pump(collector, reply, msg_id, wait),
            interrupt_and_drain=lambda: self._interrupt_and_drain(collector, reply, msg_id),
            death_note=self._death_note,
        )
        if status == "ok":
            grace_end = time.monotonic() + REPLY_GRACE
            while not reply and time.monotonic() < grace_end:
                if not await self._pump(collector, reply, msg_id, POLL_INTERVAL):
                    break
            if reply.get("status") == "error" or (
                not reply and any(o.get("output_type") == "error" for o in collector.outputs)
            ):
                status = "error"
        if status == "dead" and self._restart_requested:
            status, note = "interrupted", f"stopped by restart_kernel after {time.monotonic() - started:.1f} s"
        unanswered = self._take_unanswered()
        if unanswered is not None:
            note = (
                f"{unanswered.rstrip('.')}; the server stopped answering while this code ran, which may still "
                "be running there; nbmcp reconnects on the next call"
            )
        if collector.execution_count is None and reply.get("execution_count") is not None:
            collector.execution_count = reply["execution_count"]
        if self.state == KernelState.BUSY:
            self.state = KernelState.IDLE
        return ExecutionResult(collector.finish(), collector.execution_count, status, time.monotonic() - started, note)

    async def _pump(self, collector: OutputCollector, reply: dict[str, Any], msg_id: str, wait: float) -> bool:
        """Handle the messages that arrive within `wait` seconds; False if the kernel died or is restarting."""
        if self._restart_requested:
            return False  # restart_kernel: answer now, with what came so far
        try:
            msg = await asyncio.wait_for(self._inbox.get(), timeout=max(wait, 0.001))
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            now = time.monotonic()
            if now >= self._next_liveness:
                self._next_liveness = now + LIVENESS_INTERVAL
                if not await self._alive():
                    self.state = KernelState.DEAD
                    return False
            return True
        while True:
            if not self._handle(msg, collector, reply, msg_id):
                self.state = KernelState.DEAD
                return False
            try:
                msg = self._inbox.get_nowait()
            except asyncio.QueueEmpty:
                return True

    def _handle(
        self, msg: dict[str, Any] | None, collector: OutputCollector, reply: dict[str, Any], msg_id: str
    ) -> bool:
        if msg is None:
            return False  # the websocket closed: the server stopped or the kernel is gone
        channel = msg.get("channel")
        msg_type = msg.get("msg_type")
        # The server's own status messages (no parent): the kernel died (and is being restarted) or is gone.
        if (
            channel == "iopub"
            and msg_type == "status"
            and not msg.get("parent_header")
            and msg.get("content", {}).get("execution_state") in ("restarting", "dead")
        ):
            return False
        if _parent_id(msg) != msg_id:
            return True
        if channel == "iopub":
            collector.process(msg)
        elif channel == "shell" and msg_type == "execute_reply":
            reply.update(msg.get("content", {}))
        return True

    async def _alive(self) -> bool:
        if self.kernel_id is None:
            return False
        try:
            model = await self._kernel_model(self.kernel_id, timeout=CONTROL_TIMEOUT)
        except NbmcpError:
            return True  # the server is busy or unreachable; a closed websocket or the interrupt says more
        return model is not None and model.get("execution_state") != "dead"

    async def _interrupt_and_drain(self, collector: OutputCollector, reply: dict[str, Any], msg_id: str) -> bool:
        """Interrupt, then collect output until the kernel is idle; restart it if it will not stop."""
        try:
            await self.interrupt()
        except ServerUnreachableError as exc:
            # Frozen or gone: waiting for it would only delay the answer. Reconnect on the next call.
            self._unanswered = str(exc)
            self.state = KernelState.DEAD
            await self._disconnect(wait=0)  # a frozen server would not acknowledge the close either
            return False
        except NbmcpError as exc:
            logger.warning("could not interrupt the kernel: %s", exc)
        grace_end = time.monotonic() + INTERRUPT_GRACE
        while not collector.idle and time.monotonic() < grace_end:
            if not await self._pump(collector, reply, msg_id, POLL_INTERVAL):
                return False
        if collector.idle:
            # Consume the execute_reply so it is not mistaken for the next execution's.
            reply_end = time.monotonic() + REPLY_GRACE
            while not reply and time.monotonic() < reply_end:
                if not await self._pump(collector, reply, msg_id, POLL_INTERVAL):
                    break
            self.state = KernelState.IDLE
            return True
        logger.warning("kernel did not stop after an interrupt; restarting it")
        if self.kernel_id is not None:
            with contextlib.suppress(NbmcpError):
                await self._request("POST", "kernels", self.kernel_id, "restart", what="restarting the kernel")
        await self._disconnect()
        self._start_task = None
        self.state = KernelState.NOT_STARTED
        self.start_background()
        return False

    def _take_unanswered(self) -> str | None:
        unanswered, self._unanswered = self._unanswered, None
        return unanswered

    def _death_note(self) -> str:
        logger.warning("the kernel on %s died while running code", self.server.url)
        return "the kernel died while running this code (it will be restarted on the next execution)"


def _parent_id(msg: dict[str, Any]) -> str | None:
    parent = msg.get("parent_header") or {}
    return parent.get("msg_id")


async def _read_loop(ws: WebSocketClientConnection, inbox: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Move every websocket message to `inbox`; None marks the end of the connection."""
    try:
        while True:
            raw = await ws.read_message()
            if raw is None:
                break
            if isinstance(raw, bytes):
                # Binary frames carry messages with buffers (widgets, comms); outputs never have them.
                continue
            msg = json.loads(raw)
            msg.setdefault("msg_type", msg.get("header", {}).get("msg_type"))
            inbox.put_nowait(msg)
    finally:
        inbox.put_nowait(None)


def _swallow(task: asyncio.Task[None]) -> None:
    # A failed background start is reported by the next call that needs the kernel.
    if not task.cancelled():
        task.exception()
