"""What `nbmcp exec` says on stderr as it runs: a line per cell, a line per notebook, a live display, a summary.

One notebook gets a line per cell (`CellLines`) and a closing report (`report_one`); several get a
line per notebook, a live display when stderr is a terminal (`NotebookLines`) and a table
(`report_many`). stdout stays empty, so a CI log shows only what matters.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio

from ..ci.batch import NotebookJob, NotebookResult
from ..kernels.outputs import output_text
from ..session.results import CellRef, Execution

__all__ = [
    "HEARTBEAT_INTERVAL",
    "LIVE_REFRESH",
    "CellLines",
    "NotebookLines",
    "cell_label",
    "report_many",
    "report_one",
    "say",
    "shown",
    "summary",
    "what_happened",
]

#: Seconds between "still running" lines on stderr while one cell runs (CI logs show no hang).
HEARTBEAT_INTERVAL = 10.0
#: Seconds between redraws of the live display (several notebooks, stderr a terminal).
LIVE_REFRESH = 0.25


def say(message: str) -> None:
    print(f"nbmcp exec: {message}", file=sys.stderr, flush=True)


def cell_label(ref: CellRef) -> str:
    return f"cell {ref.index} (id {ref.id})" if ref.id else f"cell {ref.index}"


def shown(path: Path) -> str:
    """A path as a user reads it: relative to the current folder when under it."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def what_happened(result: NotebookResult) -> str:
    """What happened to a notebook, in a few words (for progress lines and the summary)."""
    if result.problem is not None:
        return str(result.problem).splitlines()[0]
    failed, run = result.failed, result.run
    if failed is None:
        if run is not None and run.exited is not None:
            return f"ended early by {cell_label(run.exited.cell)} (sys.exit)"
        allowed = len(run.errors) if run else 0
        return f"{allowed} raised (allowed)" if allowed else "ok"
    status = failed.result.status
    errors = [o for o in failed.result.outputs if o.get("output_type") == "error"]
    what = {"timeout": "timed out", "dead": "killed the kernel"}.get(status)
    if what is None:
        what = f"raised {errors[-1].get('ename')}" if errors else "raised an exception"
    return f"{cell_label(failed.cell)} {what}"


# -- one notebook: a line per cell, as before issue 16 ----------------------------------------------


class CellLines:
    """The stderr lines of a single-notebook run: one per cell, plus a heartbeat while a cell runs long."""

    def __init__(self, *, log_output: bool = False) -> None:
        self.started = time.monotonic()
        self.current = ""
        self.next_heartbeat = 0.0
        #: Each cell's output text follows its line (papermill's --log-output).
        self.log_output = log_output

    async def notebook_started(self, job: NotebookJob) -> None:
        self.started = time.monotonic()

    async def kernel_chosen(self, job: NotebookJob, description: str) -> None:
        where = "" if job.in_place else f" into {shown(job.output)}"
        say(f"running {shown(job.input)}{where} with kernel {description}")

    async def cell_started(self, job: NotebookJob, k: int, n: int, ref: CellRef) -> None:
        self.current = f"[{k}/{n}] {cell_label(ref)}"
        self.next_heartbeat = HEARTBEAT_INTERVAL

    async def cell_running(self, job: NotebookJob, elapsed: float, last_line: str) -> None:
        if elapsed >= self.next_heartbeat:
            self.next_heartbeat = elapsed + HEARTBEAT_INTERVAL
            line = f"; latest output: {last_line[:100]}" if last_line else ""
            say(f"{self.current} still running after {elapsed:.0f} s{line}")

    async def cell_finished(self, job: NotebookJob, k: int, n: int, execution: Execution) -> None:
        res = execution.result
        status = {"ok": "ok", "error": "raised an exception"}.get(res.status, res.status.upper())
        count = f", execution_count {res.execution_count}" if res.execution_count is not None else ""
        total = time.monotonic() - self.started
        say(f"{self.current} {status} in {res.elapsed:.2f} s{count} (elapsed {total:.1f} s)")
        if self.log_output:
            text = "".join(output_text(o) for o in res.outputs)
            if text:
                print(text.rstrip("\n"), file=sys.stderr, flush=True)

    async def notebook_finished(self, result: NotebookResult) -> None:
        pass


def report_one(result: NotebookResult) -> None:
    job, run = result.job, result.run
    if result.problem is not None:
        say(f"error: {result.problem}")
        return
    if run is None:
        say(f"prepared {shown(job.output)} (--prepare-only: no cell was run)")
        return
    for note in run.notes:
        say(f"note: {note}")
    where = shown(job.output)
    failed = run.failed
    if failed is None:
        raised = [cell_label(e.cell) for e in run.errors if e is not run.exited]
        extra = f"; {len(raised)} raised (allowed): {', '.join(raised)}" if raised else ""
        if run.exited is not None:
            extra += f"; the other {run.total - len(run.executions)} were not run"
        say(f"ran {len(run.executions)} code cells of {shown(job.input)} in {run.elapsed:.1f} s{extra}; outputs saved")
        if not job.in_place:
            say(f"wrote {where}")
        return
    what = {"error": "raised an exception", "timeout": "timed out", "dead": "killed the kernel"}.get(
        failed.result.status, failed.result.status
    )
    say(
        f"FAILED: {cell_label(failed.cell)} {what}; stopped after {len(run.executions)} of {run.total} code cells "
        f"(outputs up to it are saved in {where})"
    )
    text = failed.error_text()
    if text:
        print(text, file=sys.stderr, flush=True)


# -- several notebooks: a line per notebook, or a live display on a terminal ------------------------


class NotebookLines:
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
        line = f"[{self.done}/{self.total}] {word} {shown(result.job.input)} ({cells}, {result.elapsed:.1f} s)"
        if what_happened(result) != "ok":
            line += f": {what_happened(result)}"
        self._write(f"nbmcp exec: {line}\n")

    def _running_text(self) -> str:
        now = time.monotonic()
        return ", ".join(
            f"{shown(path)} (cell {k}/{n}, {now - started:.0f} s)" for path, (started, k, n) in self.running.items()
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
            name, room = shown(path), max(8, width - len(status) - 2)
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


def summary(results: Sequence[NotebookResult], elapsed: float) -> str:
    rows = [("notebook", "cells run", "time", "result")]
    for r in results:
        cells = f"{r.cells_run}/{r.cells_total}" if r.run else "-"
        result = "passed" if r.ok else f"FAILED: {what_happened(r)}"
        if r.ok and what_happened(r) != "ok":
            result += f" ({what_happened(r)})"
        rows.append((shown(r.job.input), cells, f"{r.elapsed:.1f} s", result))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    passed = sum(r.ok for r in results)
    lines.append(f"{passed} of {len(results)} notebooks passed in {elapsed:.1f} s")
    return "\n".join(lines)


def report_many(results: Sequence[NotebookResult], elapsed: float) -> None:
    for r in results:
        if r.ok:
            continue
        detail = r.failed.error_text() if r.failed is not None else ""
        say(f"FAILED {shown(r.job.input)}: {what_happened(r)}" + (f"\n{detail}" if detail else ""))
    print(summary(results, elapsed), file=sys.stderr, flush=True)
