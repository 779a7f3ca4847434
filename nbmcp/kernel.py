"""The local kernel: one ipykernel (or any installed kernel) per notebook, via jupyter_client.

The kernel is started in the background when the notebook is opened, so editing tools never wait for
it and the first execution rarely does. Executions run one at a time; each returns an
`ExecutionResult` whatever happens: a timeout interrupts the kernel and returns the partial outputs,
a dead kernel is noticed while waiting (never a hang) and restarted on the next execution.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import glob
import logging
import os
import queue
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from nbformat import NotebookNode

from .errors import KernelError, KernelStartError, UsageError
from .outputs import OutputCollector

__all__ = [
    "DEFAULT_TIMEOUT",
    "INTERRUPT_GRACE",
    "KERNEL_START_TIMEOUT",
    "RESTART_GRACE",
    "ExecutionResult",
    "Kernel",
    "KernelChoice",
    "KernelState",
    "LocalKernel",
    "choose_kernel",
    "drive_execution",
]

logger = logging.getLogger(__name__)

#: Default seconds an execution may run before it is interrupted (the seed tools' default).
DEFAULT_TIMEOUT = 300.0
#: Seconds to wait for the kernel to become ready after it is launched.
KERNEL_START_TIMEOUT = 60.0
#: Seconds an interrupted execution gets to wind down before the kernel is restarted instead.
INTERRUPT_GRACE = 5.0
#: How often (seconds) the wait for output also checks that the kernel process is still alive.
POLL_INTERVAL = 0.25
#: Seconds restart_kernel gives the old kernel (interrupted, then asked to quit) before killing it.
RESTART_GRACE = 2.0
#: Seconds restart and shutdown wait for the running call to let go of the old kernel's client.
RUN_STOP_WAIT = 3.0


class KernelState(str, enum.Enum):
    """Where the kernel is in its life, as reported by `get_notebook_info` and `/api/healthz`."""

    NOT_STARTED = "not started"
    """No start has been requested yet."""
    STARTING = "starting"
    """The process is launching or the kernel is not yet answering."""
    IDLE = "idle"
    """Ready for code."""
    BUSY = "busy"
    """Running code for a tool call."""
    DEAD = "dead"
    """The process died; the next execution restarts it."""
    FAILED = "failed"
    """It could not be started; the error says why."""


@dataclass(frozen=True)
class KernelChoice:
    """Which kernel runs the notebook's code, and why that one."""

    name: str
    """The kernelspec name, or ``python`` for an interpreter given by path."""
    argv0: str
    """The program the kernel runs (an interpreter path, usually)."""
    reason: str
    """How it was chosen: ``--kernel``, ``--python``, ``notebook metadata``, ``.venv``, ``default``."""
    spec: KernelSpec | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        return f"{self.name} ({self.argv0}; chosen by {self.reason})"


def _python_spec(python: str, display: str) -> KernelSpec:
    return KernelSpec(
        argv=[python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name=display,
        language="python",
        # ipykernel's fd-level capture sends even C-level prints through iopub, not our stdout.
        env={"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
    )


def _argv0(spec: KernelSpec) -> str:
    argv0 = spec.argv[0] if spec.argv else "?"
    # jupyter_client runs a spec whose program is plain "python" with its own interpreter.
    if argv0 in {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}:
        return sys.executable
    return argv0


def _venv_python(folder: Path) -> str | None:
    """The interpreter of a `.venv` beside the notebook, if that environment has ipykernel."""
    venv = folder / ".venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        return None
    patterns = [
        str(venv / "lib" / "python*" / "site-packages" / "ipykernel"),
        str(venv / "Lib/site-packages/ipykernel"),
    ]
    if any(glob.glob(p) for p in patterns):
        return str(python)
    logger.info("%s exists but has no ipykernel; not using it (pip install ipykernel there to use it)", venv)
    return None


def choose_kernel(
    *,
    kernel_name: str | None = None,
    python: str | None = None,
    notebook_kernel: str | None = None,
    notebook_dir: Path | None = None,
    spec_manager: KernelSpecManager | None = None,
) -> KernelChoice:
    """Pick the kernel in the order of DESIGN.md: --kernel, --python, metadata, .venv, python3."""
    ksm = spec_manager or KernelSpecManager()
    if kernel_name:
        try:
            spec = ksm.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            installed = ", ".join(sorted(ksm.find_kernel_specs())) or "none"
            raise UsageError(
                f"no kernel named {kernel_name!r} is installed (installed: {installed}); "
                "see `jupyter kernelspec list`, or use --python PATH"
            ) from None
        return KernelChoice(kernel_name, _argv0(spec), "--kernel", spec)
    if python:
        path = Path(python).expanduser()
        if not path.exists():
            raise UsageError(f"--python {python}: no such interpreter")
        return KernelChoice("python", str(path), "--python", _python_spec(str(path), f"Python ({path})"))
    if notebook_kernel:
        try:
            spec = ksm.get_kernel_spec(notebook_kernel)
            return KernelChoice(notebook_kernel, _argv0(spec), "notebook metadata", spec)
        except NoSuchKernel:
            logger.info("the notebook asks for kernel %r, which is not installed here", notebook_kernel)
    if notebook_dir is not None:
        venv_python = _venv_python(notebook_dir)
        if venv_python:
            return KernelChoice("python", venv_python, ".venv", _python_spec(venv_python, "Python (.venv)"))
    # The interpreter nbmcp runs on always has ipykernel: it is one of our dependencies.
    return KernelChoice("python3", sys.executable, "default", _python_spec(sys.executable, "Python 3"))


class _OneSpecManager(KernelSpecManager):
    """Hands AsyncKernelManager the spec we already chose, whatever name it asks for."""

    def __init__(self, spec: KernelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._spec = spec

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return self._spec


@dataclass
class ExecutionResult:
    """What one execution produced, whether it finished, failed, timed out or killed the kernel."""

    outputs: list[NotebookNode]
    execution_count: int | None
    status: str
    """``ok``, ``error`` (the code raised), ``timeout``, ``dead`` (the kernel died), ``interrupted``
    (restart_kernel or shutdown stopped it; `note` says which) or ``cancelled``."""
    elapsed: float
    note: str = ""


ProgressHook = Callable[[OutputCollector, float], Awaitable[None]]


async def drive_execution(
    collector: OutputCollector,
    *,
    started: float,
    timeout: float,
    on_progress: ProgressHook | None,
    progress_every: float,
    pump: Callable[[float], Awaitable[bool]],
    interrupt_and_drain: Callable[[], Awaitable[bool]],
    death_note: Callable[[], str],
) -> tuple[str, str]:
    """Wait for one execution to finish; the state machine shared by the local and remote kernels.

    `pump(wait)` feeds the collector the messages that arrive within `wait` seconds and returns False
    if the kernel died; `interrupt_and_drain()` interrupts, collects output until the kernel is idle
    and returns False if it had to be restarted. Returns the status (``ok`` until the kernel's reply
    says otherwise, ``timeout`` or ``dead``) and a note for the caller.
    """
    deadline = started + timeout
    next_progress = started + progress_every
    try:
        while not collector.idle:
            now = time.monotonic()
            if now >= deadline:
                logger.info("execution timed out after %g s; interrupting the kernel", timeout)
                if await interrupt_and_drain():
                    return (
                        "timeout",
                        f"timed out after {timeout:g} s; the kernel was interrupted and is ready for more code",
                    )
                return "timeout", (
                    f"timed out after {timeout:g} s and did not stop when interrupted; the kernel was restarted "
                    "(its variables are lost)"
                )
            if on_progress is not None and now >= next_progress:
                next_progress = now + progress_every
                await on_progress(collector, now - started)
            wait = min(POLL_INTERVAL, deadline - now, max(next_progress - now, 0.01))
            if not await pump(wait):
                return "dead", death_note()
    except BaseException:
        # MCP cancellation of the tool call (or shutdown): stop the code, then let go.
        with anyio.CancelScope(shield=True):
            await interrupt_and_drain()
        raise
    return "ok", ""


class Kernel(Protocol):
    """What the session needs of a kernel: `LocalKernel` here, `RemoteKernel` on a Jupyter server."""

    state: KernelState
    error: str | None

    @property
    def choice(self) -> KernelChoice: ...

    def start_background(self) -> None: ...

    async def ensure_started(self) -> None: ...

    async def execute(
        self,
        code: str,
        *,
        timeout: float = ...,
        on_progress: ProgressHook | None = None,
        progress_every: float = 1.0,
        store_history: bool = True,
        collector: OutputCollector | None = None,
    ) -> ExecutionResult: ...

    async def interrupt(self) -> None: ...

    async def restart(self) -> None: ...

    async def shutdown(self) -> None: ...


class _Run:
    """The execution in progress; restart_kernel and interrupt_kernel reach it through here."""

    def __init__(self, started: float) -> None:
        self.started = started
        #: Set when the call must answer now with what it has (restart_kernel, shutdown): the note says why.
        self.stop_note: str | None = None
        #: Set when interrupt_kernel interrupted it, for the note of its answer.
        self.interrupted = False
        #: interrupt_kernel came before the kernel began the code: signal it once it has.
        self.interrupt_pending = False
        self.collector: OutputCollector | None = None
        self.done = asyncio.Event()

    def stop(self, why: str) -> None:
        if self.stop_note is None:
            self.stop_note = f"{why} after {time.monotonic() - self.started:.1f} s; the outputs up to then are shown"


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


class LocalKernel:
    """A kernel process on this machine, managed by jupyter_client.

    One owner for the kernel's life (issue 13): start, restart, replacement of a dead or stuck kernel
    and shutdown run one at a time under `_life`; each start has its own `_Instance`, and a start that
    is superseded is cancelled and cleans up only its own process. Executions run one at a time under
    `_exec_lock`, but restart and interrupt never wait for it: they reach the running call through
    `_run` and it answers at once with its partial outputs and a note.
    """

    def __init__(self, choice: KernelChoice, cwd: Path, *, start_timeout: float = KERNEL_START_TIMEOUT) -> None:
        self.choice = choice
        self.cwd = cwd
        self.start_timeout = start_timeout
        self._state = KernelState.NOT_STARTED
        self.error: str | None = None
        self._inst: _Instance | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._life = asyncio.Lock()
        self._exec_lock = asyncio.Lock()
        self._run: _Run | None = None
        #: The kernel died while no code ran: the next execution says so.
        self._died_idle = False
        #: interrupt_kernel was called while an execution waited for the kernel to start.
        self._interrupt_next = False

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
        km = AsyncKernelManager(kernel_name=self.choice.name)
        if self.choice.spec is not None:
            km.kernel_spec_manager = _OneSpecManager(self.choice.spec)
        inst = _Instance(km)
        self._inst = inst
        self.state = KernelState.STARTING
        self.error = None
        task = asyncio.get_running_loop().create_task(self._boot(inst))
        task.add_done_callback(_swallow)
        self._start_task = task
        return task

    async def _boot(self, inst: _Instance) -> None:
        started = time.monotonic()
        try:
            # The kernel's stdout goes to our stderr: in stdio mode our stdout carries only MCP.
            await inst.km.start_kernel(cwd=str(self.cwd), stdout=_stderr_fd(), stdin=subprocess.DEVNULL)
            inst.kc = inst.km.client()
            # No heartbeat thread: the manager's is_alive() (a process check) notices a dead kernel,
            # and a heartbeat thread racing the context's teardown on a quick shutdown raised EMFILE.
            # No stdin channel: executions run with allow_stdin=False.
            inst.kc.start_channels(hb=False, stdin=False)
            await inst.kc.wait_for_ready(timeout=self.start_timeout)
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
        async with self._life:
            run = self._run
            if run is not None:
                run.stop("stopped by restart_kernel")
                # The run notices within a poll interval; nothing may use the old client after this.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(run.done.wait(), RUN_STOP_WAIT)
            await self._discard(grace=RESTART_GRACE if run is not None else 0.0)
            self._begin_start()
        await self._wait_start()

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
            if run.collector is None or run.collector.execution_count is None:
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
                run = self._run
                if run is not None:
                    run.stop("stopped because the server is shutting down")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(run.done.wait(), RUN_STOP_WAIT)
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
        """Run `code` and return its outputs; never raises for code errors, timeouts or kernel death.

        `collector`: where outputs are gathered, for a caller that must save them even if this call is
        cancelled.
        """
        async with self._exec_lock:
            inst, note = await self._ready()
            run = _Run(time.monotonic())
            run.collector = collector = collector or OutputCollector()
            run.interrupted = run.interrupt_pending = self._interrupt_next
            self._interrupt_next = False
            self._run = run
            try:
                result = await self._execute(
                    inst, run, code, timeout, on_progress, progress_every, store_history, collector
                )
            finally:
                self._run = None
                run.done.set()
                if inst.stuck:
                    # It ignored an interrupt: replace it in the background, as one more life-cycle step.
                    with anyio.CancelScope(shield=True):
                        await self._replace_stuck(inst)
            if note:
                result.note = f"{note}. {result.note}" if result.note else note
            return result

    async def _replace_stuck(self, inst: _Instance) -> None:
        async with self._life:
            if self._inst is inst:
                logger.warning("kernel did not stop after an interrupt; restarting it")
                await self._discard()
                self._begin_start()

    async def _execute(
        self,
        inst: _Instance,
        run: _Run,
        code: str,
        timeout: float,
        on_progress: ProgressHook | None,
        progress_every: float,
        store_history: bool,
        collector: OutputCollector,
    ) -> ExecutionResult:
        kc = inst.kc
        started = run.started
        self.state = KernelState.BUSY
        # allow_stdin=False: input() raises in the cell instead of waiting forever for a reply.
        msg_id = kc.execute(code, store_history=store_history, allow_stdin=False)
        status, note = await drive_execution(
            collector,
            started=started,
            timeout=timeout,
            on_progress=on_progress,
            progress_every=progress_every,
            pump=lambda wait: self._pump(inst, run, collector, msg_id, wait),
            interrupt_and_drain=lambda: self._interrupt_and_drain(inst, run, collector, msg_id),
            death_note=self._death_note,
        )
        if run.stop_note is not None:
            status, note = "interrupted", run.stop_note
        elif status == "ok":
            status = await self._reply_status(inst, run, msg_id, collector)
        elif status == "dead" and self._inst is inst:
            self.state = KernelState.DEAD
        if run.interrupted and run.stop_note is None:
            note = "; ".join(filter(None, [note, "interrupted by interrupt_kernel"]))
        if self._inst is inst and self._state == KernelState.BUSY:
            self.state = KernelState.IDLE
        return ExecutionResult(collector.finish(), collector.execution_count, status, time.monotonic() - started, note)

    async def _pump(self, inst: _Instance, run: _Run, collector: OutputCollector, msg_id: str, wait: float) -> bool:
        """Feed iopub messages for `msg_id` to the collector for up to `wait` seconds.

        Returns False if the kernel died or the run must stop. Checks liveness whenever no message
        arrives in time, so a dead kernel is noticed within POLL_INTERVAL plus the time of `is_alive`.
        """
        if run.stop_note is not None or inst.closed:
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
        if run.interrupt_pending and collector.execution_count is not None and not collector.idle:
            run.interrupt_pending = False
            with contextlib.suppress(Exception):
                await inst.km.interrupt_kernel()
        return True

    async def _interrupt_and_drain(self, inst: _Instance, run: _Run, collector: OutputCollector, msg_id: str) -> bool:
        """Interrupt, then collect output until the kernel is idle; mark it stuck if it will not stop."""
        if inst.closed:
            return False
        with contextlib.suppress(Exception):
            await inst.km.interrupt_kernel()
        grace_end = time.monotonic() + INTERRUPT_GRACE
        while not collector.idle and time.monotonic() < grace_end:
            if not await self._pump(inst, run, collector, msg_id, POLL_INTERVAL):
                return False
        if collector.idle:
            # Consume the execute_reply so it is not mistaken for the next execution's.
            await self._reply_status(inst, run, msg_id, collector)
            return True
        inst.stuck = True
        return False

    async def _reply_status(self, inst: _Instance, run: _Run, msg_id: str, collector: OutputCollector) -> str:
        kc = inst.kc
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and run.stop_note is None and not inst.closed:
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
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                content = reply.get("content", {})
                if collector.execution_count is None and content.get("execution_count") is not None:
                    collector.execution_count = content["execution_count"]
                return "error" if content.get("status") == "error" else "ok"
        return "error" if any(o.get("output_type") == "error" for o in collector.outputs) else "ok"

    def _death_note(self) -> str:
        logger.warning("the kernel died while running code")
        return "the kernel died while running this code (it will be restarted on the next execution)"


def _stray_cancel(inst: _Instance) -> bool:
    """Whether a CancelledError came from zmq cancelling its poll on `inst`'s closed socket, not from us."""
    return inst.closed and not _cancelling()


def _cancelling() -> bool:
    """Whether the current task is being cancelled (always assumed so before Python 3.11)."""
    task = asyncio.current_task()
    counter = getattr(task, "cancelling", None)
    return counter is None or counter() > 0


def _stderr_fd() -> int:
    stream = sys.__stderr__
    return stream.fileno() if stream is not None else subprocess.DEVNULL


def _swallow(task: asyncio.Task[None]) -> None:
    # A failed background start is reported by the next call that needs the kernel.
    if not task.cancelled():
        task.exception()
