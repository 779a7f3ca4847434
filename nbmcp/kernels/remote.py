"""The remote kernel: a kernel on a Jupyter server, driven over its REST API and websocket channels.

It behaves like `LocalKernel` (same states, same `ExecutionResult`, same `OutputCollector`, the same
`Kernel.execute`), so the session does not know where code runs. Which kernel, in this order:

- ``RUNTIME_ID``: that running kernel (an error if the server has no such kernel);
- ``START_NEW_RUNTIME=true``: a new kernel of our own, shut down when nbmcp stops;
- otherwise the notebook's session on the server (the kernel JupyterLab shows for that notebook),
  created through ``POST /api/sessions`` if there is none. It outlives nbmcp, like JupyterLab's.

Whenever the notebook has no session on the server, one is created for the kernel we use, so
JupyterLab shows that kernel attached to the notebook.

Messages travel over the kernel's websocket (`KernelChannels`). A dead kernel is noticed from the
server's ``restarting``/``dead`` status messages, or ``GET /api/kernels/<id>`` answering 404 or ``dead``
while we wait; never a hang.

The far side restarts, culls and drops connections (issue 25). A websocket that closed between calls
shows as ``disconnected`` and the next call reconnects; one that closes while code runs is reconnected
at once when the kernel still exists (the server replays what it buffered meanwhile, so no output is
lost). When the kernel itself is gone, one new kernel is started and the answer says that the old
kernel's variables are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import anyio
import httpx2
from tornado.websocket import WebSocketClosedError

from ..errors import KernelStartError, NbmcpError, NoKernelsApiError, ServerUnreachableError
from ..jupyter.client import HTTP_TIMEOUT, JupyterServer, json_body, raise_for_status, translate_errors
from .base import (
    DEATH_NOTE,
    KERNEL_START_TIMEOUT,
    POLL_INTERVAL,
    Kernel,
    KernelState,
    Run,
    leave_failure_to_next_call,
)
from .channels import KernelChannels, parent_id
from .choice import KernelChoice
from .outputs import OutputCollector

__all__ = ["CONTROL_TIMEOUT", "LIVENESS_INTERVAL", "MAX_RECONNECTS", "REPLY_GRACE", "RemoteKernel"]

logger = logging.getLogger(__name__)

#: Seconds between `GET /api/kernels/<id>` liveness checks while an execution produces no messages.
LIVENESS_INTERVAL = 1.0
#: Seconds to wait for the execute_reply once the kernel reported idle.
REPLY_GRACE = 2.0
#: Seconds a liveness check or an interrupt request may take: a frozen server (SIGSTOP,
#: swapped out) accepts connections but never answers, and a call must not wait HTTP_TIMEOUT for it
#: several times over (issue 13: an execution answered minutes after its timeout).
CONTROL_TIMEOUT = 3.0
#: Times one execution reconnects a dropped websocket before it gives up (a link that keeps dropping).
MAX_RECONNECTS = 3


class RemoteKernel(Kernel):
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
        super().__init__()
        self.server = server
        self.notebook_path = notebook_path.strip("/")
        self.start_timeout = start_timeout
        self._state = KernelState.NOT_STARTED
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
        self._channels = KernelChannels(server)
        self._start_task: asyncio.Task[None] | None = None
        #: restart_kernel is under way: a running call that sees the kernel go says why.
        self._restart_requested = False
        #: Said in the next execution's answer: the kernel we had is gone and a new one replaced it.
        self._replaced_note: str | None = None

    @property
    def state(self) -> KernelState:
        """The stored state, except that an idle kernel whose websocket closed is ``disconnected``."""
        if self._state == KernelState.IDLE and not self._channels.connected:
            return KernelState.DISCONNECTED
        return self._state

    @state.setter
    def state(self, value: KernelState) -> None:
        self._state = value

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
            self._start_task.add_done_callback(leave_failure_to_next_call)

    async def ensure_started(self) -> None:
        """Wait until the kernel is ready, reconnecting (or starting one) if needed."""
        if self.state in (KernelState.DEAD, KernelState.FAILED, KernelState.NOT_STARTED, KernelState.DISCONNECTED) and (
            self._start_task is None or self._start_task.done()
        ):
            await self._channels.close()
            self._start_task = None
        if self._start_task is None:
            self._start_task = asyncio.get_running_loop().create_task(self._start())
            self._start_task.add_done_callback(leave_failure_to_next_call)
        await asyncio.shield(self._start_task)

    async def _start(self) -> None:
        self.state = KernelState.STARTING
        self.error = None
        started = time.monotonic()
        previous = self.kernel_id
        try:
            kernel_id = await self._resolve_kernel()
            self.kernel_id = kernel_id
            if previous is not None and kernel_id != previous:
                self._replaced_note = (
                    f"kernel {previous} is gone from {self.server.url} (the server restarted, or it shut the kernel "
                    f"down); this ran on a new kernel {kernel_id}, so variables defined before are gone"
                )
                logger.warning("%s", self._replaced_note)
            await self._channels.connect(kernel_id)
            await self._channels.wait_ready(self.start_timeout)
        except Exception as exc:
            self.state = KernelState.FAILED
            if isinstance(exc, NbmcpError):
                self.error = str(exc)
            else:
                self.error = f"could not use a kernel on {self.server.url}: {type(exc).__name__}: {exc}"
            logger.error("%s", self.error)
            await self._channels.close()
            await self._discard_failed_start(previous)
            await self._close_http()
            if isinstance(exc, NbmcpError):
                raise
            raise KernelStartError(self.error) from exc
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._channels.close()
                await self._discard_failed_start(previous)
                await self._close_http()
            self.state = KernelState.NOT_STARTED
            raise
        self.state = KernelState.IDLE
        logger.info("%s ready in %.2f s", self.choice.describe(), time.monotonic() - started)

    async def _discard_failed_start(self, previous: str | None) -> None:
        """Delete the kernel this start created, if it did: a failed start leaves no kernel behind."""
        if not self._owned_kernel or self.kernel_id is None or self.kernel_id == previous:
            return
        with contextlib.suppress(Exception):
            if self._owned_session is not None:
                await self._request("DELETE", "sessions", self._owned_session, what="ending the session", ok=(404,))
            await self._request(
                "DELETE", "kernels", self.kernel_id, what="deleting the kernel", ok=(404,), timeout=CONTROL_TIMEOUT
            )
            logger.info("deleted kernel %s of the failed start on %s", self.kernel_id, self.server.url)
        self._owned_kernel, self._owned_session, self.kernel_id = False, None, previous

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
                await self._channels.close()
                self._start_task = None
                self.state = KernelState.NOT_STARTED
        finally:
            self._restart_requested = False
        await self.ensure_started()
        self._replaced_note = None  # a restart loses the variables anyway: nothing more to say

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
            await self._channels.close()
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
        model: dict[str, Any] = json_body(self.server, r, "looking up the kernel")
        return model

    async def _resolve_kernel(self) -> str:
        """The id of the kernel to use: the one we had if it still exists, else per the configuration."""
        if self.kernel_id is not None and await self._kernel_model(self.kernel_id) is not None:
            return self.kernel_id
        listed = await self._sessions()
        if listed is None and self._wanted_id is None and not self._start_new:
            # A Kernel or Enterprise Gateway on its default settings: no sessions, so no notebook session
            # to find. Its kernels API alone serves, as with START_NEW_RUNTIME=true (or --gateway).
            logger.info(
                "%s refuses the sessions API, as a Kernel or Enterprise Gateway does by default: nbmcp starts a "
                "kernel of its own there, deleted when it exits (--gateway URL says so outright)",
                self.server.url,
            )
            self._start_new = True
        # Older servers and gateways put the path under "notebook".
        mine = [
            s
            for s in listed or []
            if (s.get("path") or s.get("notebook", {}).get("path")) == self.notebook_path and s.get("kernel")
        ]
        if self._wanted_id is not None:
            model = await self._kernel_model(self._wanted_id)
            if model is None:
                listing = await self._request("GET", "kernels", what="listing kernels", ok=(403,))
                ids = (
                    []
                    if listing.status_code == 403
                    else [k["id"] for k in json_body(self.server, listing, "listing kernels")]
                )
                running = ", ".join(ids) or ("not listed by the server" if listing.status_code == 403 else "none")
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
            model = json_body(self.server, r, "starting a kernel")
            kernel_id, self._kernel_name = model["id"], model.get("name")
            self._owned_kernel, self.kernel_id = True, kernel_id  # deleted if the start fails from here on
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
        if not mine and listed is not None:
            session = await self._create_session({"id": kernel_id})
            if self._owned_kernel:
                self._owned_session = session["id"]
        return str(kernel_id)

    async def _sessions(self) -> list[dict[str, Any]] | None:
        """The server's sessions; None when it refuses the sessions API but runs kernels (a gateway)."""
        sessions = await self._request("GET", "sessions", what="listing sessions", ok=(403, 404))
        if sessions.status_code == 404:
            raise NoKernelsApiError(self.server.url)
        if sessions.status_code == 403:
            # A gateway's default, or a token the server refuses: only the latter refuses kernelspecs too.
            specs = await self._request("GET", "kernelspecs", what="listing kernelspecs")
            json_body(self.server, specs, "listing kernelspecs")
            return None
        listed: list[dict[str, Any]] = json_body(self.server, sessions, "listing sessions")
        return listed

    async def _create_session(self, kernel: dict[str, Any]) -> dict[str, Any]:
        body = {
            "path": self.notebook_path,
            "name": self.notebook_path.rpartition("/")[2],
            "type": "notebook",
            "kernel": kernel,
        }
        r = await self._request("POST", "sessions", what="creating a session for the notebook", json_body=body)
        session: dict[str, Any] = json_body(self.server, r, "creating a session for the notebook")
        return session

    async def _installed(self, name: str) -> str | None:
        """`name` if the server has that kernelspec, else None (the server's default is used)."""
        r = await self._request("GET", "kernelspecs", what="listing kernelspecs", ok=(404,))
        specs = json_body(self.server, r, "listing kernelspecs").get("kernelspecs", {}) if r.status_code == 200 else {}
        if name in specs:
            return name
        logger.info("the server has no kernel %r (it has: %s); using its default", name, ", ".join(specs) or "none")
        return None

    async def _alive(self) -> bool:
        if self.kernel_id is None:
            return False
        try:
            model = await self._kernel_model(self.kernel_id, timeout=CONTROL_TIMEOUT)
        except NbmcpError:
            return True  # the server is busy or unreachable; a closed websocket or the interrupt says more
        return model is not None and model.get("execution_state") != "dead"

    async def _give_up(self) -> None:
        """Restart a kernel that ignored an interrupt, and reconnect in the background."""
        logger.warning("kernel did not stop after an interrupt; restarting it")
        if self.kernel_id is not None:
            with contextlib.suppress(NbmcpError):
                await self._request("POST", "kernels", self.kernel_id, "restart", what="restarting the kernel")
        await self._channels.close()
        self._start_task = None
        self.state = KernelState.NOT_STARTED
        self.start_background()

    # -- execution --------------------------------------------------------------------------------

    async def begin_run(self, collector: OutputCollector) -> Run:
        """Wait until the kernel is ready (reconnecting or starting one if needed); a run on it."""
        await self.ensure_started()
        note, self._replaced_note = self._replaced_note, None
        return _RemoteRun(self, collector, note or "")


class _RemoteRun(Run):
    """One execution on a remote kernel: an execute_request over the websocket, and its answers."""

    def __init__(self, kernel: RemoteKernel, collector: OutputCollector, note: str = "") -> None:
        super().__init__(collector)
        self.kernel = kernel
        self.channels = kernel._channels
        #: Said before the answer's own note (a new kernel replaced one the server lost).
        self.note = note
        self.msg_id = ""
        self.content: dict[str, Any] = {}
        #: The request was written to a websocket / the kernel answered it (a message with it as parent).
        self.written = self.delivered = False
        #: When to send the request again: it went into a websocket that dropped, and no replay showed it arrived.
        self.resend_at: float | None = None
        self.reconnects = 0
        #: Why the kernel is gone, when the server no longer has it (instead of DEATH_NOTE).
        self.gone: str | None = None
        #: The content of the kernel's execute_reply, once it came.
        self.reply: dict[str, Any] = {}
        self.next_liveness = self.started + LIVENESS_INTERVAL
        #: Why the server stopped answering during this execution, once it did.
        self.unanswered: str | None = None

    async def send(self, code: str, *, store_history: bool) -> None:
        self.content = {
            "code": code,
            "silent": False,
            "store_history": store_history,
            "user_expressions": {},
            # input() raises in the cell instead of waiting forever for a reply.
            "allow_stdin": False,
            "stop_on_error": True,
        }
        self._send()

    def _send(self) -> None:
        self.resend_at = None
        try:
            self.msg_id = self.channels.send("execute_request", self.content)
            self.written = True
        except WebSocketClosedError:
            # It closed since the kernel was found ready: `pump` sees the end, reconnects and sends it then.
            self.written = False

    async def pump(self, wait: float) -> bool:
        """Handle the messages that arrive within `wait` seconds; False if the kernel died or is restarting."""
        kernel = self.kernel
        if kernel._restart_requested:
            return False  # restart_kernel: answer now, with what came so far
        if self.resend_at is not None and not self.delivered and time.monotonic() >= self.resend_at:
            logger.warning(
                "the code never reached kernel %s before its websocket dropped; sending it again", kernel.kernel_id
            )
            self._send()
        try:
            msg = await asyncio.wait_for(self.channels.inbox.get(), timeout=max(wait, 0.001))
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            now = time.monotonic()
            if now >= self.next_liveness:
                self.next_liveness = now + LIVENESS_INTERVAL
                if not await kernel._alive():
                    kernel.state = KernelState.DEAD
                    return False
            return True
        while True:
            if msg is None:  # the websocket closed: the server, a proxy or the network dropped it
                return await self._reconnect()
            if not self._handle(msg):
                kernel.state = KernelState.DEAD
                return False
            try:
                msg = self.channels.inbox.get_nowait()
            except asyncio.QueueEmpty:
                return True

    async def _reconnect(self) -> bool:
        """The websocket closed while code ran: reconnect if the kernel still exists; False if not.

        The same session id makes jupyter_server replay the messages it buffered meanwhile, so the
        run goes on as if nothing happened.
        """
        kernel, channels = self.kernel, self.channels
        kernel_id = kernel.kernel_id
        if kernel._restart_requested or kernel_id is None:
            return False
        try:
            model = await kernel._kernel_model(kernel_id, timeout=CONTROL_TIMEOUT)
            if model is None or model.get("execution_state") == "dead":
                self.gone = (
                    f"kernel {kernel_id} is gone from {kernel.server.url} (the server restarted, or it shut the "
                    "kernel down) while this code ran; the next execution starts a new kernel, without the variables"
                )
                kernel.state = KernelState.DEAD
                return False
            if self.reconnects >= MAX_RECONNECTS:
                why = f"its websocket closed {self.reconnects + 1} times during one call"
                raise ServerUnreachableError(kernel.server.url, why, option=kernel.server.url_option)
            self.reconnects += 1
            await channels.connect(kernel_id)
        except NbmcpError as exc:
            self.unanswered = str(exc)
            kernel.state = KernelState.DEAD  # the next call finds the kernel again, or a new one
            await channels.close(wait=0)
            return False
        logger.warning("the websocket to kernel %s on %s closed; reconnected", kernel_id, kernel.server.url)
        if not self.delivered:
            # The request never left, or went into the dropped connection: the server replays what the
            # kernel answered meanwhile; if nothing for it comes within REPLY_GRACE, it never arrived.
            self.resend_at = time.monotonic() + (REPLY_GRACE if self.written else 0)
        return True

    def _handle(self, msg: dict[str, Any]) -> bool:
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
        if parent_id(msg) != self.msg_id:
            return True
        self.delivered = True
        if channel == "iopub":
            self.collector.process(msg)
        elif channel == "shell" and msg_type == "execute_reply":
            self.reply.update(msg.get("content", {}))
        return True

    async def _await_reply(self) -> None:
        reply_end = time.monotonic() + REPLY_GRACE
        while not self.reply and time.monotonic() < reply_end:
            if not await self.pump(POLL_INTERVAL):
                break

    async def interrupt_and_drain(self) -> bool:
        """Interrupt, then collect output until the kernel is idle; restart it if it will not stop."""
        kernel, collector = self.kernel, self.collector
        try:
            await kernel.interrupt()
        except ServerUnreachableError as exc:
            # Frozen or gone: waiting for it would only delay the answer. Reconnect on the next call.
            self.unanswered = str(exc)
            kernel.state = KernelState.DEAD
            await self.channels.close(wait=0)  # a frozen server would not acknowledge the close either
            return False
        except NbmcpError as exc:
            logger.warning("could not interrupt the kernel: %s", exc)
        if not await self.drain():
            return False
        if collector.idle:
            # Consume the execute_reply so it is not mistaken for the next execution's.
            await self._await_reply()
            kernel.state = KernelState.IDLE
            return True
        await kernel._give_up()
        return False

    async def end(self) -> None:
        """The websocket stays open for the next call; never leave the kernel ``busy`` (a call that failed)."""
        if self.kernel._state == KernelState.BUSY:
            self.kernel.state = KernelState.IDLE

    def death_note(self) -> str:
        if self.gone is not None:
            return self.gone
        logger.warning("the kernel on %s died while running code", self.kernel.server.url)
        return DEATH_NOTE

    async def settle(self, status: str, note: str) -> tuple[str, str]:
        kernel, collector, reply = self.kernel, self.collector, self.reply
        if status == "ok":
            await self._await_reply()
            if reply.get("status") == "error" or (
                not reply and any(o.get("output_type") == "error" for o in collector.outputs)
            ):
                status = "error"
        if status == "dead" and kernel._restart_requested:
            status, note = "interrupted", f"stopped by restart_kernel after {time.monotonic() - self.started:.1f} s"
        if self.unanswered is not None:
            note = (
                f"{self.unanswered.rstrip('.')}; the server stopped answering while this code ran, which may still "
                "be running there; nbmcp reconnects on the next call"
            )
        if collector.execution_count is None and reply.get("execution_count") is not None:
            collector.execution_count = reply["execution_count"]
        if kernel.state == KernelState.BUSY:
            kernel.state = KernelState.IDLE
        if self.note:
            note = f"{self.note}. {note}" if note else self.note
        return status, note
