"""`nbmcp exec` gives the verdicts papermill and nbmake give (issue 26), checked against them in the same test.

Each test runs the same notebook through nbmcp (a real kernel) and through papermill's Python API or
`pytest --nbmake` (a real subprocess), and compares what a CI job sees: passed or failed, the message,
which cells ran and what the written notebook keeps.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from jupyter_client.kernelspec import NoSuchKernel
from mcp import Client

from nbmcp import KernelStartError, NoSuchKernelError, Notebook, NotebookSession
from nbmcp.cli.exec import ExitCode
from nbmcp.cli.main import cli
from nbmcp.config import Settings
from nbmcp.kernels.choice import choose_kernel
from nbmcp.server.app import build_server

from .conftest import read_nb, text_of

PYTHON = {"name": "python3", "display_name": "Python 3", "language": "python"}
R = {"name": "ir", "display_name": "R", "language": "R"}


def _nb(path: Path, *cells: Any, kernelspec: dict[str, str] | None = None, execution: Any = None) -> Path:
    """A notebook of code cells: a source, or (source, tags), or (source, tags, stale outputs)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title")])
    for cell in cells:
        source, tags, stale = (cell, [], None) if isinstance(cell, str) else (*cell, None)[:3]
        code = nbformat.v4.new_code_cell(source)
        if tags:
            code.metadata["tags"] = tags
        if stale:
            code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stale)]
            code.execution_count = 41
        nb.cells.append(code)
    nb.metadata["kernelspec"] = kernelspec or PYTHON
    if execution is not None:
        nb.metadata["execution"] = execution
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _papermill(source: Path, out: Path) -> Exception | None:
    """Run papermill on `source`; the exception it raised, if any."""
    try:
        papermill.execute_notebook(str(source), str(out), progress_bar=False, cwd=str(source.parent))
    except Exception as exc:
        return exc
    return None


def _nbmake(*paths: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`pytest --nbmake PATHS` in a subprocess (nbmake is a pytest plugin)."""
    return subprocess.run(
        # No ini file (-c): nothing found above the temporary folder changes how nbmake runs.
        [sys.executable, "-m", "pytest", "--nbmake", "-c", os.devnull, "-p", "no:cacheprovider", *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _codes(nb: nbformat.NotebookNode) -> list[int | None]:
    return [c.execution_count for c in nb.cells if c.cell_type == "code"]


# -- a kernel that is not installed -------------------------------------------------------------------


def test_a_kernel_that_is_not_installed_fails_as_in_papermill_and_nbmake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    # Valid Python in an R notebook: it used to run on Python and pass.
    r_nb = _nb(work / "r" / "analysis.ipynb", "print(1)", kernelspec=R)
    no_code = _nb(work / "empty" / "notes.ipynb", kernelspec=R)

    assert cli("exec", str(r_nb)) == ExitCode.KERNEL
    err = capsys.readouterr().err
    assert "No such kernel named ir" in err and "installed kernels: " in err and "python3" in err, err
    assert "--kernel NAME" in err
    assert read_nb(r_nb).cells[1].outputs == []  # nothing ran
    # A notebook without code cells fails too: the kernel is what is checked, as the peers start it.
    assert cli("exec", str(no_code)) == ExitCode.KERNEL

    theirs = _papermill(r_nb, tmp_path / "papermill.ipynb")
    assert isinstance(theirs, NoSuchKernel) and "No such kernel named ir" in str(theirs)
    done = _nbmake(r_nb, cwd=work)
    assert done.returncode == 1 and "No such kernel: 'ir'" in done.stdout, done.stdout

    # --kernel overrides the metadata, as papermill's -k and nbmake's --kernel do.
    assert cli("exec", str(r_nb), "--kernel", "python3") == ExitCode.OK
    assert read_nb(r_nb).cells[1].outputs[0].text == "1\n"


def test_a_python_notebook_with_a_foreign_kernelspec_fails_headless_but_is_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A kernelspec made on another machine (nb_conda_kernels): papermill fails it, so exec does; the
    # MCP server keeps running it on the project's Python, as it chooses for `python3`.
    conda = {"name": "conda-env-old-py", "display_name": "Python [conda env:old]", "language": "python"}
    path = _nb(tmp_path / "work" / "nb.ipynb", "print(6 * 7)", kernelspec=conda)
    assert cli("exec", str(path)) == ExitCode.KERNEL
    assert "No such kernel named conda-env-old-py" in capsys.readouterr().err
    with Notebook(path, create=False) as nb:
        assert nb.execute_cell(1).result.outputs[0].text == "42\n"


@pytest.mark.parametrize(
    "language, strict, fails",
    [
        ("R", False, True),
        ("julia", False, True),
        ("python", False, False),
        ("Python3", False, False),
        (None, False, False),
        ("python", True, True),
        (None, True, True),
    ],
)
def test_which_missing_kernelspecs_stop_the_choice(
    tmp_path: Path, language: str | None, strict: bool, fails: bool
) -> None:
    # The server runs a Python notebook with a foreign kernelspec on the project's Python; anything else
    # (or any headless run, as papermill) stops with the installed kernels named.
    choose = functools.partial(
        choose_kernel, notebook_kernel="gone", notebook_language=language, strict=strict, notebook_dir=tmp_path
    )
    if fails:
        with pytest.raises(NoSuchKernelError, match=r"No such kernel named gone: .*installed kernels: .*python3"):
            choose()
    else:
        assert choose().name != "gone"


@pytest.mark.anyio
async def test_the_server_serves_an_r_notebook_and_each_execution_names_the_missing_kernel(
    tmp_path: Path,
) -> None:
    path = _nb(tmp_path / "work" / "analysis.ipynb", "print(1)", kernelspec=R)
    session = NotebookSession(path)
    await session.open()
    try:
        assert (await session.info())["kernel"]["state"] == "failed"
        with pytest.raises(KernelStartError, match="No such kernel named ir"):
            await session.execute_cell(1)
    finally:
        await session.close()
    async with Client(build_server(Settings(path=path, timeout=60))) as client:
        read = await client.call_tool("read_cell", {"cell_index": 1})
        assert not read.is_error and "print(1)" in text_of(read)
        ran = await client.call_tool("execute_cell", {"cell_index": 1})
        assert ran.is_error
        assert "No such kernel named ir" in text_of(ran) and "python3" in text_of(ran)


# -- sys.exit(0): an early end, with success ------------------------------------------------------------


@pytest.mark.parametrize(
    "exit_code, evalue", [("sys.exit(0)", "0"), ("sys.exit()", ""), ("raise SystemExit", "")], ids=str
)
def test_a_clean_system_exit_ends_the_run_with_success_as_in_papermill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], exit_code: str, evalue: str
) -> None:
    source = _nb(
        tmp_path / "work" / "nb.ipynb", "import sys\nprint('before')", exit_code, ("print('after')", [], "stale\n")
    )
    ours, theirs = tmp_path / "work" / "ours.ipynb", tmp_path / "work" / "theirs.ipynb"

    assert cli("exec", str(source), "-o", str(ours)) == ExitCode.OK, capsys.readouterr().err
    assert _papermill(source, theirs) is None

    for nb in (read_nb(ours), read_nb(theirs)):
        assert _codes(nb) == [1, 2, None]  # the cell after the exit did not run
        exit_outputs = [(o.ename, o.evalue) for o in nb.cells[2].outputs if o.output_type == "error"]
        assert exit_outputs == [("SystemExit", evalue)]  # recorded in the cell, as papermill keeps it
        assert nb.cells[3].outputs == []  # the stale output of a cell the run did not reach is gone
        assert nb.metadata.papermill["exception"] is True
    assert "ended the run with SystemExit" in capsys.readouterr().err


def test_sys_exit_1_fails_as_in_papermill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _nb(tmp_path / "work" / "nb.ipynb", "import sys; sys.exit(1)", "print('after')")
    assert cli("exec", str(source), "-o", str(tmp_path / "work" / "ours.ipynb")) == ExitCode.CELL_ERROR
    assert "SystemExit" in capsys.readouterr().err
    assert isinstance(_papermill(source, tmp_path / "work" / "theirs.ipynb"), papermill.PapermillExecutionError)


# -- the notebook's own execution settings, folders, outputs below a failure ----------------------------


def test_the_notebooks_execution_timeout_and_allow_errors_apply_unless_a_flag_says_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    slow = _nb(work / "slow" / "slow.ipynb", "import time; time.sleep(3)", execution={"timeout": 1})
    shows = _nb(work / "shows" / "errors.ipynb", "1/0", "print('after')", execution={"allow_errors": True})
    done = _nbmake(slow, shows, cwd=work)
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    assert "slow.ipynb::slow.ipynb FAILED" in done.stdout or "FAILED slow/slow.ipynb" in done.stdout

    assert cli("exec", str(slow)) == ExitCode.TIMEOUT
    assert "timed out after 1 s" in capsys.readouterr().err
    assert cli("exec", str(slow), "--timeout", "30") == ExitCode.OK
    assert cli("exec", str(shows)) == ExitCode.OK
    assert read_nb(shows).cells[2].outputs[0].text == "after\n"
    assert cli("exec", str(shows), "--no-allow-errors") == ExitCode.CELL_ERROR

    bad = _nb(work / "bad.ipynb", "print(1)", execution={"timeout": "soon"})
    capsys.readouterr()
    assert cli("exec", str(bad)) == ExitCode.USAGE
    assert "metadata.execution.timeout is 'soon'" in capsys.readouterr().err


def test_a_folder_skips_build_output_and_checkpoints_as_nbmake_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "work" / "book"
    _nb(root / "intro.ipynb", "print('intro')")
    _nb(root / "chapters" / "one.ipynb", "print('one')")
    _nb(root / "_build" / "jupyter_execute" / "intro.ipynb", "raise RuntimeError('a build copy ran')")
    _nb(root / ".ipynb_checkpoints" / "intro-checkpoint.ipynb", "raise RuntimeError('a checkpoint ran')")

    assert cli("exec", str(root)) == ExitCode.OK, capsys.readouterr().err
    assert "2 of 2 notebooks passed" in capsys.readouterr().err
    assert "2 passed" in _nbmake(root, cwd=root).stdout


def test_outputs_of_cells_the_run_did_not_reach_are_cleared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _nb(
        tmp_path / "work" / "nb.ipynb",
        "print('before')",
        "raise ValueError('boom')",
        ("print('after')", [], "from the last run\n"),
        ("print('kept')", ["skip-execution"], "shown on purpose\n"),
    )
    ours, theirs = tmp_path / "work" / "ours.ipynb", tmp_path / "work" / "theirs.ipynb"
    assert cli("exec", str(source), "-o", str(ours)) == ExitCode.CELL_ERROR
    assert isinstance(_papermill(source, theirs), papermill.PapermillExecutionError)
    mine = read_nb(ours)
    papermills = [c for c in read_nb(theirs).cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    assert mine.cells[3].outputs == papermills[3].outputs == []
    assert mine.cells[3].execution_count is papermills[3].execution_count is None
    # A cell tagged skip-execution never runs: its outputs are the notebook's, not a run's (nbclient keeps them).
    assert mine.cells[4].outputs[0].text == "shown on purpose\n"
    # The input keeps its outputs (a run with -o never writes it).
    assert read_nb(source).cells[3].outputs[0].text == "from the last run\n"


SHOWS_A_TRACEBACK = "try:\n    1/0\nexcept ZeroDivisionError:\n    get_ipython().showtraceback()"


def test_fail_on_error_output_fails_a_cell_that_shows_a_traceback_without_raising(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _nb(tmp_path / "work" / "nb.ipynb", SHOWS_A_TRACEBACK, "print('after')")
    # Off by default, as in nbclient and papermill: the cell did not raise.
    assert cli("exec", str(path)) == ExitCode.OK
    assert read_nb(path).cells[2].outputs[0].text == "after\n"
    capsys.readouterr()
    # nbmake's rule, on request.
    assert cli("exec", str(path), "--fail-on-error-output") == ExitCode.CELL_ERROR
    err = capsys.readouterr().err
    assert "FAILED: cell 1" in err and "ZeroDivisionError" in err and "--fail-on-error-output" in err
    assert read_nb(path).cells[2].outputs == []
    done = _nbmake(path, cwd=path.parent)
    assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout
