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
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from jupyter_core.paths import jupyter_runtime_dir
from nbformat import NotebookNode

from ..errors import KernelError, KernelStartError, UsageError
from .outputs import OutputCollector

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

# jupyter_client (zmq, tornado, traitlets) is imported where a kernel is chosen or started, on a worker
# thread when the notebook is opened: not at start-up, where a client waits for `initialize` (issue 14).

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
    "NoKernel",
    "check_kernel_options",
    "choose_kernel",
    "drive_execution",
    "find_project_env",
    "has_ipykernel",
    "install_command",
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
    """The kernelspec name, or ``python`` for an interpreter given by path or found in the project."""
    argv0: str
    """The program the kernel runs (an interpreter path, usually)."""
    reason: str
    """How it was chosen, in words a user reads: ``--kernel``, ``--python``, ``notebook metadata``, the
    project's environment and where it was found, ``VIRTUAL_ENV``, or nbmcp's own Python and why."""
    spec: KernelSpec | None = field(default=None, compare=False, repr=False)
    install_hint: str = ""
    """How code in this kernel installs a package into the kernel's own environment (empty: unknown)."""

    def describe(self) -> str:
        return f"{self.name} ({self.argv0}; chosen by {self.reason})"


#: Folders that mark a project's root: the search for its environment stops there.
PROJECT_MARKERS = (".git", "pyproject.toml", "setup.cfg")
#: Names of a project's own virtual environment, looked for in each folder from the notebook's upwards.
VENV_NAMES = (".venv", "venv")
#: Kernel names that say "some Python" rather than a particular one: nbmcp writes ``python3`` into the
#: notebooks it creates, and Jupyter's own default has that name, so it never outranks the project's env.
GENERIC_KERNELS = frozenset({"python3", "python"})
#: Seconds the check "does this interpreter have ipykernel" may take (a cold interpreter on a busy disk).
PROBE_TIMEOUT = 30.0
#: Environment variables naming an activated environment, in the order they are consulted.
ACTIVATED_ENV_VARS = ("VIRTUAL_ENV", "CONDA_PREFIX")


def _python_spec(python: str, display: str) -> KernelSpec:
    from jupyter_client.kernelspec import KernelSpec

    return KernelSpec(
        argv=[python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name=display,
        language="python",
        env={
            # ipykernel's fd-level capture sends even C-level prints through iopub, not our stdout.
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        },
    )


def _argv0(spec: KernelSpec) -> str:
    argv0 = spec.argv[0] if spec.argv else "?"
    # jupyter_client runs a spec whose program is plain "python" with its own interpreter.
    if argv0 in {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}:
        return sys.executable
    return argv0


def _env_python(env: Path) -> Path | None:
    """The interpreter of the environment at `env`, if there is one (looked at, never run)."""
    for rel in ("bin/python", "Scripts/python.exe", "python.exe"):
        python = env / rel
        if python.is_file():
            return python
    return None


def find_project_env(folder: Path) -> Path | None:
    """The project's virtual environment: `.venv` or `venv` in `folder` or a parent, up to the project root.

    The project root is the first folder holding `.git`, `pyproject.toml` or `setup.cfg`; the search does
    not go above it (a `.venv` in the home folder is not this project's). Nothing is executed.
    """
    for directory in (folder, *folder.parents):
        for name in VENV_NAMES:
            env = directory / name
            if _env_python(env) is not None:
                return env
        if any((directory / marker).exists() for marker in PROJECT_MARKERS):
            return None
    return None


#: Interpreters known to have ipykernel. Only yes is remembered: a user who installs it need not restart us.
_WITH_IPYKERNEL: set[str] = set()


def has_ipykernel(python: str) -> bool:
    """Whether `python` can run ipykernel: runs the interpreter once (never under --read-only).

    `find_spec` looks the module up without importing it, so this costs one interpreter start.
    """
    if python in _WITH_IPYKERNEL:
        return True
    env = Path(python).parent.parent
    # Most environments hold it in their own site-packages: found without running anything.
    patterns = ("lib/python*/site-packages/ipykernel_launcher.py", "Lib/site-packages/ipykernel_launcher.py")
    if any(glob.glob(str(env / pattern)) for pattern in patterns):
        _WITH_IPYKERNEL.add(python)
        return True
    # Else ask the interpreter (system site-packages, .pth files, conda layouts).
    try:
        done = subprocess.run(
            [
                python,
                "-c",
                "import importlib.util, sys; sys.exit(importlib.util.find_spec('ipykernel_launcher') is None)",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.info("could not run %s to look for ipykernel: %s", python, exc)
        return False
    if done.returncode == 0:
        _WITH_IPYKERNEL.add(python)
    return done.returncode == 0


def _has_pip(python: Path) -> bool:
    env = python.parent.parent if python.parent.name in ("bin", "Scripts") else python.parent
    return any((python.parent / name).exists() for name in ("pip", "pip3", "pip.exe")) or bool(
        glob.glob(str(env / "lib" / "python*" / "site-packages" / "pip"))
    )


def install_command(python: str, package: str = "ipykernel") -> str:
    """The shell command that installs `package` into the environment of `python`.

    Environments made by uv have no pip: for those the command is uv's, which needs uv itself.
    """
    if _has_pip(Path(python)):
        return f"{python} -m pip install {package}"
    return f"uv pip install --python {python} {package}"


def _install_hint(python: str) -> str:
    # IPython's %pip runs `sys.executable -m pip`, the kernel's own interpreter: it lands in the kernel's
    # environment whenever that has pip. uv-made environments have none; uv installs into them from outside.
    if _has_pip(Path(python)):
        return "%pip install NAME (installs into the kernel's environment), then restart_kernel if it was imported"
    return (
        f"this environment has no pip: !uv pip install --python {python} NAME (needs uv on PATH), "
        f"or in a terminal: uv pip install --python {python} NAME; then restart_kernel if it was imported"
    )


def no_ipykernel_message(python: str, what: str) -> str:
    """Why `python` cannot run a kernel, with the command that fixes it."""
    return f"{what} {python} has no ipykernel, which a Jupyter kernel needs; install it with: {install_command(python)}"


def check_kernel_options(
    *,
    kernel_name: str | None = None,
    python: str | None = None,
    probe: bool = True,
    spec_manager: KernelSpecManager | None = None,
) -> KernelSpec | None:
    """Raise UsageError for an unknown `--kernel` or an unusable `--python` (checked before serving).

    `probe`: run the interpreter to check that it has ipykernel (off under --read-only, which runs nothing).
    Returns the kernelspec of `kernel_name`, if given.
    """
    if kernel_name:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        ksm = spec_manager or KernelSpecManager()
        try:
            return ksm.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            installed = ", ".join(sorted(ksm.find_kernel_specs())) or "none"
            raise UsageError(
                f"--kernel {kernel_name}: no kernel named {kernel_name!r} is installed (installed: {installed}); "
                "see `jupyter kernelspec list`, or use --python PATH"
            ) from None
    if python:
        path = Path(python).expanduser()
        if not path.exists():
            raise UsageError(f"--python {python}: no such file; give the path of a Python interpreter")
        if path.is_dir() or not os.access(path, os.X_OK):
            raise UsageError(f"--python {python}: not an executable program; give the path of a Python interpreter")
        if probe and not has_ipykernel(str(path)):
            raise UsageError(no_ipykernel_message(str(path), "--python"))
    return None


def _python_choice(python: Path, reason: str, display: str) -> KernelChoice:
    return KernelChoice(
        "python", str(python), reason, _python_spec(str(python), display), install_hint=_install_hint(str(python))
    )


def _own_python(reason: str) -> KernelChoice:
    # The interpreter nbmcp runs on always has ipykernel: it is one of our dependencies.
    return KernelChoice(
        "python3",
        sys.executable,
        reason,
        _python_spec(sys.executable, "Python 3 (nbmcp)"),
        install_hint=_install_hint(sys.executable),
    )


def choose_kernel(
    *,
    kernel_name: str | None = None,
    python: str | None = None,
    notebook_kernel: str | None = None,
    notebook_dir: Path | None = None,
    spec_manager: KernelSpecManager | None = None,
    environ: Mapping[str, str] | None = None,
) -> KernelChoice:
    """Pick the kernel that runs the notebook's code.

    In order: `--kernel`; `--python`; a specific kernelspec named in the notebook's metadata, when
    installed; for the generic ``python3`` (or none), the project's environment (`find_project_env`
    from the notebook's folder), then an activated VIRTUAL_ENV or CONDA_PREFIX; else nbmcp's own
    Python. An environment without ipykernel is passed over, and the reason says so with the fix.
    Runs the candidate interpreter once to check for ipykernel: never call this under --read-only.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    environ = os.environ if environ is None else environ
    ksm = spec_manager or KernelSpecManager()
    if kernel_name:
        spec = check_kernel_options(kernel_name=kernel_name, spec_manager=ksm)
        assert spec is not None
        return KernelChoice(kernel_name, _argv0(spec), "--kernel", spec)
    if python:
        check_kernel_options(python=python)
        return _python_choice(Path(python).expanduser(), "--python", f"Python ({python})")
    if notebook_kernel and notebook_kernel not in GENERIC_KERNELS:
        try:
            spec = ksm.get_kernel_spec(notebook_kernel)
            return KernelChoice(notebook_kernel, _argv0(spec), "notebook metadata", spec)
        except NoSuchKernel:
            logger.info("the notebook asks for kernel %r, which is not installed here", notebook_kernel)
    passed_over: list[str] = []
    candidates: list[tuple[Path, str]] = []
    if notebook_dir is not None:
        env = find_project_env(notebook_dir)
        if env is not None:
            candidates.append((env, f"the project's environment {env}"))
    for var in ACTIVATED_ENV_VARS:
        if environ.get(var):
            candidates.append((Path(environ[var]), f"the activated environment {var}={environ[var]}"))
    for env, why in candidates:
        if env.resolve() == Path(sys.prefix).resolve():
            # nbmcp's own environment, activated (tox, a developer's venv): it has ipykernel.
            return _own_python(f"{why} (nbmcp's own environment)")
        env_python = _env_python(env)
        if env_python is None:
            passed_over.append(f"{why} has no Python interpreter")
            continue
        if not has_ipykernel(str(env_python)):
            passed_over.append(f"{why} has no ipykernel (install it with: {install_command(str(env_python))})")
            continue
        return _python_choice(env_python, why, f"Python ({env})")
    if passed_over:
        return _own_python(
            "nbmcp's own Python, NOT the project's: " + "; ".join(passed_over) + " (or pass --python PATH)"
        )
    return _own_python(
        "nbmcp's own Python: no .venv or venv found from the notebook's folder up to the project root, and no "
        "activated environment (pass --python PATH to choose one)"
    )


class NoKernel:
    """The kernel of a --read-only server: none. Nothing runs, not even an interpreter found in the folder."""

    def __init__(self, reason: str = "--read-only: no code runs") -> None:
        self.choice = KernelChoice("none", "", reason)
        self.state = KernelState.NOT_STARTED
        self.error: str | None = None

    def _refuse(self) -> UsageError:
        return UsageError(
            f"this server runs no kernel ({self.choice.reason}); start it without --read-only to run code"
        )

    def start_background(self) -> None:
        """Nothing to start."""

    async def ensure_started(self) -> None:
        raise self._refuse()

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
        raise self._refuse()

    async def interrupt(self) -> None:
        raise self._refuse()

    async def restart(self) -> None:
        raise self._refuse()

    async def shutdown(self) -> None:
        """Nothing to stop."""


def _one_spec_manager(spec: KernelSpec) -> KernelSpecManager:
    """A spec manager that hands AsyncKernelManager the spec we already chose, whatever name it asks for."""
    from jupyter_client.kernelspec import KernelSpecManager

    class _OneSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return spec

    return _OneSpecManager()


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
        from jupyter_client.manager import AsyncKernelManager

        spec = self.choice.spec
        km = AsyncKernelManager(kernel_name=self.choice.name)
        if spec is not None:
            km.kernel_spec_manager = _one_spec_manager(spec)
        if os.name == "posix" and spec is not None and any("ipykernel" in arg for arg in spec.argv):
            # Unix sockets, private to this user, instead of loopback TCP: ipykernel 7 warns at every TCP start
            # that it runs unencrypted. The sockets live in Jupyter's runtime folder (an absolute path: the
            # kernel runs in the notebook's folder), and cleanup_resources removes them. Only for ipykernel:
            # other kernels (IRkernel, say) do not all understand the ipc transport.
            km.transport = "ipc"
            km.ip = _ipc_prefix()
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


def _ipc_prefix() -> str:
    """A fresh absolute prefix for a kernel's Unix sockets, in Jupyter's runtime folder (private to the user)."""
    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, exist_ok=True)
    return os.path.join(runtime, f"nbmcp-{uuid.uuid4().hex[:12]}-ipc")


def _stderr_fd() -> int:
    stream = sys.__stderr__
    return stream.fileno() if stream is not None else subprocess.DEVNULL


def _swallow(task: asyncio.Task[None]) -> None:
    # A failed background start is reported by the next call that needs the kernel.
    if not task.cancelled():
        task.exception()
