"""`nbmcp exec NOTEBOOK...`: run notebooks headless (CI), with papermill's parameters and a JUnit report.

Each notebook runs with `NotebookSession.run_all` on a fresh kernel of its own (through
`nbmcp.ci.batch`), so the outputs written are the ones the MCP tools write, and the ones nbclient writes
for the same notebook (timing metadata aside). Progress goes to stderr; stdout stays empty, so a CI
log shows only what matters.
"""

from __future__ import annotations

import argparse
import enum
import os
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import anyio
import nbformat

from ..ci.batch import NotebookJob, NotebookResult, output_paths, run_notebooks
from ..ci.parameters import declared_parameters, merge_parameters, unknown_parameters
from ..errors import NbmcpError, UsageError
from ..kernels.choice import choose_kernel
from ..session.results import CellRef, Execution
from .options import add_kernel_options, add_log_level_option, add_timeout_option, command_parser, configure_logging

__all__ = ["HEARTBEAT_INTERVAL", "LIVE_REFRESH", "ExitCode", "exec_cli"]

#: Seconds between "still running" lines on stderr while one cell runs (CI logs show no hang).
HEARTBEAT_INTERVAL = 10.0
#: Seconds between redraws of the live display (several notebooks, stderr a terminal).
LIVE_REFRESH = 0.25
#: Folders never searched for notebooks when a folder is given (the MCP server's rule, plus checkpoints).
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages", "build", "dist"})


class ExitCode(enum.IntEnum):
    """What `nbmcp exec` exits with; with several notebooks, the largest of theirs."""

    OK = 0
    """Every selected cell ran; with --allow-errors, cells that raised count as ran."""
    CELL_ERROR = 1
    """A cell raised an exception: the run stopped there; its traceback is on stderr and in the file."""
    USAGE = 2
    """Bad arguments, or a notebook is missing or unreadable (then it did not run)."""
    TIMEOUT = 3
    """A cell ran longer than --timeout: the kernel was interrupted and the run stopped."""
    KERNEL = 4
    """The kernel could not be started, or it died while running a cell."""
    INTERRUPTED = 130
    """Stopped by Ctrl+C (SIGINT)."""


_EXIT_BY_STATUS = {
    "passed": ExitCode.OK,
    "error": ExitCode.CELL_ERROR,
    "invalid": ExitCode.USAGE,
    "timeout": ExitCode.TIMEOUT,
    "dead": ExitCode.KERNEL,
    "kernel": ExitCode.KERNEL,
}

DESCRIPTION = """\
Run every code cell of one or more notebooks in order, each on a fresh kernel, the way
`jupyter nbconvert --execute`, nbclient or papermill do, and save the outputs (cell by cell, as each
finishes) into the notebook, or into a copy with -o / --output-dir. Progress goes to stderr. Meant
for CI: check that notebooks still run (like `pytest --nbmake`), or fill in a report notebook's
outputs for given parameters (like papermill).

Like nbclient, it leaves markdown, raw and blank code cells alone, skips code cells tagged
`skip-execution`, and lets a cell tagged `raises-exception` raise without stopping the run.

Parameters work as in papermill: the values go into a new cell tagged `injected-parameters`, placed
right after the cell tagged `parameters` (or first, if no cell has that tag; an injected cell left by
an earlier run is replaced), with the source papermill writes (`alpha = 21`). -p values are read as
papermill reads them: True, False, None, an int, a float, else a string. Options apply by kind, in
papermill's order: -f files, then -y, then -p, then -r. A run with parameters or an output file
records them (and its start, end, duration) in the notebook's metadata.papermill, as papermill does.
A name the `parameters` cell does not assign gets papermill's warning ("Passed unknown parameter") on
stderr; --strict-parameters makes it an error (exit 2) before anything runs.
"""

EPILOG = f"""\
exit codes (with several notebooks: the largest of theirs):
  {ExitCode.OK:<3}  every cell ran (with --allow-errors, errors are saved in the cells' outputs)
  {ExitCode.CELL_ERROR:<3}  a cell raised an exception: stderr names the cell (index and id) and shows
       its traceback; the run stopped there (outputs up to that cell are saved)
  {ExitCode.USAGE:<3}  bad arguments (an unknown --kernel, say), or a notebook is missing or invalid
  {ExitCode.TIMEOUT:<3}  a cell ran longer than --timeout (even with --allow-errors)
  {ExitCode.KERNEL:<3}  the kernel could not start or died (even with --allow-errors)
  {ExitCode.INTERRUPTED:<3}  interrupted with Ctrl+C

examples:
  nbmcp exec report.ipynb
  nbmcp exec report.ipynb --timeout 600 --kernel python3
  nbmcp exec tutorial.ipynb --allow-errors   a notebook that shows errors on purpose
  nbmcp exec report.ipynb -o out/report-21.ipynb -p alpha 21 -y 'regions: [eu, us]'
  nbmcp exec notebooks/ --jobs auto --output-dir executed --junit-xml junit.xml
"""


def _jobs(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give a number of notebooks to run at once (1 or more), or auto")
    return n


def _parser() -> argparse.ArgumentParser:
    p = command_parser("nbmcp exec", DESCRIPTION, EPILOG)
    p.add_argument(
        "paths",
        metavar="NOTEBOOK",
        nargs="+",
        help="notebooks (.ipynb) to run; a folder means every notebook under it (hidden folders and "
        ".ipynb_checkpoints skipped)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "-o",
        "--output",
        metavar="OUTPUT",
        help="write the run into OUTPUT (replaced if it exists) and leave the notebook itself untouched; "
        "one notebook only",
    )
    out.add_argument(
        "--output-dir",
        metavar="DIR",
        help="write each run into DIR (keeping the notebooks' relative folders) and leave the notebooks untouched",
    )
    params = p.add_argument_group("parameters (as papermill's -p, -r, -y, -f)")
    params.add_argument(
        "-p", "--parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="a parameter"
    )
    params.add_argument(
        "-r",
        "--parameters-raw",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter kept as a string",
    )
    params.add_argument(
        "-y", "--parameters-yaml", action="append", default=[], metavar="YAML", help="parameters as a YAML mapping"
    )
    params.add_argument(
        "-f",
        "--parameters-file",
        action="append",
        default=[],
        metavar="FILE",
        help="parameters from a YAML or JSON file",
    )
    params.add_argument(
        "--strict-parameters",
        action="store_true",
        help="a parameter that the notebook's `parameters` cell does not define is an error (exit 2), not a warning",
    )
    p.add_argument(
        "--jobs",
        "-j",
        metavar="N",
        type=_jobs,
        default=1,
        help="run N notebooks at a time, each with its own kernel (auto: the CPU count; default: 1)",
    )
    p.add_argument(
        "--junit-xml",
        metavar="FILE",
        help="write a JUnit XML report: one testcase per notebook, a failing cell's traceback in its <failure>",
    )
    add_timeout_option(p, "time limit of each cell (default: %(default)g, or NBMCP_TIMEOUT)")
    p.add_argument(
        "--allow-errors",
        action="store_true",
        help="go on after a cell raises an exception (its traceback is saved in its outputs) and exit 0",
    )
    add_kernel_options(p)
    add_log_level_option(p, "WARNING", "nbmcp's own log lines on stderr")
    return p


def _say(message: str) -> None:
    print(f"nbmcp exec: {message}", file=sys.stderr, flush=True)


def _cell(ref: CellRef) -> str:
    return f"cell {ref.index} (id {ref.id})" if ref.id else f"cell {ref.index}"


def _shown(path: Path) -> str:
    """A path as a user reads it: relative to the current folder when under it."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def _what(result: NotebookResult) -> str:
    """What happened to a notebook, in a few words (for progress lines and the summary)."""
    if result.problem is not None:
        return str(result.problem).splitlines()[0]
    failed = result.failed
    if failed is None:
        allowed = len(result.run.errors) if result.run else 0
        return f"{allowed} raised (allowed)" if allowed else "ok"
    status = failed.result.status
    errors = [o for o in failed.result.outputs if o.get("output_type") == "error"]
    what = {"timeout": "timed out", "dead": "killed the kernel"}.get(status)
    if what is None:
        what = f"raised {errors[-1].get('ename')}" if errors else "raised an exception"
    return f"{_cell(failed.cell)} {what}"


# -- one notebook: a line per cell, as before issue 16 ----------------------------------------------


class _CellLines:
    """The stderr lines of a single-notebook run: one per cell, plus a heartbeat while a cell runs long."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.current = ""
        self.next_heartbeat = 0.0

    async def notebook_started(self, job: NotebookJob) -> None:
        self.started = time.monotonic()

    async def kernel_chosen(self, job: NotebookJob, description: str) -> None:
        where = "" if job.in_place else f" into {_shown(job.output)}"
        _say(f"running {_shown(job.input)}{where} with kernel {description}")

    async def cell_started(self, job: NotebookJob, k: int, n: int, ref: CellRef) -> None:
        self.current = f"[{k}/{n}] {_cell(ref)}"
        self.next_heartbeat = HEARTBEAT_INTERVAL

    async def cell_running(self, job: NotebookJob, elapsed: float, last_line: str) -> None:
        if elapsed >= self.next_heartbeat:
            self.next_heartbeat = elapsed + HEARTBEAT_INTERVAL
            line = f"; latest output: {last_line[:100]}" if last_line else ""
            _say(f"{self.current} still running after {elapsed:.0f} s{line}")

    async def cell_finished(self, job: NotebookJob, k: int, n: int, execution: Execution) -> None:
        res = execution.result
        status = {"ok": "ok", "error": "raised an exception"}.get(res.status, res.status.upper())
        count = f", execution_count {res.execution_count}" if res.execution_count is not None else ""
        total = time.monotonic() - self.started
        _say(f"{self.current} {status} in {res.elapsed:.2f} s{count} (elapsed {total:.1f} s)")

    async def notebook_finished(self, result: NotebookResult) -> None:
        pass


def _report_one(result: NotebookResult) -> None:
    job, run = result.job, result.run
    if result.problem is not None:
        _say(f"error: {result.problem}")
        return
    assert run is not None
    for note in run.notes:
        _say(f"note: {note}")
    where = _shown(job.output)
    failed = run.failed
    if failed is None:
        raised = [_cell(e.cell) for e in run.errors]
        extra = f"; {len(raised)} raised (allowed): {', '.join(raised)}" if raised else ""
        _say(
            f"ran {len(run.executions)} code cells of {_shown(job.input)} in {run.elapsed:.1f} s{extra}; outputs saved"
        )
        if not job.in_place:
            _say(f"wrote {where}")
        return
    what = {"error": "raised an exception", "timeout": "timed out", "dead": "killed the kernel"}.get(
        failed.result.status, failed.result.status
    )
    _say(
        f"FAILED: {_cell(failed.cell)} {what}; stopped after {len(run.executions)} of {run.total} code cells "
        f"(outputs up to it are saved in {where})"
    )
    text = failed.error_text()
    if text:
        print(text, file=sys.stderr, flush=True)


# -- several notebooks: a line per notebook, or a live display on a terminal ------------------------


class _NotebookLines:
    """Several notebooks: one line per notebook as it finishes, and now and then which are still running.

    With stderr on a terminal (`live`), the notebooks running now are also shown below those lines,
    redrawn in place (current cell, elapsed time) and erased when the run ends.
    """

    def __init__(self, total: int, stream: TextIO, *, live: bool) -> None:
        self.total = total
        self.stream = stream
        self.live = live
        self.done = 0
        self.failed = 0
        self.running: dict[Path, list[Any]] = {}  # input -> [started, k, n]
        self.drawn = 0
        self.next_heartbeat = time.monotonic() + 3 * HEARTBEAT_INTERVAL

    async def notebook_started(self, job: NotebookJob) -> None:
        self.running[job.input] = [time.monotonic(), 0, 0]

    async def kernel_chosen(self, job: NotebookJob, description: str) -> None:
        pass

    async def cell_started(self, job: NotebookJob, k: int, n: int, ref: CellRef) -> None:
        state = self.running.get(job.input)
        if state is not None:
            state[1], state[2] = k, n

    async def cell_running(self, job: NotebookJob, elapsed: float, last_line: str) -> None:
        if not self.live and time.monotonic() >= self.next_heartbeat:
            self.next_heartbeat = time.monotonic() + 3 * HEARTBEAT_INTERVAL
            self._write(f"nbmcp exec: still running: {self._running_text()}\n")

    async def cell_finished(self, job: NotebookJob, k: int, n: int, execution: Execution) -> None:
        pass

    async def notebook_finished(self, result: NotebookResult) -> None:
        self.running.pop(result.job.input, None)
        self.done += 1
        self.failed += not result.ok
        word = "PASSED" if result.ok else "FAILED"
        cells = f"{result.cells_run}/{result.cells_total} cells" if result.run else "no cells"
        line = f"[{self.done}/{self.total}] {word} {_shown(result.job.input)} ({cells}, {result.elapsed:.1f} s)"
        if _what(result) != "ok":
            line += f": {_what(result)}"
        self._write(f"nbmcp exec: {line}\n")

    def _running_text(self) -> str:
        now = time.monotonic()
        return ", ".join(
            f"{_shown(path)} (cell {k}/{n}, {now - started:.0f} s)" for path, (started, k, n) in self.running.items()
        )

    def _write(self, text: str) -> None:
        """Print permanent lines: above the live display, which is redrawn after them."""
        self._erase()
        self.stream.write(text)
        self._draw()
        self.stream.flush()

    def _erase(self) -> None:
        if self.drawn:
            # Up to the first line of the display, then clear to the end of the screen.
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def _draw(self) -> None:
        if not self.live or not self.running:
            return
        width = max(20, shutil.get_terminal_size().columns - 1)  # a wrapped line would break the redraw
        now = time.monotonic()
        lines = [f"running {len(self.running)}, done {self.done}/{self.total}, failed {self.failed}"]
        for path, (started, k, n) in self.running.items():
            status = f"  {f'cell {k}/{n}' if n else 'starting'}  {now - started:.1f} s"
            name, room = _shown(path), max(8, width - len(status) - 2)
            if len(name) > room:
                name = "..." + name[len(name) - room + 3 :]  # keep the file name, drop the start of the folder
            lines.append(f"  {name}{status}")
        self.stream.write("".join(line[:width] + "\n" for line in lines))
        self.drawn = len(lines)

    async def refresh(self) -> None:
        """Redraw the live display until cancelled."""
        while True:
            await anyio.sleep(LIVE_REFRESH)
            self._erase()
            self._draw()
            self.stream.flush()

    def close(self) -> None:
        self._erase()
        self.stream.flush()


def _summary(results: Sequence[NotebookResult], elapsed: float) -> str:
    rows = [("notebook", "cells run", "time", "result")]
    for r in results:
        cells = f"{r.cells_run}/{r.cells_total}" if r.run else "-"
        result = "passed" if r.ok else f"FAILED: {_what(r)}"
        if r.ok and _what(r) != "ok":
            result += f" ({_what(r)})"
        rows.append((_shown(r.job.input), cells, f"{r.elapsed:.1f} s", result))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    passed = sum(r.ok for r in results)
    lines.append(f"{passed} of {len(results)} notebooks passed in {elapsed:.1f} s")
    return "\n".join(lines)


def _report_many(results: Sequence[NotebookResult], elapsed: float) -> None:
    for r in results:
        if r.ok:
            continue
        detail = r.failed.error_text() if r.failed is not None else ""
        _say(f"FAILED {_shown(r.job.input)}: {_what(r)}" + (f"\n{detail}" if detail else ""))
    print(_summary(results, elapsed), file=sys.stderr, flush=True)


# -- the command --------------------------------------------------------------------------------------


def _check_parameter_names(inputs: Sequence[Path], parameters: dict[str, Any], *, strict: bool) -> None:
    """papermill's warning for a parameter the notebook does not define (a typo runs with the default).

    With --strict-parameters it is an error, raised before anything runs.
    """
    for path in inputs:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # an unreadable notebook is reported by its run, like any other
            continue
        where = "no cell is tagged `parameters`" if declared_parameters(nb) is None else "its `parameters` cell"
        for name in unknown_parameters(nb, parameters):
            if strict:
                raise UsageError(
                    f"--strict-parameters: {_shown(path)} does not define parameter {name} ({where} does not "
                    "assign it); check the name"
                )
            _say(f"warning: Passed unknown parameter: {name} ({_shown(path)}: {where} does not assign it)")


def _find_notebooks(paths: Sequence[str], skip: Path | None = None) -> tuple[list[Path], str | None]:
    """The notebooks named (folders searched, except `skip`); or a message saying which path is not usable.

    `skip` is the --output-dir: when it lies inside a folder given, the runs it holds from last time
    are not notebooks to run again.
    """
    found: list[Path] = []
    for arg in paths:
        path = Path(arg).expanduser()
        if path.is_dir():
            inside = []
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".")
                    and d not in SKIPPED_DIRS
                    and (skip is None or (Path(folder) / d).absolute() != skip)
                )
                inside += [Path(folder) / f for f in sorted(files) if f.endswith(".ipynb") and not f.startswith(".")]
            if not inside:
                return [], f"{path} is a folder with no notebook (.ipynb) under it"
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            return [], f"{path.absolute()} is not a file; give the path of an existing notebook (.ipynb) or a folder"
    unique = list(dict.fromkeys(p.absolute() for p in found))
    return unique, None


def _make_jobs(ns: argparse.Namespace, inputs: list[Path], parameters: dict[str, Any] | None) -> list[NotebookJob]:
    if ns.output:
        return [NotebookJob(inputs[0], Path(ns.output).expanduser().absolute(), parameters)]
    if ns.output_dir:
        outputs = output_paths(inputs, Path(ns.output_dir).expanduser().absolute())
        return [NotebookJob(i, o, parameters) for i, o in zip(inputs, outputs, strict=True)]
    return [NotebookJob(i, i, parameters) for i in inputs]


async def _run(ns: argparse.Namespace, jobs: list[NotebookJob]) -> tuple[list[NotebookResult], float]:
    started = time.monotonic()
    options: dict[str, Any] = {
        "kernel_name": ns.kernel,
        "python": ns.python,
        "timeout": ns.timeout,
        "stop_on_error": not ns.allow_errors,
        "max_jobs": ns.jobs,
    }
    if len(jobs) == 1:
        results = await run_notebooks(jobs, reporter=_CellLines(), **options)
        return results, time.monotonic() - started
    live = sys.stderr.isatty()
    lines = _NotebookLines(len(jobs), sys.stderr, live=live)
    _say(f"running {len(jobs)} notebooks, {min(ns.jobs, len(jobs))} at a time")
    try:
        async with anyio.create_task_group() as tg:
            if live:
                tg.start_soon(lines.refresh)
            results = await run_notebooks(jobs, reporter=lines, **options)
            tg.cancel_scope.cancel()
    finally:
        lines.close()
    return results, time.monotonic() - started


def exec_cli(*args: str) -> int:
    """Run `nbmcp exec` with command-line `args` (those after "exec"); returns the exit code."""
    parser = _parser()
    ns = parser.parse_args(args)
    if ns.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    configure_logging(ns.log_level)
    skip = Path(ns.output_dir).expanduser().absolute() if ns.output_dir else None
    inputs, problem = _find_notebooks(ns.paths, skip)
    if problem:
        _say(f"error: {problem}")
        return ExitCode.USAGE
    if ns.output and len(inputs) > 1:
        parser.error(f"-o names one output file, but {len(inputs)} notebooks were given; use --output-dir DIR")
    started_at = datetime.now(timezone.utc)
    try:
        given = ns.parameters or ns.parameters_raw or ns.parameters_yaml or ns.parameters_file
        parameters = (
            merge_parameters(
                files=ns.parameters_file,
                yaml_texts=ns.parameters_yaml,
                values=[tuple(v) for v in ns.parameters],
                raw_values=[tuple(v) for v in ns.parameters_raw],
            )
            if given
            else None
        )
        if parameters:
            _check_parameter_names(inputs, parameters, strict=ns.strict_parameters)
        if ns.kernel or ns.python:
            choose_kernel(kernel_name=ns.kernel, python=ns.python)  # a bad one fails once, before any run
        jobs = _make_jobs(ns, inputs, parameters)
        if len({j.output for j in jobs}) < len(jobs) or any(
            j.output in {k.input for k in jobs} and not j.in_place for j in jobs
        ):
            raise NbmcpError("two notebooks would be written to the same file; choose another --output-dir")
        results, elapsed = anyio.run(_run, ns, jobs, backend="asyncio")
    except NbmcpError as exc:
        _say(f"error: {exc}")
        return ExitCode.USAGE
    except KeyboardInterrupt:
        _say("interrupted")
        return ExitCode.INTERRUPTED
    if len(results) == 1:
        _report_one(results[0])
    else:
        _report_many(results, elapsed)
    if ns.junit_xml:
        from ..ci.junit import write_junit_xml

        report = Path(ns.junit_xml).expanduser()
        write_junit_xml(report, results, started=started_at)
        _say(f"wrote JUnit report {_shown(report)}")
    return max(_EXIT_BY_STATUS[r.status] for r in results)
