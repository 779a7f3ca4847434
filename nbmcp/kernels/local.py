"""The local kernel: one ipykernel (or any installed kernel) per notebook, via jupyter_client.

The kernel is started in the background when the notebook is opened, so editing tools never wait for
it and the first execution rarely does. Executions run one at a time through `Kernel.execute`; this
module supplies how a local kernel is started, replaced and stopped, and how code reaches it and its
messages come back (`_Run`).

Stopping never waits behind running code: `restart_kernel` answers the running call at once (within
`POLL_INTERVAL`) with its partial outputs and status `interrupted`, then the old kernel is
interrupted, asked to quit and killed after RESTART_GRACE seconds, and a new one starts. An interrupt
waits up to `INTERRUPT_GRACE` for the code to stop; a timeout that the code ignores that long
restarts the kernel. A kernel that dies while idle shows as dead, and the next execution starts a new
one with a note saying so. Its output channel never drops a message (`nbmcp.kernels.iopub`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from jupyter_core.paths import jupyter_runtime_dir

from ..errors import KernelError, KernelStartError
from .base import (
    DEATH_NOTE,
    INTERRUPT_GRACE,
    KERNEL_START_TIMEOUT,
    POLL_INTERVAL,
    Kernel,
    KernelState,
    Run,
    leave_failure_to_next_call,
)
from .choice import KernelChoice, ipykernel_python, load_jupyter_client
from .frontend import CommSender
from .iopub import queue_every_message, send_every_message
from .outputs import OutputCollector

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

# jupyter_client (zmq, tornado, traitlets) is imported where a kernel is started, on a worker thread
# when the notebook is opened: not at start-up, where a client waits for `initialize` (issue 14).

__all__ = ["HISTORY_IN_MEMORY", "RESTART_GRACE", "RUN_STOP_WAIT", "LocalKernel"]

logger = logging.getLogger(__name__)

#: The ipykernel argument that keeps IPython's history in memory (nbclient's default for its kernels).
HISTORY_IN_MEMORY = "--HistoryManager.hist_file=:memory:"
#: Seconds restart_kernel gives the old kernel (interrupted, then asked to quit) before killing it.
RESTART_GRACE = 2.0
#: Seconds restart and shutdown wait for the running call to let go of the old kernel's client.
RUN_STOP_WAIT = 3.0


def _one_spec_manager(spec: KernelSpec) -> KernelSpecManager:
    """A spec manager that hands AsyncKernelManager the spec we already chose, whatever name it asks for."""
    from jupyter_client.kernelspec import KernelSpecManager

    class _OneSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return spec

    return _OneSpecManager()


class _Instance:
    """One kernel process and its client: everything that belongs to one start, and only to it.

    Each start gets its own instance, so a superseded start or a finished run can only ever clean up
    what it created, never the kernel that replaced it (issue 13: a stale start task closing the new
    kernel's client ended the MCP session).
    """

    def __init__(self, km: AsyncKernelManager) -> None:
        self.km = km
        self.kc: Any = None
        self.closed = False
        #: The kernel ignored an interrupt: it must be replaced before it runs more code.
        self.stuck = False
        #: The choice's warning was given (in the first answer of this kernel's life).
        self.warned = False

    def exited(self) -> bool:
        """Whether the kernel process has ended (a cheap, synchronous check)."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return process is not None and process.poll() is not None

    async def is_alive(self) -> bool:
        try:
            return not self.closed and await self.km.is_alive()
        except Exception:
            return False

    async def close(self, *, grace: float = 0.0) -> None:
        """Stop the client and the process; with `grace`, interrupt and ask it to quit before killing it."""
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            kc, km = self.kc, self.km
            if kc is not None:
                with contextlib.suppress(Exception):
                    kc.stop_channels()
            with contextlib.suppress(Exception):
                if km.has_kernel:
                    if grace > 0:
                        with contextlib.suppress(Exception):
                            await km.interrupt_kernel()
                        # A shutdown_request first (the kernel may save state); killed after `grace`.
                        km.shutdown_wait_time = grace
                        await asyncio.wait_for(km.shutdown_kernel(now=False), grace * 2 + 5)
                    else:
                        await km.shutdown_kernel(now=True)
            if km.has_kernel:
                # The graceful path failed or timed out: make sure the process is gone.
                with contextlib.suppress(Exception):
                    await km.shutdown_kernel(now=True)
            with contextlib.suppress(Exception):
                await km.cleanup_resources()


class LocalKernel(Kernel):
    """A kernel process on this machine, managed by jupyter_client.

    One owner for the kernel's life (issue 13): start, restart, replacement of a dead or stuck kernel
    and shutdown run one at a time under `_life`; each start has its own `_Instance`, and a start that
    is superseded is cancelled and cleans up only its own process. Executions run one at a time under
    `_exec_lock`, but restart and interrupt never wait for it: they reach the running call through
    `_run` and it answers at once with its partial outputs and a note.
    """

    def __init__(
        self,
        choice: KernelChoice,
        cwd: Path,
        *,
        start_timeout: float = KERNEL_START_TIMEOUT,
        chooser: Callable[[], Awaitable[KernelChoice]] | None = None,
        history_in_memory: bool = False,
    ) -> None:
        super().__init__()
        #: IPython keeps the cells' history in memory, not in the user's history.sqlite (nbclient's
        #: `--HistoryManager.hist_file=:memory:`): a headless run writes nothing to the user's profile,
        #: and the parameters it injects (secrets, perhaps) stay out of a file shared by every kernel.
        self.history_in_memory = history_in_memory
        self._choice = choice
        #: Chooses the kernel again at each restart: ipykernel installed into the project's environment
        #: since the start (issue 24) is used from the next restart on, without restarting nbmcp.
        self._chooser = chooser
        self.cwd = cwd
        self.start_timeout = start_timeout
        self._state = KernelState.NOT_STARTED
        self.error: str | None = None
        self._inst: _Instance | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._life = asyncio.Lock()
        self._run: _Run | None = None
        #: The kernel died while no code ran: the next execution says so.
        self._died_idle = False
        #: interrupt_kernel was called while an execution waited for the kernel to start.
        self._interrupt_next = False

    @property
    def choice(self) -> KernelChoice:
        """Which kernel runs the code, and why that one."""
        return self._choice

    @property
    def state(self) -> KernelState:
        """The kernel's state; a process that ended while idle reads as dead, not idle."""
        inst = self._inst
        if self._state in (KernelState.IDLE, KernelState.BUSY) and inst is not None and inst.exited():
            # A death while busy is reported by the running call; one while idle by the next call.
            self._died_idle = self._state == KernelState.IDLE
            self._state = KernelState.DEAD
        return self._state

    @state.setter
    def state(self, value: KernelState) -> None:
        self._state = value

    # -- life cycle (every change of `_inst` happens under `_life`) -------------------------------

    def start_background(self) -> None:
        """Begin starting the kernel without waiting for it (called when the notebook is opened)."""
        if self._inst is None and not self._life.locked():
            self._begin_start()

    def _begin_start(self) -> asyncio.Task[None]:
        load_jupyter_client()
        from jupyter_client.manager import AsyncKernelManager

        spec = self.choice.spec
        km = AsyncKernelManager(kernel_name=self.choice.name)
        if spec is not None:
            km.kernel_spec_manager = _one_spec_manager(spec)
        if os.name == "posix" and spec is not None and any("ipykernel" in arg for arg in spec.argv):
            # Unix sockets, private to this user, not loopback TCP (ipykernel 7 warns at each TCP start that it
            # runs unencrypted), in Jupyter's runtime folder (absolute: the kernel runs in the notebook's folder);
            # cleanup_resources removes them. Only for ipykernel: not every kernel (IRkernel) knows ipc.
            km.transport = "ipc"
            km.ip = _ipc_prefix()
        inst = _Instance(km)
        self._inst = inst
        self.state = KernelState.STARTING
        self.error = None
        task = asyncio.get_running_loop().create_task(self._boot(inst))
        task.add_done_callback(leave_failure_to_next_call)
        self._start_task = task
        return task

    async def _boot(self, inst: _Instance) -> None:
        started = time.monotonic()
        try:
            extra = [HISTORY_IN_MEMORY] if self.history_in_memory and ipykernel_python(self.choice) is not None else []
            # The kernel's stdout goes to our stderr: in stdio mode our stdout carries only MCP.
            await inst.km.start_kernel(
                cwd=str(self.cwd), stdout=_stderr_fd(), stdin=subprocess.DEVNULL, extra_arguments=extra
            )
            inst.kc = inst.km.client()
            queue_every_message(inst.kc)
            # No heartbeat thread: the manager's is_alive() (a process check) notices a dead kernel,
            # and a heartbeat thread racing the context's teardown on a quick shutdown raised EMFILE.
            # No stdin channel: executions run with allow_stdin=False.
            inst.kc.start_channels(hb=False, stdin=False)
            await inst.kc.wait_for_ready(timeout=self.start_timeout)
            # The notebook's metadata.language_info is refreshed from the kernel, as nbclient does.
            language_info = await _language_info(inst.kc, timeout=self.start_timeout)
            if ipykernel_python(self.choice) is not None:
                await send_every_message(inst.kc, timeout=self.start_timeout)
        except Exception as exc:
            error = f"could not start kernel {self.choice.describe()}: {type(exc).__name__}: {exc}"
            await inst.close()
            if self._inst is inst:
                self.state = KernelState.FAILED
                self.error = error
                logger.error("%s", error)
            raise KernelStartError(error) from exc
        except BaseException:
            # Cancelled mid-start (superseded by a restart, or the server is closing): leave no
            # process or socket behind, and touch nothing but this start's own instance.
            await inst.close()
            raise
        if self._inst is inst:
            self.language_info = language_info
            self.state = KernelState.IDLE
            logger.info("kernel %s ready in %.2f s", self.choice.describe(), time.monotonic() - started)

    async def _discard(self, *, grace: float = 0.0) -> None:
        """Cancel the current start (if any) and close the current instance; under `_life`."""
        inst, task = self._inst, self._start_task
        self._inst = self._start_task = None
        if task is not None and not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})
        if inst is not None:
            await inst.close(grace=grace)

    async def _wait_start(self) -> None:
        """Wait for the current start; if a restart supersedes it meanwhile, wait for the new one."""
        while True:
            task = self._start_task
            if task is None:
                raise KernelError(f"kernel {self.choice.describe()} was shut down")
            # asyncio.wait, not await: a start cancelled by a restart must not look like our own
            # cancellation (that CancelledError used to escape the tool and end the MCP session).
            await asyncio.wait({task})
            if task is not self._start_task:
                continue
            if task.cancelled():
                raise KernelError(f"the start of kernel {self.choice.describe()} was cancelled")
            exc = task.exception()
            if exc is not None:
                raise exc
            return

    async def ensure_started(self) -> None:
        """Wait until the kernel is ready, starting (or replacing a dead, stuck or failed one) if needed."""
        async with self._life:
            inst = self._inst
            replace = inst is not None and (inst.stuck or self.state in (KernelState.DEAD, KernelState.FAILED))
            if replace and (self._start_task is None or self._start_task.done()):
                await self._discard()
            if self._inst is None:
                self._begin_start()
        await self._wait_start()

    async def _ready(self) -> tuple[_Instance, str]:
        """The instance to run code on, checked alive just before the code is sent, and a note."""
        _ = self.state  # notices a process that ended while idle
        await self.ensure_started()
        inst = self._inst
        assert inst is not None and inst.kc is not None
        if not await inst.is_alive():
            # Died while idle (killed, out of memory): replace it now, so the code runs instead of
            # being blamed for a death it did not cause.
            async with self._life:
                if self._inst is inst:
                    self._died_idle = True
                    self.state = KernelState.DEAD
                    await self._discard()
                    self._begin_start()
            await self._wait_start()
            inst = self._inst
            assert inst is not None and inst.kc is not None
        if not self._died_idle:
            return inst, ""
        self._died_idle = False
        logger.warning("the kernel died since the last call; a new one was started")
        return inst, "the kernel had died since the last call (its variables are lost); a new kernel was started"

    async def restart(self) -> None:
        """Restart the kernel (all variables are lost) and wait until it is ready.

        Does not wait for running code: the running call answers at once with its partial outputs and a
        note; the old kernel is interrupted, asked to quit, and killed after RESTART_GRACE seconds.
        """
        # Chosen before the old kernel goes: a choice that fails (--python lost its ipykernel) keeps it.
        choice = await self._chooser() if self._chooser is not None else None
        async with self._life:
            if choice is not None:
                if choice != self._choice:
                    logger.info("restart: kernel %s (was %s)", choice.describe(), self._choice.describe())
                self._choice = choice
            run = await self._stop_run("stopped by restart_kernel")
            await self._discard(grace=RESTART_GRACE if run is not None else 0.0)
            self._begin_start()
        await self._wait_start()

    async def _stop_run(self, why: str) -> _Run | None:
        """Make the running call (if any) answer now, `why` in its note, and wait until it lets go of the kernel."""
        run = self._run
        if run is not None:
            run.stop(why)
            # The run notices within a poll interval; nothing may use the old client after this.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.done.wait(), RUN_STOP_WAIT)
        return run

    async def interrupt(self) -> None:
        """Interrupt whatever the kernel is running; waits up to INTERRUPT_GRACE for running code to stop."""
        inst, run = self._inst, self._run
        if self._run is None and self._exec_lock.locked():
            self._interrupt_next = True
            return
        if inst is None or inst.closed or self.state not in (KernelState.BUSY, KernelState.IDLE):
            return
        if run is None and self._exec_lock.locked():
            # A call is waiting for the kernel (still starting, say): interrupt its code once it runs.
            self._interrupt_next = True
            return
        if run is not None:
            run.interrupted = True
            if run.collector.execution_count is None:
                # The kernel has not begun this code yet and would drop a signal sent now.
                run.interrupt_pending = True
                return
        with contextlib.suppress(Exception):
            await inst.km.interrupt_kernel()
        if run is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.done.wait(), INTERRUPT_GRACE)

    async def shutdown(self) -> None:
        """Stop the kernel process (a running call answers with what it has)."""
        with anyio.CancelScope(shield=True):
            async with self._life:
                await self._stop_run("stopped because the server is shutting down")
                await self._discard()
                self.state = KernelState.NOT_STARTED

    async def is_alive(self) -> bool:
        return self._inst is not None and await self._inst.is_alive()

    @property
    def pid(self) -> int | None:
        """The kernel process id, when one is running."""
        provisioner = getattr(self._inst.km if self._inst else None, "provisioner", None)
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    # -- execution --------------------------------------------------------------------------------

    async def begin_run(self, collector: OutputCollector) -> Run:
        """The kernel, checked alive just before the code is sent, as a run that restart and interrupt reach."""
        inst, note = await self._ready()
        if self.choice.warning and not inst.warned:
            # The first answer from a kernel that is not the project's says so first, with the fix (issue 24).
            inst.warned = True
            note = "; ".join(filter(None, [self.choice.warning, note]))
        run = _Run(self, inst, collector, note)
        run.interrupted = run.interrupt_pending = self._interrupt_next
        self._interrupt_next = False
        self._run = run
        return run

    async def _replace_stuck(self, inst: _Instance) -> None:
        async with self._life:
            if self._inst is inst:
                logger.warning("kernel did not stop after an interrupt; restarting it")
                await self._discard()
                self._begin_start()


class _Run(Run):
    """One execution on a local kernel; restart_kernel and interrupt_kernel reach it through `LocalKernel._run`."""

    def __init__(self, kernel: LocalKernel, inst: _Instance, collector: OutputCollector, note: str) -> None:
        super().__init__(collector)
        self.kernel = kernel
        self.inst = inst
        #: Said before the answer's own note (the kernel had died since the last call).
        self.note = note
        self.msg_id = ""
        #: Set when the call must answer now with what it has (restart_kernel, shutdown): the note says why.
        self.stop_note: str | None = None
        #: Set when interrupt_kernel interrupted it, for the note of its answer.
        self.interrupted = False
        #: interrupt_kernel came before the kernel began the code: signal it once it has.
        self.interrupt_pending = False
        self.done = asyncio.Event()

    def stop(self, why: str) -> None:
        if self.stop_note is None:
            self.stop_note = f"{why} after {time.monotonic() - self.started:.1f} s; the outputs up to then are shown"

    async def send(self, code: str, *, store_history: bool) -> None:
        # allow_stdin=False: input() raises in the cell instead of waiting forever for a reply.
        self.msg_id = self.inst.kc.execute(code, store_history=store_history, allow_stdin=False)

    async def pump(self, wait: float) -> bool:
        """Feed iopub messages for this run to the collector for up to `wait` seconds.

        Returns False if the kernel died or the run must stop. Checks liveness whenever no message
        arrives in time, so a dead kernel is noticed within POLL_INTERVAL plus the time of `is_alive`.
        """
        inst, collector, msg_id = self.inst, self.collector, self.msg_id
        if self.stop_note is not None or inst.closed:
            return False
        kc = inst.kc
        try:
            msg = await kc.get_iopub_msg(timeout=max(wait, 0.001))
        except queue.Empty:
            return await inst.is_alive()
        except asyncio.CancelledError:
            # zmq cancels its poll when the socket is closed under it: that is not our cancellation.
            if _stray_cancel(inst):
                return False
            raise
        except Exception as exc:
            logger.warning("lost the kernel's output channel: %r", exc)
            return False
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            collector.process(msg)
        # Drain whatever else is already queued without waiting, so bursts are cheap.
        while not collector.idle and not inst.closed:
            try:
                msg = await kc.get_iopub_msg(timeout=0)
            except queue.Empty:
                break
            except Exception:
                return False
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                collector.process(msg)
        if self.interrupt_pending and collector.execution_count is not None and not collector.idle:
            self.interrupt_pending = False
            with contextlib.suppress(Exception):
                await inst.km.interrupt_kernel()
        return True

    async def interrupt_and_drain(self) -> bool:
        """Interrupt, then collect output until the kernel is idle; mark it stuck if it will not stop."""
        inst, collector = self.inst, self.collector
        if inst.closed:
            return False
        with contextlib.suppress(Exception):
            await inst.km.interrupt_kernel()
        if not await self.drain():
            return False
        if collector.idle:
            # Consume the execute_reply so it is not mistaken for the next execution's.
            await self._reply_status()
            return True
        inst.stuck = True
        return False

    async def _reply_status(self) -> str:
        inst, collector = self.inst, self.collector
        kc = inst.kc
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and self.stop_note is None and not inst.closed:
            try:
                reply = await kc.get_shell_msg(timeout=min(max(deadline - time.monotonic(), 0.001), POLL_INTERVAL))
            except queue.Empty:
                continue
            except asyncio.CancelledError:
                if _stray_cancel(inst):
                    break
                raise
            except Exception:
                break
            if reply.get("parent_header", {}).get("msg_id") == self.msg_id:
                content = reply.get("content", {})
                if collector.execution_count is None and content.get("execution_count") is not None:
                    collector.execution_count = content["execution_count"]
                return "error" if content.get("status") == "error" else "ok"
        return "error" if any(o.get("output_type") == "error" for o in collector.outputs) else "ok"

    def comm_sender(self) -> CommSender | None:
        kc = self.inst.kc

        def send(content: dict[str, Any], parent: dict[str, Any]) -> None:
            # On the shell channel, as a front end sends it; the kernel handles it after the running code.
            if not self.inst.closed:
                kc.shell_channel.send(kc.session.msg("comm_msg", content=content, parent=parent))

        return send

    def death_note(self) -> str:
        logger.warning("the kernel died while running code")
        return DEATH_NOTE

    async def settle(self, status: str, note: str) -> tuple[str, str]:
        kernel, inst = self.kernel, self.inst
        if self.stop_note is not None:
            status, note = "interrupted", self.stop_note
        elif status == "ok":
            status = await self._reply_status()
        elif status == "dead" and kernel._inst is inst:
            kernel.state = KernelState.DEAD
        if self.interrupted and self.stop_note is None:
            note = "; ".join(filter(None, [note, "interrupted by interrupt_kernel"]))
        if kernel._inst is inst and kernel._state == KernelState.BUSY:
            kernel.state = KernelState.IDLE
        if self.note:
            note = f"{self.note}. {note}" if note else self.note
        return status, note

    async def end(self) -> None:
        kernel, inst = self.kernel, self.inst
        kernel._run = None
        self.done.set()
        if inst.stuck:
            # It ignored an interrupt: replace it in the background, as one more life-cycle step.
            with anyio.CancelScope(shield=True):
                await kernel._replace_stuck(inst)


async def _language_info(kc: Any, *, timeout: float) -> dict[str, Any] | None:
    """The kernel's `language_info`, from its kernel_info reply (None if it gives none in time)."""
    msg_id = kc.kernel_info()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = await kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            break
        if reply.get("parent_header", {}).get("msg_id") == msg_id:
            info = reply.get("content", {}).get("language_info")
            return info if isinstance(info, dict) else None
    return None


def _stray_cancel(inst: _Instance) -> bool:
    """Whether a CancelledError came from zmq cancelling its poll on `inst`'s closed socket, not from us."""
    return inst.closed and not _cancelling()


def _cancelling() -> bool:
    """Whether the current task is being cancelled (always assumed so before Python 3.11)."""
    task = asyncio.current_task()
    counter = getattr(task, "cancelling", None)
    return counter is None or counter() > 0


def _ipc_prefix() -> str:
    """A fresh absolute prefix for a kernel's Unix sockets, in Jupyter's runtime folder (private to the user)."""
    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, exist_ok=True)
    return os.path.join(runtime, f"nbmcp-{uuid.uuid4().hex[:12]}-ipc")


def _stderr_fd() -> int:
    stream = sys.__stderr__
    return stream.fileno() if stream is not None else subprocess.DEVNULL
