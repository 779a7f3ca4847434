"""`nbmcp exec`: a headless run on a real kernel, checked against nbclient on the same notebook."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from nbmcp.cli import exec_report
from nbmcp.cli.exec import ExitCode
from nbmcp.cli.main import cli

from .conftest import copy_golden, read_nb

GOLDEN = "exec_golden.ipynb"


def _normalised(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """The cells minus what legitimately differs between two runs: ids and nbclient's timing metadata."""
    cells = []
    for cell in nb.cells:
        cell = copy.deepcopy(dict(cell))
        cell.pop("id", None)
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k != "execution"}
        cells.append(cell)
    return cells


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title")])
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_exec_writes_the_outputs_nbclient_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ours = copy_golden(GOLDEN, tmp_path / "work" / "ours.ipynb")
    theirs = copy_golden(GOLDEN, tmp_path / "work" / "theirs.ipynb")

    assert cli("exec", str(ours), "--timeout", "60") == ExitCode.OK, capsys.readouterr().err

    nb = read_nb(theirs)
    # coalesce_streams: nbmcp merges a cell's consecutive stream outputs and resolves "\r", as
    # JupyterLab's saved files do. nbclient's coalescing differs in three ways the golden notebook
    # avoids: it merges same-name streams even across a display, it puts stdout before stderr, and its
    # backspace pass never runs (its loop condition is false on entry; its regex r"[^\n]\b" would eat
    # the last letter of every word if it did). nbmcp resolves real backspaces ("\x08").
    NotebookClient(
        nb, timeout=60, coalesce_streams=True, resources={"metadata": {"path": str(theirs.parent)}}
    ).execute()
    nbformat.validate(nb)

    got, expected = _normalised(read_nb(ours)), _normalised(nb)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"cell {i} differs"
    # The comparison is not vacuous: every rule the golden notebook exercises produced its output.
    cells = read_nb(ours).cells
    assert [c.get("execution_count") for c in cells if c.cell_type == "code"] == [1, None, 2, 3, 4, 5, 6, 7, 99, 8, 9]
    assert cells[1].outputs[1].data["text/plain"] == "42"
    assert cells[3].outputs == [nbformat.v4.new_output("stream", name="stdout", text="done\n")]
    assert cells[4].outputs[0].name == "stderr"
    assert "text/html" in cells[5].outputs[0].data and "image/png" in cells[6].outputs[0].data
    assert [o.text for o in cells[7].outputs] == ["step 2\n"]
    assert cells[8].outputs[0].data["text/plain"] == "'final'"
    assert cells[9].outputs[0].text == "an old output, kept\n"
    assert cells[10].outputs[0].ename == "ValueError"
    assert cells[12].outputs[0].text == "old output replaced\n"


def test_progress_goes_to_stderr_and_stdout_stays_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _notebook(tmp_path / "work" / "nb.ipynb", "a = 1", "print(a + 1)")
    assert cli("exec", str(path)) == ExitCode.OK
    out, err = capsys.readouterr()
    assert out == ""
    assert "[1/2] cell 1 (id " in err and "[2/2] cell 2 (id " in err and "elapsed" in err
    assert "ran 2 code cells" in err
    assert read_nb(path).cells[2].outputs[0].text == "2\n"


def test_a_failing_cell_stops_the_run_with_exit_1_naming_the_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _notebook(
        tmp_path / "work" / "nb.ipynb",
        "print('before')",
        "def f():\n    raise ValueError('boom')\nf()",
        "print('after')",
    )
    failing_id = read_nb(path).cells[2].id
    assert cli("exec", str(path)) == ExitCode.CELL_ERROR == 1
    err = capsys.readouterr().err
    assert f"FAILED: cell 2 (id {failing_id}) raised an exception" in err
    assert "ValueError: boom" in err and "----> 3 f()" in err and "\x1b[" not in err
    cells = read_nb(path).cells
    assert cells[1].outputs[0].text == "before\n"
    assert cells[2].outputs[0].output_type == "error" and cells[2].execution_count == 2
    assert cells[3].outputs == [] and cells[3].execution_count is None  # never run


def test_allow_errors_exits_0_and_keeps_the_error_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _notebook(tmp_path / "work" / "nb.ipynb", "1/0", "print('after')")
    assert cli("exec", str(path), "--allow-errors") == ExitCode.OK
    assert "1 raised (allowed): cell 1" in capsys.readouterr().err
    cells = read_nb(path).cells
    assert cells[1].outputs[0].ename == "ZeroDivisionError"
    assert cells[2].outputs[0].text == "after\n" and cells[2].execution_count == 2


def test_a_cell_past_the_timeout_exits_3_even_with_allow_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _notebook(tmp_path / "work" / "nb.ipynb", "import time; time.sleep(30)", "print('never')")
    assert cli("exec", str(path), "--timeout", "1", "--allow-errors") == ExitCode.TIMEOUT
    err = capsys.readouterr().err
    assert "cell 1" in err and "timed out after 1 s" in err
    assert read_nb(path).cells[2].outputs == []


def test_a_dead_kernel_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _notebook(tmp_path / "work" / "nb.ipynb", "import os; os._exit(1)")
    assert cli("exec", str(path)) == ExitCode.KERNEL
    assert "killed the kernel" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.ipynb"], "is not a file"),
        (["nb.ipynb", "--kernel", "no-such-kernel"], "no kernel named 'no-such-kernel'"),
        (["bad.ipynb"], "not a valid Jupyter notebook"),
    ],
)
def test_usage_problems_exit_2_and_run_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path / "work")
    _notebook(tmp_path / "work" / "nb.ipynb", "print(1)")
    (tmp_path / "work" / "bad.ipynb").write_text("{not json")
    assert cli("exec", *args) == ExitCode.USAGE
    assert message in capsys.readouterr().err
    assert read_nb(tmp_path / "work" / "nb.ipynb").cells[1].outputs == []


def test_heartbeat_lines_while_a_long_cell_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert exec_report.HEARTBEAT_INTERVAL == 10.0
    monkeypatch.setattr(exec_report, "HEARTBEAT_INTERVAL", 0.5)
    path = _notebook(tmp_path / "work" / "nb.ipynb", "import time\nprint('working', flush=True)\ntime.sleep(1.6)")
    assert cli("exec", str(path)) == ExitCode.OK
    err = capsys.readouterr().err
    assert "[1/1] cell 1 (id " in err and "still running after" in err and "latest output: working" in err


def test_exit_codes_are_documented_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli("exec", "--help")
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for code in ExitCode:
        assert f"\n  {int(code):<3}  " in help_text, code
    cli_help = Path(__file__).parent.parent / "README.md"
    readme = cli_help.read_text()
    start = readme.index("Exit codes (")
    line = readme[start : readme.index("\n\n", start)]
    for code in ExitCode:
        assert re.search(rf"\b{int(code)}\s[a-zA-Z]", line), code


def test_plain_nbmcp_path_still_rejects_a_non_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `exec` is only a subcommand as the first argument; `nbmcp PATH` parses exactly as before.
    assert cli(str(tmp_path / "work" / "notes.txt")) == 2
    assert "does not end in .ipynb" in capsys.readouterr().err


def _v4_4(path: Path, *sources: str) -> bytes:
    """A 4.4 notebook (no cell ids) as an older Jupyter saved it; returns its bytes."""
    raw = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s} for s in sources
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    nbformat.write(nbformat.from_dict(raw), path)
    return path.read_bytes()


def test_runs_keep_the_format_of_the_file_they_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In place and with -o, as `jupyter execute --inplace` does: no cell ids added, nbformat_minor kept
    (issue 26: git noise); the copy has ids only when the input had them."""
    old = tmp_path / "work" / "old.ipynb"
    _v4_4(old, "print(1)", "parameters = 0")
    assert cli("exec", str(old)) == ExitCode.OK, capsys.readouterr().err
    assert cli("exec", str(old), "-o", str(tmp_path / "copy.ipynb"), "-p", "x", "2") == ExitCode.OK
    for path, first in ((old, 0), (tmp_path / "copy.ipynb", 1)):  # the copy starts with the injected cell
        raw = json.loads(path.read_text())
        assert raw["nbformat_minor"] == 4
        assert not any("id" in c for c in raw["cells"])
        assert raw["cells"][first]["outputs"] == [{"name": "stdout", "output_type": "stream", "text": ["1\n"]}]
    assert read_nb(tmp_path / "copy.ipynb").cells[0].source.startswith("# Parameters")
    new = _notebook(tmp_path / "work" / "new.ipynb", "print(2)")
    assert cli("exec", str(new), "-o", str(tmp_path / "new-copy.ipynb")) == ExitCode.OK
    ids = [c.id for c in read_nb(new).cells]
    assert [c.get("id") for c in read_nb(tmp_path / "new-copy.ipynb").cells] == ids
