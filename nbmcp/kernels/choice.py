"""Which kernel runs a notebook's code, and why: kernelspecs, interpreters and project environments.

`choose_kernel` picks one (`--kernel`, `--python`, the notebook's metadata, the project's `.venv`, an
activated environment, else nbmcp's own Python) and says why in words a user reads; `check_kernel_options`
checks the flags before anything is served. Interpreters are looked at before they are run, and run only
to ask whether they have ipykernel.
"""

from __future__ import annotations

import glob
import importlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NoSuchKernelError, UsageError

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

# jupyter_client (zmq, tornado, traitlets) is imported where a kernel is chosen, on a worker thread when
# the notebook is opened: not at start-up, where a client waits for `initialize` (issue 14).

__all__ = [
    "ACTIVATED_ENV_VARS",
    "GENERIC_KERNELS",
    "OWN_ENV_IS_TEMPORARY",
    "PROBE_TIMEOUT",
    "PROJECT_MARKERS",
    "VENV_NAMES",
    "KernelChoice",
    "check_kernel_options",
    "choose_kernel",
    "find_project_env",
    "has_ipykernel",
    "install_command",
    "ipykernel_import_error",
    "ipykernel_python",
    "load_jupyter_client",
    "made_by_uv",
    "no_ipykernel_message",
    "runs_on_own_python",
]

logger = logging.getLogger(__name__)


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
    warning: str = ""
    """What the first execution's answer says first: set when the project's environment was passed over
    (it has no ipykernel), naming the Python that runs the code instead and the command that fixes it."""
    passed_over: str | None = None
    """The project's interpreter passed over for lack of ipykernel: once it has it, restart_kernel uses it."""

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

_jupyter_client_import = threading.Lock()


def load_jupyter_client(*also: str) -> None:
    """Import jupyter_client whole, and then the packages `also` (ones that import it, as nbconvert), one
    thread at a time: call it before importing any module of theirs.

    They are imported on first use, and first uses overlap: a kernel is chosen on a worker thread while
    the event loop starts another kernel or a live view loads its renderer. Two threads importing modules
    of one package at once can deadlock on CPython's module locks, and Python breaks the deadlock by
    handing one of them an unfinished module: a tool then failed with "cannot import name
    'AsyncKernelManager' from partially initialized module 'jupyter_client.manager'". Once they are
    imported, this costs a lock and a dict lookup each.
    """
    with _jupyter_client_import:
        import jupyter_client  # noqa: F401

        for name in also:
            importlib.import_module(name)


def _python_spec(python: str, display: str) -> KernelSpec:
    load_jupyter_client()
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


def made_by_uv(python: str) -> bool:
    """Whether uv made the environment of `python` (uv writes its version into pyvenv.cfg; pip has none)."""
    path = Path(python)
    for folder in (path.parent.parent, path.parent):
        try:
            config = (folder / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        return any(line.split("=", 1)[0].strip() == "uv" for line in config.splitlines())
    return False


def _has_pip(python: Path) -> bool:
    env = python.parent.parent if python.parent.name in ("bin", "Scripts") else python.parent
    return any((python.parent / name).exists() for name in ("pip", "pip3", "pip.exe")) or bool(
        glob.glob(str(env / "lib" / "python*" / "site-packages" / "pip"))
    )


def install_command(python: str, package: str = "ipykernel") -> str:
    """The shell command that installs `package` into the environment of `python`.

    Environments made by uv have no pip: for those (and any other without pip) the command is uv's,
    which needs uv itself; the others get `python -m pip`.
    """
    if not made_by_uv(python) and _has_pip(Path(python)):
        return f"{python} -m pip install {package}"
    return f"uv pip install --python {python} {package}"


def _install_hint(python: str) -> str:
    # IPython's %pip runs `sys.executable -m pip`, the kernel's own interpreter: it lands in the kernel's
    # environment whenever that has pip. uv-made environments have none; uv installs into them from outside.
    if not made_by_uv(python) and _has_pip(Path(python)):
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
        load_jupyter_client()
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
        inside = _env_python(path) if path.is_dir() else None
        if inside is not None:
            # `--python .venv` names the environment: say which file inside it is meant.
            suggestion = os.path.join(python, str(inside.relative_to(path)))
            raise UsageError(
                f"--python {python} is a folder (an environment); give its interpreter: --python {suggestion}"
            )
        if path.is_dir() or not os.access(path, os.X_OK):
            raise UsageError(f"--python {python}: not an executable program; give the path of a Python interpreter")
        if probe and not has_ipykernel(str(path)):
            raise UsageError(no_ipykernel_message(str(path), "--python"))
    return None


def _python_choice(python: Path, reason: str, display: str) -> KernelChoice:
    return KernelChoice(
        "python", str(python), reason, _python_spec(str(python), display), install_hint=_install_hint(str(python))
    )


#: Said wherever a package hint could lead into nbmcp's own environment (issue 24: an assistant installed
#: there, lost at the next reinstall, while the project's .venv stayed unused).
OWN_ENV_IS_TEMPORARY = (
    "installing into nbmcp's own environment is temporary: it is lost when nbmcp is reinstalled or upgraded"
)


def _own_python(reason: str, passed_over: str | None = None) -> KernelChoice:
    # The interpreter nbmcp runs on always has ipykernel: it is one of our dependencies.
    if passed_over is not None:
        # The project's environment is where packages belong: the hint leads there, never into nbmcp's.
        fix = install_command(passed_over)
        hint = (
            f"the kernel runs on nbmcp's own Python, not the project's {passed_over}, which has no ipykernel: "
            f"install it there ({fix}), then restart_kernel; install packages there too, in a terminal: "
            f"{install_command(passed_over, 'NAME')}; {OWN_ENV_IS_TEMPORARY}"
        )
        warning = (
            f"the code runs in nbmcp's own Python ({sys.executable}), NOT in the project's environment: "
            f"{passed_over} has no ipykernel, which a kernel needs. Fix: run `{fix}`, then restart_kernel"
        )
    else:
        hint = f"the kernel runs on nbmcp's own Python; {OWN_ENV_IS_TEMPORARY}. {_install_hint(sys.executable)}"
        warning = ""
    return KernelChoice(
        "python3",
        sys.executable,
        reason,
        _python_spec(sys.executable, "Python 3 (nbmcp)"),
        install_hint=hint,
        warning=warning,
        passed_over=passed_over,
    )


def choose_kernel(
    *,
    kernel_name: str | None = None,
    python: str | None = None,
    notebook_kernel: str | None = None,
    notebook_dir: Path | None = None,
    spec_manager: KernelSpecManager | None = None,
    environ: Mapping[str, str] | None = None,
    notebook_language: str | None = None,
    strict: bool = False,
) -> KernelChoice:
    """Pick the kernel that runs the notebook's code.

    In order: `--kernel`; `--python`; a specific kernelspec named in the notebook's metadata, when
    installed; for the generic ``python3`` (or none), the project's environment (`find_project_env`
    from the notebook's folder), then an activated VIRTUAL_ENV or CONDA_PREFIX; else nbmcp's own
    Python. An environment without ipykernel is passed over, and the reason says so with the fix.
    Runs the candidate interpreter once to check for ipykernel: never call this under --read-only.

    A specific kernelspec that is not installed raises NoSuchKernelError when `strict` (a headless
    run, as papermill, nbclient and nbmake do) or when `notebook_language` is not Python (an R cell
    that happens to be valid Python must not pass); a Python notebook's falls through to the project's
    environment, which runs its code the same (a `conda-env-NAME-py` kernelspec from another machine).
    """
    load_jupyter_client()
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
            if strict or not (notebook_language or "python").lower().startswith("python"):
                raise NoSuchKernelError(notebook_kernel, sorted(ksm.find_kernel_specs())) from None
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
    without_ipykernel: str | None = None
    for env, why in candidates:
        if env.resolve() == Path(sys.prefix).resolve():
            # nbmcp's own environment, activated (tox, a developer's venv): it has ipykernel.
            own = f"{why} (nbmcp's own environment)"
            if passed_over:
                own += ", NOT the project's: " + "; ".join(passed_over)
            return _own_python(own, without_ipykernel)
        env_python = _env_python(env)
        if env_python is None:
            passed_over.append(f"{why} has no Python interpreter")
            continue
        if not has_ipykernel(str(env_python)):
            passed_over.append(f"{why} has no ipykernel (install it with: {install_command(str(env_python))})")
            without_ipykernel = without_ipykernel or str(env_python)
            continue
        return _python_choice(env_python, why, f"Python ({env})")
    if passed_over:
        return _own_python(
            "nbmcp's own Python, NOT the project's: " + "; ".join(passed_over) + " (or pass --python PATH)",
            without_ipykernel,
        )
    return _own_python(
        "nbmcp's own Python: no .venv or venv found from the notebook's folder up to the project root, and no "
        "activated environment (pass --python PATH to choose one)"
    )


def ipykernel_python(choice: KernelChoice) -> str | None:
    """The interpreter that must import ipykernel for this kernel to start, if it is an ipykernel."""
    argv = list(choice.spec.argv) if choice.spec is not None else []
    if any(a.startswith("ipykernel") for a in argv[1:4]):
        return choice.argv0
    return None


def runs_on_own_python(choice: KernelChoice) -> bool:
    """True when the kernel runs on nbmcp's own interpreter without the user asking for it.

    Also through the generic ``python3`` kernelspec named in the notebook's metadata, which resolves to
    the interpreter nbmcp runs on. Paths are compared unresolved: every virtual environment's python is
    a symlink to the same base interpreter.
    """
    if choice.reason in ("--python", "--kernel"):
        return False
    return choice.reason == "default" or os.path.abspath(choice.argv0) == os.path.abspath(sys.executable)


def ipykernel_import_error(python: str, *, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why `python` cannot import ipykernel (the last line of its error), or None when it can.

    Unlike `has_ipykernel`, this really imports it, so a broken install shows too. Raises OSError or
    subprocess.TimeoutExpired when the interpreter cannot be run at all.
    """
    proc = subprocess.run(
        [python, "-c", "import ipykernel"],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["import failed"])[-1]
