"""Running whole notebooks headless: parameters, an output file, several notebooks at once (issue 16).

One notebook is one `NotebookJob`: an input, the file the run writes (the input itself, or a copy
with `-o`/`--output-dir`), and optional papermill-style parameters. `run_notebook` prepares the file
(parameters injected, run metadata recorded), runs it with `NotebookSession.run_all` on a kernel of
its own, and returns a `NotebookResult`; `run_notebooks` runs many, N at a time. `nbmcp exec` and
`Notebook.run` are both thin layers over these two functions.

Run metadata: a papermill-style run (parameters given, or an output file other than the input)
records `metadata.papermill` with papermill's keys and meanings (`parameters`, `input_path`,
`output_path`, `start_time`, `end_time`, `duration`, `exception`), so tools that read papermill's
output notebooks read nbmcp's too. A plain in-place re-run records nothing, so a notebook kept in
git does not change on every CI run beyond its outputs. Per-cell `metadata.papermill` (status and
timestamps in every cell) is not written: it would put noise in every cell's diff.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import anyio
from nbformat import NotebookNode

from ..errors import CellExecutionError, KernelError, NbmcpError, NotebookFormatError
from ..kernels.base import DEFAULT_TIMEOUT, KERNEL_START_TIMEOUT
from ..notebook.encoder import file_format_of
from ..notebook.reader import parse_notebook
from ..notebook.store import LocalStore
from ..session.cells import ensure_ids
from ..session.results import CellRef, Execution, RunAll
from ..session.session import NotebookSession
from .parameters import check_names, inject_parameters

__all__ = [
    "NotebookJob",
    "NotebookResult",
    "Reporter",
    "RunOptions",
    "output_paths",
    "run_notebook",
    "run_notebooks",
]

#: `NotebookResult.status` values, in the order of severity used for a batch's exit code.
STATUSES = ("passed", "error", "invalid", "timeout", "dead", "kernel")


@dataclass(frozen=True)
class NotebookJob:
    """One notebook to run: where it is, which file the run writes, and its parameters."""

    input: Path
    output: Path
    """The file the run writes; the input itself for an in-place run (then the input is changed)."""
    parameters: dict[str, Any] | None = None
    """None: no parameters cell is injected. A dict (even empty): a papermill-style run."""
    recorded_as: tuple[str | None, str | None] = (None, None)
    """The input and output paths metadata.papermill records, when not the files' (`-`: stdin, stdout)."""
    inject_paths: tuple[bool, bool] = (False, False)
    """Add the input's and the output's paths as PAPERMILL_INPUT_PATH, PAPERMILL_OUTPUT_PATH (papermill's)."""
    report_mode: bool = False
    """Hide the code cells' input (`metadata.jupyter.source_hidden`), as papermill's --report-mode."""

    @property
    def in_place(self) -> bool:
        return self.output.absolute() == self.input.absolute()

    @property
    def records_metadata(self) -> bool:
        """Whether `metadata.papermill` is written (see the module's docstring)."""
        return self.parameters is not None or not self.in_place


@dataclass
class NotebookResult:
    """How one notebook's run ended."""

    job: NotebookJob
    run: RunAll | None
    """None when no cell ran: the notebook was invalid or its kernel could not start."""
    elapsed: float
    problem: NbmcpError | None = None
    """What stopped the notebook before its cells could run (invalid file, no kernel)."""

    @property
    def failed(self) -> Execution | None:
        """The cell that stopped the run, if any."""
        return self.run.failed if self.run else None

    @property
    def status(self) -> str:
        """passed; error, timeout or dead (a cell raised, timed out, killed the kernel); invalid; kernel."""
        if self.problem is not None:
            return "kernel" if isinstance(self.problem, KernelError) else "invalid"
        failed = self.failed
        return "passed" if failed is None else failed.result.status

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    @property
    def cells_run(self) -> int:
        return len(self.run.executions) if self.run else 0

    @property
    def cells_total(self) -> int:
        return self.run.total if self.run else 0

    def raise_for_status(self) -> NotebookResult:
        """Raise what stopped the run (CellExecutionError for a cell); returns self when it passed."""
        if self.problem is not None:
            raise self.problem
        failed = self.failed
        if failed is not None:
            raise CellExecutionError(failed.cell.index, failed.cell.id, failed.result.status, failed.error_text())
        return self


class Reporter(Protocol):
    """What `run_notebooks` tells as it goes (progress lines, a live display); every method is optional work."""

    async def notebook_started(self, job: NotebookJob) -> None: ...

    async def kernel_chosen(self, job: NotebookJob, description: str) -> None: ...

    async def cell_started(self, job: NotebookJob, k: int, n: int, ref: CellRef) -> None: ...

    async def cell_running(self, job: NotebookJob, elapsed: float, last_line: str) -> None: ...

    async def cell_finished(self, job: NotebookJob, k: int, n: int, execution: Execution) -> None: ...

    async def notebook_finished(self, result: NotebookResult) -> None: ...


def output_paths(inputs: Sequence[Path], output_dir: Path) -> list[Path]:
    """Where each input's run is written under `output_dir`, keeping the inputs' relative folders.

    Paths are taken relative to the inputs' common folder, so `a/nb.ipynb` and `b/nb.ipynb` become
    `DIR/a/nb.ipynb` and `DIR/b/nb.ipynb` instead of overwriting one another.
    """
    absolute = [p.absolute() for p in inputs]
    common = Path(_common_folder([p.parent for p in absolute]))
    return [output_dir / p.relative_to(common) for p in absolute]


def _common_folder(folders: Sequence[Path]) -> str:
    import os.path

    return os.path.commonpath([str(f) for f in folders])


def _recorded_paths(job: NotebookJob) -> tuple[str, str]:
    """The input and output paths as papermill records and injects them."""
    return job.recorded_as[0] or _as_given(job.input), job.recorded_as[1] or _as_given(job.output)


def _as_given(path: Path) -> str:
    """A path as papermill records it (as typed): relative to the current folder when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class RunOptions:
    """How the cells of a notebook run: each None is taken from the notebook, then the default.

    The notebook's own `metadata.execution.timeout` and `metadata.execution.allow_errors` are nbmake's
    keys (nbclient's options by the same names); a value given here (a command-line flag) overrides them.
    """

    timeout: float | None = None
    """Seconds each cell may run; None: the notebook's `execution.timeout`, else `default_timeout`."""
    allow_errors: bool | None = None
    """Go on after a cell raises; None: the notebook's `execution.allow_errors`, else False."""
    error_outputs_fail: bool = False
    """A cell that shows an error output without raising fails (nbmake's rule)."""
    default_timeout: float = DEFAULT_TIMEOUT
    """The timeout when neither this nor the notebook gives one ($NBMCP_TIMEOUT for `nbmcp exec`)."""
    start_timeout: float = KERNEL_START_TIMEOUT
    """Seconds the kernel may take to start."""
    cwd: Path | None = None
    """The kernel's working folder; None: the input's folder."""
    prepare_only: bool = False
    """Write the prepared notebook (parameters injected, metadata) and run nothing (papermill's --prepare-only)."""

    def resolve(self, metadata: Any, path: Path) -> tuple[float, bool]:
        """The timeout and allow_errors for a notebook whose `metadata.execution` is `metadata`."""
        own = metadata if isinstance(metadata, dict) else {}
        timeout, allow = self.timeout, self.allow_errors
        if timeout is None:
            timeout = own.get("timeout", self.default_timeout)
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
                raise NotebookFormatError(
                    path, f"metadata.execution.timeout is {timeout!r}; give a positive number of seconds"
                )
        if allow is None:
            allow = own.get("allow_errors", False)
            if not isinstance(allow, bool):
                raise NotebookFormatError(path, f"metadata.execution.allow_errors is {allow!r}; give true or false")
        return float(timeout), allow


def prepare(job: NotebookJob, started: str) -> Any:
    """Write the file the run will execute: the input, parameterized and with its run metadata.

    Reads the input's bytes and never writes to it unless the run is in place, so with an output
    path the input stays byte-identical. Raises NbmcpError (NotebookFormatError, UsageError,
    NotebookWriteError) for a notebook that cannot be prepared. Returns the notebook's
    `metadata.execution` (None if absent).
    """
    try:
        data = job.input.read_bytes()
    except OSError as exc:
        raise NotebookFormatError(job.input, f"cannot read it: {exc.strerror or exc}") from exc
    nb = parse_notebook(data, job.input)
    execution = nb.metadata.get("execution")
    if job.in_place:
        if job.records_metadata:
            # Through the file's store: its lock, and its check that nobody saved the file meanwhile.
            store = LocalStore(job.output, keep_format=True)
            store.edit(lambda current: _prepare_notebook(current, job, started))
        return execution  # a plain re-run: the notebook was only checked; the session reads it again
    # The copy keeps the input's nbformat_minor, and has cell ids only if the input had them.
    file_format = file_format_of(nb)
    _prepare_notebook(nb, job, started)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    LocalStore(job.output).replace(nb, file_format=file_format)
    return execution


def _prepare_notebook(nb: NotebookNode, job: NotebookJob, started: str) -> None:
    # Cells are followed by id; a 4.4 notebook gets them in memory only (the store writes it back as 4.4).
    ensure_ids(nb)
    parameters = job.parameters
    if parameters is not None and any(job.inject_paths):
        # papermill's order: the paths first, so that a parameter given by name overrides them.
        names = ("PAPERMILL_INPUT_PATH", "PAPERMILL_OUTPUT_PATH")
        paths = zip(names, job.inject_paths, _recorded_paths(job), strict=True)
        parameters = {name: path for name, wanted, path in paths if wanted} | parameters
    if parameters:
        # papermill injects a cell only when there are parameters; an empty set is still recorded.
        inject_parameters(nb, parameters)
    if job.report_mode:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    if job.records_metadata:
        from .. import __version__

        # papermill's keys, all of them: it too leaves default_parameters and environment_variables empty.
        nb.metadata["papermill"] = {
            "default_parameters": {},
            "environment_variables": {},
            "version": __version__,
            "parameters": dict(parameters or {}),
            "input_path": _recorded_paths(job)[0],
            "output_path": _recorded_paths(job)[1],
            "start_time": started,
            "end_time": None,
            "duration": None,
            "exception": None,
        }


def _finish_metadata(job: NotebookJob, run: RunAll, duration: float) -> None:
    def apply(nb: NotebookNode) -> None:
        meta = nb.metadata.get("papermill")
        if not isinstance(meta, dict):
            return  # someone removed it meanwhile; do not resurrect half of it
        meta["end_time"] = _now()
        meta["duration"] = round(duration, 6)
        # papermill: True once a cell raised (allowed errors included), else it stays null.
        meta["exception"] = True if run.errors else None

    LocalStore(job.output, keep_format=True).edit(apply)


async def run_notebook(
    job: NotebookJob,
    *,
    kernel_name: str | None = None,
    python: str | None = None,
    options: RunOptions = RunOptions(),
    reporter: Reporter | None = None,
) -> NotebookResult:
    """Prepare and run one notebook on a fresh kernel; never raises for the notebook's own failure.

    The kernel runs in the input's folder (where its relative paths point), even when the run
    writes a copy elsewhere. A notebook that cannot be read or prepared, or whose kernel cannot
    start (or is not installed), is returned with `problem` set; a cell that fails, with
    `run.failed` set; a cell that ends the run with `sys.exit(0)`, with `run.exited` set (a success).
    """
    started, clock = _now(), time.monotonic()
    if job.parameters is not None:
        check_names(job.parameters)
    if reporter is not None:
        await reporter.notebook_started(job)
    run: RunAll | None = None
    try:
        execution = await anyio.to_thread.run_sync(prepare, job, started)
        timeout, allow_errors = options.resolve(execution, job.input)
        if options.prepare_only:
            result = NotebookResult(job, None, time.monotonic() - clock)
            if reporter is not None:
                await reporter.notebook_finished(result)
            return result
        session = NotebookSession(
            job.output,
            kernel_name=kernel_name,
            python=python,
            timeout=timeout,
            cwd=options.cwd or job.input.parent,
            headless=True,
            start_timeout=options.start_timeout,
        )
        await session.open(create=False)
        if reporter is not None and session.kernel_choice is not None:
            await reporter.kernel_chosen(job, session.kernel_choice.describe())
        try:
            run = await session.run_all(
                stop_on_error=not allow_errors,
                headless=True,
                error_outputs_fail=options.error_outputs_fail,
                before_cell=_bind(reporter.cell_started, job) if reporter else None,
                after_cell=_bind(reporter.cell_finished, job) if reporter else None,
                on_progress=_bind(reporter.cell_running, job) if reporter else None,
            )
        finally:
            with anyio.CancelScope(shield=True):
                await session.close()
        if job.records_metadata:
            await anyio.to_thread.run_sync(_finish_metadata, job, run, time.monotonic() - clock)
        result = NotebookResult(job, run, time.monotonic() - clock)
    except NbmcpError as exc:
        result = NotebookResult(job, run, time.monotonic() - clock, problem=exc)
    if reporter is not None:
        await reporter.notebook_finished(result)
    return result


def _bind(method: Callable[..., Awaitable[None]], job: NotebookJob) -> Callable[..., Awaitable[None]]:
    async def call(*args: Any) -> None:
        await method(job, *args)

    return call


async def run_notebooks(
    jobs: Sequence[NotebookJob],
    *,
    max_jobs: int = 1,
    kernel_name: str | None = None,
    python: str | None = None,
    options: RunOptions = RunOptions(),
    reporter: Reporter | None = None,
) -> list[NotebookResult]:
    """Run every job, at most `max_jobs` at a time, each on its own kernel; results in the jobs' order."""
    results: list[NotebookResult | None] = [None] * len(jobs)
    limiter = anyio.CapacityLimiter(max(1, max_jobs))

    async def one(i: int, job: NotebookJob) -> None:
        async with limiter:
            results[i] = await run_notebook(
                job,
                kernel_name=kernel_name,
                python=python,
                options=options,
                reporter=reporter,
            )

    async with anyio.create_task_group() as tg:
        for i, job in enumerate(jobs):
            tg.start_soon(one, i, job)
    done = [r for r in results if r is not None]
    assert len(done) == len(jobs)
    return done
