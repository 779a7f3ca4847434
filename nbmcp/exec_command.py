"""`nbmcp exec PATH`: run every code cell of a notebook headless (CI), saving the outputs in the file.

The run is `NotebookSession.run_all` on a fresh kernel, so the outputs written are the ones the MCP
tools write, and the ones nbclient writes for the same notebook (timing metadata aside). Progress goes
to stderr; stdout stays empty, so a CI log shows only what matters.
"""

from __future__ import annotations

import argparse
import enum
import sys
import time
from pathlib import Path

import anyio

from .cli import add_kernel_options
from .config import LOG_LEVELS, _default_timeout
from .errors import KernelError, NbmcpError
from .session import CellRef, Execution, NotebookSession, RunAll

__all__ = ["HEARTBEAT_INTERVAL", "ExitCode", "exec_cli"]

#: Seconds between "still running" lines on stderr while one cell runs (CI logs show no hang).
HEARTBEAT_INTERVAL = 10.0


class ExitCode(enum.IntEnum):
    """What `nbmcp exec` exits with."""

    OK = 0
    """Every selected cell ran; with --allow-errors, cells that raised count as ran."""
    CELL_ERROR = 1
    """A cell raised an exception: the run stopped there; its traceback is on stderr and in the file."""
    USAGE = 2
    """Bad arguments, or the notebook is missing or unreadable; nothing was run."""
    TIMEOUT = 3
    """A cell ran longer than --timeout: the kernel was interrupted and the run stopped."""
    KERNEL = 4
    """The kernel could not be started, or it died while running a cell."""
    INTERRUPTED = 130
    """Stopped by Ctrl+C (SIGINT)."""


DESCRIPTION = """\
Run every code cell of a notebook in order on a fresh kernel, the way `jupyter nbconvert --execute`
or nbclient does, and save the outputs into the file (cell by cell, as each finishes). Progress
(cell k of n, elapsed time) goes to stderr. Meant for CI: check that a notebook still runs, or fill in
a report notebook's outputs.

Like nbclient, it leaves markdown, raw and blank code cells alone, skips code cells tagged
`skip-execution`, and lets a cell tagged `raises-exception` raise without stopping the run.
"""

EPILOG = f"""\
exit codes:
  {ExitCode.OK:<3}  every cell ran (with --allow-errors, errors are saved in the cells' outputs)
  {ExitCode.CELL_ERROR:<3}  a cell raised an exception: stderr names the cell (index and id) and shows
       its traceback; the run stopped there (outputs up to that cell are saved)
  {ExitCode.USAGE:<3}  bad arguments (an unknown --kernel, say), or the notebook is missing or invalid
  {ExitCode.TIMEOUT:<3}  a cell ran longer than --timeout (even with --allow-errors)
  {ExitCode.KERNEL:<3}  the kernel could not start or died (even with --allow-errors)
  {ExitCode.INTERRUPTED:<3}  interrupted with Ctrl+C

examples:
  nbmcp exec report.ipynb
  nbmcp exec report.ipynb --timeout 600 --kernel python3
  nbmcp exec tutorial.ipynb --allow-errors   a notebook that shows errors on purpose
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nbmcp exec",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", metavar="PATH", help="the notebook (.ipynb) to run; it must exist")
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=_default_timeout(),
        help="time limit of each cell (default: %(default)g, or NBMCP_TIMEOUT)",
    )
    p.add_argument(
        "--allow-errors",
        action="store_true",
        help="go on after a cell raises an exception (its traceback is saved in its outputs) and exit 0",
    )
    add_kernel_options(p)
    p.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=str.upper,
        choices=LOG_LEVELS,
        default="WARNING",
        help=f"nbmcp's own log lines on stderr: {', '.join(LOG_LEVELS)} (default: %(default)s)",
    )
    return p


def _say(message: str) -> None:
    print(f"nbmcp exec: {message}", file=sys.stderr, flush=True)


def _cell(execution: Execution) -> str:
    ref = execution.cell
    return f"cell {ref.index} (id {ref.id})" if ref.id else f"cell {ref.index}"


class _Progress:
    """The stderr lines of one run: one per cell, plus a heartbeat while a cell runs long."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.current = ""
        self.next_heartbeat = 0.0

    async def before(self, k: int, n: int, ref: CellRef) -> None:
        self.current = f"[{k}/{n}] cell {ref.index}" + (f" (id {ref.id})" if ref.id else "")
        self.next_heartbeat = HEARTBEAT_INTERVAL

    async def during(self, elapsed: float, last_line: str) -> None:
        if elapsed >= self.next_heartbeat:
            self.next_heartbeat = elapsed + HEARTBEAT_INTERVAL
            line = f"; latest output: {last_line[:100]}" if last_line else ""
            _say(f"{self.current} still running after {elapsed:.0f} s{line}")

    async def after(self, k: int, n: int, execution: Execution) -> None:
        res = execution.result
        status = {"ok": "ok", "error": "raised an exception"}.get(res.status, res.status.upper())
        count = f", execution_count {res.execution_count}" if res.execution_count is not None else ""
        total = time.monotonic() - self.started
        _say(f"{self.current} {status} in {res.elapsed:.2f} s{count} (elapsed {total:.1f} s)")


def _report(path: Path, run: RunAll) -> ExitCode:
    for note in run.notes:
        _say(f"note: {note}")
    failed = run.failed
    if failed is None:
        raised = [_cell(e) for e in run.errors]
        extra = f"; {len(raised)} raised (allowed): {', '.join(raised)}" if raised else ""
        _say(f"ran {len(run.executions)} code cells of {path} in {run.elapsed:.1f} s{extra}; outputs saved")
        return ExitCode.OK
    status = failed.result.status
    what = {"error": "raised an exception", "timeout": "timed out", "dead": "killed the kernel"}[status]
    _say(
        f"FAILED: {_cell(failed)} {what}; stopped after {len(run.executions)} of {run.total} code cells "
        f"(outputs up to it are saved in {path})"
    )
    text = failed.error_text()
    if text:
        print(text, file=sys.stderr, flush=True)
    return {"error": ExitCode.CELL_ERROR, "timeout": ExitCode.TIMEOUT}.get(status, ExitCode.KERNEL)


async def _run(ns: argparse.Namespace, path: Path) -> ExitCode:
    session = NotebookSession(path, kernel_name=ns.kernel, python=ns.python, timeout=ns.timeout)
    await session.open(create=False)
    try:
        choice = session.kernel_choice
        _say(f"running {path} with kernel {choice.describe() if choice else '?'}")
        progress = _Progress()
        run = await session.run_all(
            stop_on_error=not ns.allow_errors,
            before_cell=progress.before,
            after_cell=progress.after,
            on_progress=progress.during,
        )
    finally:
        await session.close()
    return _report(path, run)


def exec_cli(*args: str) -> int:
    """Run `nbmcp exec` with command-line `args` (those after "exec"); returns the exit code."""
    from .cli import _configure_logging

    parser = _parser()
    ns = parser.parse_args(args)
    if ns.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    _configure_logging(ns.log_level)
    path = Path(ns.path).expanduser().absolute()
    if not path.is_file():
        _say(f"error: {path} is not a file; give the path of an existing notebook (.ipynb)")
        return ExitCode.USAGE
    try:
        return anyio.run(_run, ns, path, backend="asyncio")
    except KernelError as exc:
        _say(f"error: {exc}")
        return ExitCode.KERNEL
    except NbmcpError as exc:
        _say(f"error: {exc}")
        return ExitCode.USAGE
    except KeyboardInterrupt:
        _say("interrupted")
        return ExitCode.INTERRUPTED
