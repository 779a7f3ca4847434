"""Checks of the kernel nbmcp would run: which one, whether its interpreter has ipykernel, a real start."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from nbformat import NotebookNode

from ...config import Settings
from ...errors import NbmcpError, NoSuchKernelError
from ...kernels.base import ExecutionResult, Kernel
from ...kernels.choice import (
    KernelChoice,
    choose_kernel,
    install_command,
    ipykernel_import_error,
    ipykernel_python,
    runs_on_own_python,
)
from ...kernels.local import LocalKernel
from .report import Check, Verdict

__all__ = ["IMPORT_CHECK_TIMEOUT", "KERNEL_CHECK_TIMEOUT", "check_local_kernel", "kernel_choice", "run_kernel_check"]

#: Seconds `1+1` may take on a started kernel before the check fails (a cold start is timed apart).
KERNEL_CHECK_TIMEOUT = 60.0
#: Seconds the interpreter gets to answer `import ipykernel`.
IMPORT_CHECK_TIMEOUT = 60.0


def kernel_choice(
    settings: Settings, notebook_kernel: str | None, notebook_dir: Path, notebook_language: str | None = None
) -> KernelChoice:
    """The local kernel nbmcp would run for these settings (the one place doctor asks `choose_kernel`).

    A non-Python notebook whose kernelspec is not installed raises NoSuchKernelError, as the server
    would answer its executions.
    """
    return choose_kernel(
        kernel_name=settings.kernel,
        python=settings.python,
        notebook_kernel=notebook_kernel,
        notebook_dir=notebook_dir,
        notebook_language=notebook_language,
    )


def _check_ipykernel(python: str) -> Check:
    name = "ipykernel"
    try:
        error = ipykernel_import_error(python, timeout=IMPORT_CHECK_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name, Verdict.FAIL, f"cannot run {python}: {exc}", "point --python at a working interpreter")
    if error is not None:
        return Check(
            name,
            Verdict.FAIL,
            f"{python} cannot import ipykernel ({error}), so no kernel can start on it",
            f"install it into that environment: `{install_command(python)}`; "
            "or choose another interpreter with --python or --kernel",
        )
    return Check(name, Verdict.PASS, f"{python} has ipykernel")


def run_kernel_check(kernel: Kernel, where: str) -> Check:
    """Start `kernel`, run 1+1 on it, shut it down; the timings go into the line."""

    async def go() -> tuple[float, ExecutionResult]:
        started = time.monotonic()
        try:
            await kernel.ensure_started()
            start_time = time.monotonic() - started
            result = await kernel.execute("1+1", timeout=KERNEL_CHECK_TIMEOUT, store_history=False)
            return start_time, result
        finally:
            await kernel.shutdown()

    name = "kernel run"
    try:
        start_time, result = asyncio.run(go())
    except NbmcpError as exc:
        return Check(name, Verdict.FAIL, str(exc), _start_fix(where))
    except Exception as exc:  # any failure to start is what this check reports
        return Check(name, Verdict.FAIL, f"could not start the kernel: {type(exc).__name__}: {exc}", _start_fix(where))
    answer = next(
        (o.get("data", {}).get("text/plain") for o in result.outputs if o.get("output_type") == "execute_result"),
        None,
    )
    if result.status != "ok" or answer != "2":
        return Check(
            name,
            Verdict.FAIL,
            f"the kernel started in {start_time:.2f} s but 1+1 gave status {result.status!r}, "
            f"answer {answer!r} {result.note}".strip(),
            _start_fix(where),
        )
    return Check(
        name,
        Verdict.PASS,
        f"started in {start_time:.2f} s; ran 1+1 = 2 in {result.elapsed:.2f} s",
        seconds=start_time + result.elapsed,
    )


def _start_fix(where: str) -> str:
    if where == "remote":
        return "check the Jupyter server's log (it starts the kernel); `jupyter kernelspec list` on that machine"
    if where == "gateway":
        return "check the gateway's log (it starts the kernel); choose one of its kernelspecs with --kernel NAME"
    return (
        "run the kernel by hand to see its error (`jupyter kernelspec list`, or `PYTHON -m ipykernel_launcher`); "
        "choose another with --kernel NAME or --python PATH"
    )


def check_local_kernel(settings: Settings, nb: NotebookNode | None, notebook_dir: Path) -> list[Check]:
    """The kernel nbmcp would choose, its interpreter's ipykernel, and a real start of it running 1+1."""
    spec = nb.metadata.get("kernelspec", {}) if nb is not None else {}
    language = spec.get("language") or (nb.metadata.get("language_info", {}).get("name") if nb is not None else None)
    try:
        choice = kernel_choice(settings, spec.get("name"), notebook_dir, language)
    except NbmcpError as exc:
        if settings.python and "has no ipykernel" in str(exc):
            # --python names an interpreter without ipykernel: the start-up check's message has the fix.
            given = str(Path(settings.python).expanduser())
            return [
                Check("kernel", Verdict.FAIL, f"--python {settings.python}", "see the ipykernel line"),
                Check(
                    "ipykernel",
                    Verdict.FAIL,
                    f"{given} cannot import ipykernel",
                    f"install it into that environment: `{install_command(given)}`",
                ),
                Check("kernel run", Verdict.SKIP, "not tried: the interpreter has no ipykernel"),
            ]
        fix = "fix --kernel/--python (see `jupyter kernelspec list`)"
        if isinstance(exc, NoSuchKernelError):
            fix = "install that kernel, or choose an installed one with --kernel NAME"
        return [Check("kernel", Verdict.FAIL, str(exc), fix)]
    line = Check("kernel", Verdict.PASS, choice.describe())
    if runs_on_own_python(choice):
        line.verdict = Verdict.WARN
        line.detail += (
            ": the Python nbmcp itself runs on, so code sees only the packages installed there, not your project's"
        )
        line.fix = (
            "to use your project's packages: a .venv beside the notebook with ipykernel, "
            "--python /path/to/project/.venv/bin/python, or --kernel NAME"
        )
        if choice.passed_over:
            line.fix = f"install ipykernel into the project's environment: `{install_command(choice.passed_over)}`"
    checks = [line]
    python = ipykernel_python(choice)
    if python is not None:
        ipykernel = _check_ipykernel(python)
        checks.append(ipykernel)
        if ipykernel.verdict is Verdict.FAIL:
            checks.append(Check("kernel run", Verdict.SKIP, "not tried: the interpreter has no ipykernel"))
            return checks
    # A throwaway kernel: its 1+1 stays out of the user's IPython history.
    checks.append(run_kernel_check(LocalKernel(choice, notebook_dir, history_in_memory=True), "local"))
    return checks
