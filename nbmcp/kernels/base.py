"""What every kernel is: its states, the result of an execution, and the one execute path.

`Kernel` runs code through one state machine (`execute` and `drive_execution`): a timeout interrupts
the kernel and returns the partial outputs, a dead kernel is noticed while waiting (never a hang),
progress is reported while the code runs, and a cancelled call interrupts the code before it lets go.
A kind of kernel (`LocalKernel`, `RemoteKernel`) supplies only a `Run`: how the code is sent, how the
kernel's messages are received, how it is interrupted and how the answer is settled.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from nbformat import NotebookNode

from ..errors import KernelStartError, NbmcpError, UsageError
from .choice import KernelChoice
from .frontend import CommSender
from .outputs import OutputCollector

__all__ = [
    "DEATH_NOTE",
    "DEFAULT_TIMEOUT",
    "INTERRUPT_GRACE",
    "KERNEL_START_TIMEOUT",
    "POLL_INTERVAL",
    "ExecutionResult",
    "Kernel",
    "KernelState",
    "MissingKernel",
    "NoKernel",
    "ProgressHook",
    "Run",
    "drive_execution",
    "leave_failure_to_next_call",
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
#: The note of an execution whose kernel died under it.
DEATH_NOTE = "the kernel died while running this code (it will be restarted on the next execution)"


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
    DISCONNECTED = "disconnected"
    """A kernel on a Jupyter server whose websocket closed (the server, a proxy or the network dropped
    it); the next execution reconnects, to the same kernel if the server still has it."""
    FAILED = "failed"
    """It could not be started; the error says why."""


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


class Run(ABC):
    """One execution in flight, on one kind of kernel: what the shared state machine asks of it."""

    def __init__(self, collector: OutputCollector) -> None:
        self.started = time.monotonic()
        self.collector = collector

    @abstractmethod
    async def send(self, code: str, *, store_history: bool) -> None:
        """Send `code` to the kernel (stdin disallowed: input() raises in the cell instead of waiting)."""

    @abstractmethod
    async def pump(self, wait: float) -> bool:
        """Feed the collector the messages that arrive within `wait` seconds; False if the kernel died."""

    @abstractmethod
    async def interrupt_and_drain(self) -> bool:
        """Interrupt, collect output until the kernel is idle; False if it had to be restarted."""

    async def drain(self) -> bool:
        """After an interrupt: collect output until the kernel is idle, up to INTERRUPT_GRACE seconds.

        False if the kernel died meanwhile; else the caller sees from `collector.idle` whether it stopped.
        """
        grace_end = time.monotonic() + INTERRUPT_GRACE
        while not self.collector.idle and time.monotonic() < grace_end:
            if not await self.pump(POLL_INTERVAL):
                return False
        return True

    def comm_sender(self) -> CommSender | None:
        """How comm messages reach the kernel during this run (an Output widget's outputs); None: they do not."""
        return None

    @abstractmethod
    def death_note(self) -> str:
        """The note for an execution whose kernel died (and the log line that says so)."""

    @abstractmethod
    async def settle(self, status: str, note: str) -> tuple[str, str]:
        """The final status and note, from the kernel's reply; leaves the kernel idle if it still runs."""

    @abstractmethod
    async def end(self) -> None:
        """Let go of the kernel, whatever happened (runs even when the call is cancelled)."""


async def drive_execution(
    run: Run, *, timeout: float, on_progress: ProgressHook | None, progress_every: float
) -> tuple[str, str]:
    """Wait for one execution to finish; the state machine shared by the local and remote kernels.

    Returns the status (``ok`` until the kernel's reply says otherwise, ``timeout`` or ``dead``) and a
    note for the caller.
    """
    collector, started = run.collector, run.started
    deadline = started + timeout
    next_progress = started + progress_every
    try:
        while not collector.idle:
            now = time.monotonic()
            if now >= deadline:
                logger.info("execution timed out after %g s; interrupting the kernel", timeout)
                if await run.interrupt_and_drain():
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
            if not await run.pump(wait):
                return "dead", run.death_note()
    except BaseException:
        # MCP cancellation of the tool call (or shutdown): stop the code, then let go.
        with anyio.CancelScope(shield=True):
            await run.interrupt_and_drain()
        raise
    return "ok", ""


class Kernel(ABC):
    """What the session needs of a kernel: `LocalKernel` here, `RemoteKernel` on a Jupyter server.

    Executions run one at a time, through `execute`; a kind of kernel supplies `begin_run` (wait for the
    kernel, then a `Run` for the code) and its life cycle.
    """

    state: KernelState
    error: str | None
    #: The kernel's `language_info` (its kernel_info reply) once it has started; None if unknown.
    language_info: dict[str, Any] | None = None

    def __init__(self) -> None:
        self._exec_lock = asyncio.Lock()

    @property
    @abstractmethod
    def choice(self) -> KernelChoice:
        """Which kernel runs the code, and why that one."""

    @abstractmethod
    def start_background(self) -> None:
        """Begin starting the kernel without waiting for it (called when the notebook is opened)."""

    @abstractmethod
    async def ensure_started(self) -> None:
        """Wait until the kernel is ready, starting (or replacing) it if needed."""

    @abstractmethod
    async def begin_run(self, collector: OutputCollector) -> Run:
        """Wait for the kernel to be ready for code, then the `Run` that will carry one execution."""

    @abstractmethod
    async def interrupt(self) -> None:
        """Interrupt whatever the kernel is running."""

    @abstractmethod
    async def restart(self) -> None:
        """Restart the kernel (all variables are lost) and wait until it is ready."""

    @abstractmethod
    async def shutdown(self) -> None:
        """Let go of the kernel (a running call answers with what it has)."""

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
            run = await self.begin_run(collector or OutputCollector())
            run.collector.send_comm = run.comm_sender()
            try:
                self.state = KernelState.BUSY
                await run.send(code, store_history=store_history)
                status, note = await drive_execution(
                    run, timeout=timeout, on_progress=on_progress, progress_every=progress_every
                )
                status, note = await run.settle(status, note)
                outputs, count = run.collector.finish(), run.collector.execution_count
                return ExecutionResult(outputs, count, status, time.monotonic() - run.started, note)
            finally:
                await run.end()


class NoKernel(Kernel):
    """The kernel of a --read-only server: none. Nothing runs, not even an interpreter found in the folder."""

    def __init__(self, reason: str = "--read-only: no code runs") -> None:
        super().__init__()
        self._choice = KernelChoice("none", "", reason)
        self.state = KernelState.NOT_STARTED
        self.error: str | None = None

    @property
    def choice(self) -> KernelChoice:
        return self._choice

    def _refuse(self) -> NbmcpError:
        return UsageError(
            f"this server runs no kernel ({self.choice.reason}); start it without --read-only to run code"
        )

    def start_background(self) -> None:
        """Nothing to start."""

    async def ensure_started(self) -> None:
        raise self._refuse()

    async def begin_run(self, collector: OutputCollector) -> Run:
        raise self._refuse()

    async def interrupt(self) -> None:
        raise self._refuse()

    async def restart(self) -> None:
        raise self._refuse()

    async def shutdown(self) -> None:
        """Nothing to stop."""


class MissingKernel(NoKernel):
    """The kernel the notebook names is not installed: the server serves the notebook, and every
    execution answers with the error (which names the missing kernel and the installed ones)."""

    def __init__(self, name: str, error: str) -> None:
        super().__init__("notebook metadata (not installed)")
        self._choice = KernelChoice(name, "", "notebook metadata (not installed)")
        self.state = KernelState.FAILED
        self.error = self.message = error

    def _refuse(self) -> NbmcpError:
        return KernelStartError(self.message)


def leave_failure_to_next_call(task: asyncio.Task[None]) -> None:
    """Done-callback of a background start: its failure is reported by the next call that needs the kernel."""
    if not task.cancelled():
        task.exception()
