"""`nbmcp exec NOTEBOOK...`: run notebooks headless (CI), with papermill's parameters and a JUnit report.

Each notebook runs with `NotebookSession.run_all` on a fresh kernel of its own (through
`nbmcp.ci.batch`), so the outputs written are the ones the MCP tools write, and the ones nbclient writes
for the same notebook (timing metadata aside). Progress goes to stderr; stdout stays empty, so a CI
log shows only what matters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import nbformat

from ..ci.batch import NotebookJob, NotebookResult, RunOptions, output_paths, run_notebooks
from ..ci.parameters import declared_parameters, merge_parameters, unknown_parameters
from ..config import default_timeout
from ..errors import NbmcpError, UsageError
from ..kernels.base import DEFAULT_TIMEOUT, KERNEL_START_TIMEOUT
from ..kernels.choice import choose_kernel
from .exec_report import CellLines, NotebookLines, report_many, report_one, say, shown
from .options import add_kernel_options, add_log_level_option, command_parser, configure_logging

__all__ = ["SKIPPED_DIRS", "ExitCode", "exec_cli"]

#: Folders never searched for notebooks when a folder is given (the MCP server's rule, plus checkpoints);
#: `_build` (Jupyter Book's and Sphinx's output) as nbmake skips it. Hidden folders (.ipynb_checkpoints) too.
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages", "build", "dist", "_build"})


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
    """Stopped by Ctrl+C (SIGINT): the kernels were shut down, the outputs of the cells that ran are saved."""
    TERMINATED = 143
    """Stopped by SIGTERM (a cancelled CI job), as SIGINT; 128 + 15, what a shell shows for papermill killed so."""


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
`skip-execution`, and lets a cell tagged `raises-exception` raise without stopping the run. As in
papermill, a cell calling sys.exit(0), sys.exit() or `raise SystemExit` ends the run early with
success, and the cells the run did not reach have their outputs cleared. The notebook's kernelspec
must be installed (else "No such kernel named ...", exit 4) unless --kernel or --python is given. The
notebook's metadata.execution.timeout and .allow_errors (nbmake's keys) apply unless a flag is given.

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
  {ExitCode.INTERRUPTED:<3}  interrupted with Ctrl+C (SIGINT): kernels shut down, the cells that ran keep their outputs
  {ExitCode.TERMINATED:<3}  stopped by SIGTERM (a cancelled CI job), cleaned up as for Ctrl+C

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
        ".ipynb_checkpoints skipped); - reads one from stdin (written to stdout unless -o is given)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "-o",
        "--output",
        metavar="OUTPUT",
        help="write the run into OUTPUT (replaced if it exists; - for stdout; {NAME} is parameter NAME's value, "
        "as in papermill) and leave the notebook itself untouched; one notebook only",
    )
    out.add_argument(
        "--inplace", action="store_true", help="write the run into the notebook itself (the default; jupyter execute's)"
    )
    out.add_argument(
        "--output-dir",
        metavar="DIR",
        help="write each run into DIR (keeping the notebooks' relative folders) and leave the notebooks untouched",
    )
    params = p.add_argument_group(
        "parameters (as papermill's -p, -r, -y, -f; its spellings too; values may start with '-': -p x -1e-3)"
    )
    params.add_argument(
        "-p", "--parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="a parameter"
    )
    params.add_argument(
        "-r",
        "--parameters-raw",
        "--parameters_raw",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter kept as a string",
    )
    params.add_argument(
        "-y",
        "--parameters-yaml",
        "--parameters_yaml",
        action="append",
        default=[],
        metavar="YAML",
        help="parameters as a YAML mapping",
    )
    params.add_argument(
        "-f",
        "--parameters-file",
        "--parameters_file",
        action="append",
        default=[],
        metavar="FILE",
        help="parameters from a YAML or JSON file",
    )
    params.add_argument(
        "-b",
        "--parameters-base64",
        "--parameters_base64",
        action="append",
        default=[],
        metavar="BASE64",
        help="parameters as a base64-encoded YAML mapping",
    )
    params.add_argument(
        "--inject-input-path", action="store_true", help="add the input's path as the parameter PAPERMILL_INPUT_PATH"
    )
    params.add_argument(
        "--inject-output-path", action="store_true", help="add the output's path as the parameter PAPERMILL_OUTPUT_PATH"
    )
    params.add_argument("--inject-paths", action="store_true", help="both of the above")
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
        "--junitxml",
        metavar="FILE",
        help="write a JUnit XML report: one testcase per notebook, a failing cell's traceback in its <failure>",
    )
    _add_run_options(p)
    # papermill's -k/--kernel, jupyter execute's --kernel_name and nbmake's --nbmake-kernel spell --kernel.
    add_kernel_options(p, "-k", "--kernel_name", "--kernel-name", "--nbmake-kernel")
    add_log_level_option(p, "WARNING", "nbmcp's own log lines on stderr")
    return p


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """How each cell and kernel runs; papermill's, jupyter execute's and nbmake's spellings beside nbmcp's."""
    p.add_argument(
        "--timeout",
        "--execution-timeout",
        "--execution_timeout",
        "--nbmake-timeout",
        metavar="SECONDS",
        type=float,
        help="time limit of each cell (default: the notebook's metadata.execution.timeout, else NBMCP_TIMEOUT, "
        f"else {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--allow-errors",
        action=argparse.BooleanOptionalAction,
        help="go on after a cell raises an exception (its traceback is saved in its outputs) and exit 0 "
        "(default: the notebook's metadata.execution.allow_errors, else no)",
    )
    p.add_argument(
        "--fail-on-error-output",
        action="store_true",
        help="a cell that shows an error output without raising (a traceback printed by a library) fails, as in nbmake",
    )
    p.add_argument(
        "--startup-timeout",
        "--startup_timeout",
        "--start-timeout",
        "--start_timeout",
        metavar="SECONDS",
        type=float,
        default=KERNEL_START_TIMEOUT,
        help="time the kernel may take to start (default: %(default)g)",
    )
    p.add_argument("--cwd", metavar="DIR", help="the kernel's working folder (default: the notebook's folder)")
    p.add_argument(
        "--prepare-only",
        "--prepare_only",
        action="store_true",
        help="write the notebook with its parameters and metadata, and run nothing (papermill's)",
    )
    p.add_argument(
        "--report-mode",
        "--report_mode",
        action="store_true",
        help="hide the code cells' input in the written notebook (papermill's)",
    )
    p.add_argument(
        "--log-output", "--log_output", action="store_true", help="show each cell's output text on stderr after it"
    )


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
                    f"--strict-parameters: {shown(path)} does not define parameter {name} ({where} does not "
                    "assign it); check the name"
                )
            say(f"warning: Passed unknown parameter: {name} ({shown(path)}: {where} does not assign it)")


#: The parameter options and how many values each takes: taken as they are, as papermill's command line
#: (click) takes them, even when they start with "-" (`-p x -inf`, `-p x -1e-3`, `-r x --y`), which
#: argparse would read as options.
VERBATIM_OPTIONS = {
    **dict.fromkeys(("-p", "--parameters", "-r", "--parameters-raw", "--parameters_raw"), 2),
    **dict.fromkeys(
        ("-y", "--parameters-yaml", "--parameters_yaml", "-f", "--parameters-file", "--parameters_file"), 1
    ),
}


def _protect_values(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """`args` with the values of the parameter options replaced by placeholders argparse takes as values."""
    out: list[str] = []
    verbatim: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        out.append(arg)
        i += 1
        if arg == "--":
            out += args[i:]
            break
        for value in args[i : i + VERBATIM_OPTIONS.get(arg, 0)]:
            key = f"\x00{len(verbatim)}"
            verbatim[key] = value
            out.append(key)
            i += 1
    return out, verbatim


def _restore(values: list[Any], verbatim: dict[str, str]) -> list[Any]:
    def one(value: Any) -> Any:
        if isinstance(value, list):
            return [one(v) for v in value]
        return verbatim.get(value, value)

    return [one(v) for v in values]


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


def _templated(path: str, parameters: dict[str, Any]) -> str:
    """papermill's output path templating: `out/{region}.ipynb` with the parameter `region`."""
    try:
        return path.format(**parameters)
    except KeyError as exc:
        name = exc.args[0]
        raise UsageError(f"-o {path} names parameter {name}, which is not given (-p {name} VALUE)") from None
    except (IndexError, ValueError) as exc:
        raise UsageError(f"-o {path}: {exc} (braces name parameters: out/{{region}}.ipynb)") from None


def _make_jobs(ns: argparse.Namespace, inputs: list[Path], parameters: dict[str, Any] | None) -> list[NotebookJob]:
    if ns.output:
        outputs = [Path(ns.output).expanduser().absolute()]
    elif ns.output_dir:
        outputs = output_paths(inputs, Path(ns.output_dir).expanduser().absolute())
    else:
        outputs = inputs
    recorded = ns.recorded_as if ns.output else (None, None)
    inject = (ns.inject_paths or ns.inject_input_path, ns.inject_paths or ns.inject_output_path)
    return [
        NotebookJob(i, o, parameters, recorded, inject_paths=inject, report_mode=ns.report_mode)
        for i, o in zip(inputs, outputs, strict=True)
    ]


def _options(ns: argparse.Namespace) -> RunOptions:
    return RunOptions(
        timeout=ns.timeout,
        allow_errors=ns.allow_errors,
        error_outputs_fail=ns.fail_on_error_output,
        default_timeout=default_timeout(),
        start_timeout=ns.startup_timeout,
        cwd=Path(ns.cwd).expanduser().absolute() if ns.cwd else None,
        prepare_only=ns.prepare_only,
    )


class _Stop:
    """SIGTERM and SIGINT end the run cleanly: the running cells are interrupted, the kernels shut down
    (their connection files removed), and what ran stays saved; the exit code is 128 + the signal."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.scope = anyio.CancelScope()

    def __enter__(self) -> _Stop:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # Windows, not the main thread
                loop.add_signal_handler(signum, self._stop, signum)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)

    def _stop(self, signum: int) -> None:
        if self.signal is None:
            self.signal = signum
            say(f"{signal.Signals(signum).name}: stopping; shutting the kernels down")
            self.scope.cancel()


async def _run(ns: argparse.Namespace, jobs: list[NotebookJob]) -> tuple[list[NotebookResult], float, int | None]:
    started = time.monotonic()
    options: dict[str, Any] = {
        "kernel_name": ns.kernel,
        "python": ns.python,
        "options": _options(ns),
        "max_jobs": ns.jobs,
    }
    results: list[NotebookResult] = []
    with _Stop() as stop, stop.scope:
        if len(jobs) == 1:
            results = await run_notebooks(jobs, reporter=CellLines(log_output=ns.log_output), **options)
        else:
            results = await _run_many(ns, jobs, options)
    return results, time.monotonic() - started, stop.signal


async def _run_many(ns: argparse.Namespace, jobs: list[NotebookJob], options: dict[str, Any]) -> list[NotebookResult]:
    live = sys.stderr.isatty()
    lines = NotebookLines(len(jobs), sys.stderr, live=live)
    say(f"running {len(jobs)} notebooks, {min(ns.jobs, len(jobs))} at a time")
    try:
        async with anyio.create_task_group() as tg:
            if live:
                tg.start_soon(lines.refresh)
            results = await run_notebooks(jobs, reporter=lines, **options)
            tg.cancel_scope.cancel()
    finally:
        lines.close()
    return results


def exec_cli(*args: str) -> int:
    """Run `nbmcp exec` with command-line `args` (those after "exec"); returns the exit code."""
    parser = _parser()
    protected, verbatim = _protect_values(args)
    ns = parser.parse_args(protected)
    for name in ("parameters", "parameters_raw", "parameters_yaml", "parameters_file", "parameters_base64"):
        setattr(ns, name, _restore(getattr(ns, name), verbatim))
    if ns.timeout is not None and ns.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    if ns.startup_timeout <= 0:
        parser.error("--startup-timeout must be a positive number of seconds")
    if ns.cwd and not Path(ns.cwd).expanduser().is_dir():
        parser.error(f"--cwd {ns.cwd}: no such folder")
    configure_logging(ns.log_level)
    with tempfile.TemporaryDirectory(prefix="nbmcp-exec-") as scratch:
        return _exec(parser, ns, Path(scratch))


def _exec(parser: argparse.ArgumentParser, ns: argparse.Namespace, scratch: Path) -> int:
    """The command, once its arguments are read; `scratch` holds a notebook read from stdin or bound for stdout."""
    ns.recorded_as = (None, None)
    if ns.paths == ["-"]:
        # papermill's `-`: the notebook comes on stdin; it runs in the current folder, and goes to stdout
        # unless -o says otherwise.
        (scratch / "stdin.ipynb").write_bytes(sys.stdin.buffer.read())
        ns.paths, ns.cwd = [str(scratch / "stdin.ipynb")], ns.cwd or os.getcwd()
        ns.recorded_as = ("-", None)
        if not ns.output and not ns.output_dir:
            ns.output = "-"
    to_stdout = ns.output == "-"
    if to_stdout:
        ns.output = str(scratch / "stdout.ipynb")
        ns.recorded_as = (ns.recorded_as[0], "-")
    skip = Path(ns.output_dir).expanduser().absolute() if ns.output_dir else None
    inputs, problem = _find_notebooks(ns.paths, skip)
    if problem:
        say(f"error: {problem}")
        return ExitCode.USAGE
    if ns.output and len(inputs) > 1:
        parser.error(f"-o names one output file, but {len(inputs)} notebooks were given; use --output-dir DIR")
    code = _exec_jobs(ns, inputs)
    if to_stdout and Path(ns.output).exists():
        sys.stdout.buffer.write(Path(ns.output).read_bytes())
        sys.stdout.flush()
    return code


def _exec_jobs(ns: argparse.Namespace, inputs: list[Path]) -> int:
    started_at = datetime.now(timezone.utc)
    try:
        given = ns.parameters or ns.parameters_raw or ns.parameters_yaml or ns.parameters_file or ns.parameters_base64
        given = given or ns.inject_paths or ns.inject_input_path or ns.inject_output_path
        parameters = (
            merge_parameters(
                base64_texts=ns.parameters_base64,
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
            if ns.output:
                ns.output = _templated(ns.output, parameters)
        if ns.kernel or ns.python:
            choose_kernel(kernel_name=ns.kernel, python=ns.python)  # a bad one fails once, before any run
        jobs = _make_jobs(ns, inputs, parameters)
        if len({j.output for j in jobs}) < len(jobs) or any(
            j.output in {k.input for k in jobs} and not j.in_place for j in jobs
        ):
            raise NbmcpError("two notebooks would be written to the same file; choose another --output-dir")
        results, elapsed, stopped_by = anyio.run(_run, ns, jobs, backend="asyncio")
    except NbmcpError as exc:
        say(f"error: {exc}")
        return ExitCode.USAGE
    except KeyboardInterrupt:
        say("interrupted")
        return ExitCode.INTERRUPTED
    if stopped_by is not None:
        where = ", ".join(shown(j.output) for j in jobs)
        say(f"stopped by {signal.Signals(stopped_by).name}; the outputs of the cells that ran are saved in {where}")
        return 128 + stopped_by
    if len(results) == 1:
        report_one(results[0])
    else:
        report_many(results, elapsed)
    if ns.junit_xml:
        from ..ci.junit import write_junit_xml

        report = Path(ns.junit_xml).expanduser()
        write_junit_xml(report, results, started=started_at)
        say(f"wrote JUnit report {shown(report)}")
    return max(_EXIT_BY_STATUS[r.status] for r in results)
