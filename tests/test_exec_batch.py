"""`nbmcp exec` for CI, round two (issue 16): parameters, output files, several notebooks, JUnit XML."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

from nbmcp import CellExecutionError, Notebook
from nbmcp.ci.batch import NotebookJob, NotebookResult, output_paths
from nbmcp.ci.parameters import INJECTED_TAG
from nbmcp.cli.exec import ExitCode
from nbmcp.cli.exec_report import NotebookLines
from nbmcp.cli.main import cli
from nbmcp.session.results import CellRef

from .conftest import read_nb


def _notebook(path: Path, *cells: str | tuple[str, list[str]]) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# report")])
    for cell in cells:
        source, tags = cell if isinstance(cell, tuple) else (cell, [])
        code = nbformat.v4.new_code_cell(source)
        if tags:
            code.metadata["tags"] = tags
        nb.cells.append(code)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _report(path: Path) -> Path:
    """A papermill-style report: defaults in a cell tagged `parameters`, a result that depends on them."""
    return _notebook(
        path,
        ("alpha = 1\nlabel = 'default'", ["parameters"]),
        "import os\nprint(os.getcwd())",
        "print(label, alpha * 2)",
    )


def test_parameters_and_an_output_file_leave_the_input_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _report(tmp_path / "work" / "src" / "report.ipynb")
    before = source.read_bytes()
    out = tmp_path / "work" / "out" / "report-21.ipynb"

    code = cli("exec", str(source), "-p", "alpha", "21", "-p", "label", "run", "-o", str(out), "--timeout", "60")

    assert code == ExitCode.OK, capsys.readouterr().err
    assert source.read_bytes() == before
    nb = read_nb(out)
    assert [c.metadata.get("tags", []) for c in nb.cells[:3]] == [[], ["parameters"], [INJECTED_TAG]]
    assert nb.cells[2].source == '# Parameters\nalpha = 21\nlabel = "run"\n'
    assert nb.cells[2].execution_count == 2  # it ran, after the defaults
    assert nb.cells[-1].outputs[0].text == "run 42\n"
    # The kernel runs in the input's folder, where the notebook's relative paths point.
    assert nb.cells[3].outputs[0].text == f"{source.parent}\n"
    meta = nb.metadata["papermill"]
    assert meta["parameters"] == {"alpha": 21, "label": "run"}
    assert meta["input_path"] == str(source) and meta["output_path"] == str(out)
    assert meta["exception"] is None and meta["duration"] > 0
    assert meta["start_time"] < meta["end_time"]
    assert "into " in capsys.readouterr().err


def test_notebook_run_is_the_same_from_python(tmp_path: Path) -> None:
    source = _report(tmp_path / "work" / "report.ipynb")
    before = source.read_bytes()
    out = tmp_path / "work" / "runs" / "report.ipynb"

    result = Notebook.run(source, out, parameters={"alpha": 5, "label": "api"}, timeout=60)

    assert result.ok and result.status == "passed" and result.cells_run == 4 == result.cells_total
    assert source.read_bytes() == before
    assert read_nb(out).cells[-1].outputs[0].text == "api 10\n"

    failing = _notebook(tmp_path / "work" / "failing.ipynb", ("n = 0", ["parameters"]), "1 / n")
    with pytest.raises(CellExecutionError) as exc:
        Notebook.run(failing, parameters={"n": 0}, timeout=60)  # in place
    assert exc.value.index == 3 and "ZeroDivisionError" in exc.value.traceback
    nb = read_nb(failing)
    assert nb.cells[2].metadata["tags"] == [INJECTED_TAG] and nb.metadata["papermill"]["exception"] is True
    assert not Notebook.run(failing, parameters={"n": 0}, timeout=60, check=False).ok
    assert [c.metadata.get("tags") for c in read_nb(failing).cells].count([INJECTED_TAG]) == 1  # replaced


def _check_junit_schema(root: ET.Element) -> None:
    """The rules of the Ant JUnit schema (the strict one), which Jenkins' looser schema also accepts."""
    assert root.tag == "testsuites" and not root.attrib
    for suite in root:
        assert suite.tag == "testsuite"
        for name in ("name", "package", "id", "timestamp", "hostname", "tests", "failures", "errors", "time"):
            assert suite.get(name), name
        assert set(suite.attrib) <= {
            "name",
            "package",
            "id",
            "timestamp",
            "hostname",
            "tests",
            "failures",
            "errors",
            "time",
            "skipped",
        }
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp", ""))
        for name in ("id", "tests", "failures", "errors"):
            int(suite.get(name, ""))
        float(suite.get("time", ""))
        tags = [child.tag for child in suite]
        assert tags[0] == "properties" and tags[-2:] == ["system-out", "system-err"]
        assert set(tags[1:-2]) <= {"testcase"}
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "")) == len(cases)
        assert int(suite.get("failures", "")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(suite.get("errors", "")) == sum(1 for c in cases if c.find("error") is not None)
        for case in cases:
            assert set(case.attrib) == {"name", "classname", "time"}
            float(case.get("time", ""))
            assert len(case) <= 1 and all(child.tag in ("failure", "error", "skipped") for child in case)
            for child in case:
                assert child.get("type")


def test_two_notebooks_in_parallel_one_failing_exit_1_with_a_junit_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path / "work")
    good = _notebook(tmp_path / "work" / "reports" / "weekly" / "good.ipynb", "print('fine')")
    bad = _notebook(tmp_path / "work" / "checks" / "bad.ipynb", "x = 1", "def f():\n    raise ValueError('boom')\nf()")
    bad_id = read_nb(bad).cells[2].id

    code = cli("exec", str(good), str(bad), "--jobs", "2", "--junit-xml", "out/junit.xml", "--timeout", "60")

    err = capsys.readouterr().err
    assert code == ExitCode.CELL_ERROR, err
    # One line per notebook as it finishes (stderr is not a terminal here), then the summary table.
    assert "PASSED reports/weekly/good.ipynb (1/1 cells" in err
    assert "FAILED checks/bad.ipynb (2/2 cells, " in err and f"cell 2 (id {bad_id}) raised ValueError" in err
    assert re.search(r"notebook\s+cells run\s+time\s+result\n", err)
    assert re.search(r"reports/weekly/good.ipynb\s+1/1\s+[\d.]+ s\s+passed\n", err)
    assert "1 of 2 notebooks passed" in err and "ValueError: boom" in err and "\x1b[" not in err

    data = (tmp_path / "work" / "out" / "junit.xml").read_bytes()
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(data)
    _check_junit_schema(root)
    suite = root[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["good.ipynb"].get("classname") == "reports.weekly" and len(cases["good.ipynb"]) == 0
    failing = cases["bad.ipynb"]
    assert failing.get("classname") == "checks" and float(failing.get("time", "0")) > 0
    failure = failing.find("failure")
    assert failure is not None and failure.get("type") == "ValueError"
    assert failure.get("message") == f"cell 2 (id {bad_id}) raised ValueError: boom"
    assert failure.text is not None and failure.text.startswith(f"cell 2 (id {bad_id})\n")
    assert "----> 3 f()" in failure.text and "ValueError: boom" in failure.text and "\x1b" not in failure.text
    # Each notebook ran in place, on a kernel of its own.
    assert read_nb(good).cells[1].outputs[0].text == "fine\n"
    assert "papermill" not in read_nb(good).metadata  # a plain re-run records no run metadata


def test_output_dir_keeps_the_inputs_relative_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = [
        _notebook(tmp_path / "work" / "nbs" / "a" / "nb.ipynb", "print(alpha)"),
        _notebook(tmp_path / "work" / "nbs" / "b" / "nb.ipynb", "print(alpha + 1)"),
    ]
    before = [p.read_bytes() for p in inputs]
    out = tmp_path / "work" / "executed"
    assert output_paths(inputs, out) == [out / "a" / "nb.ipynb", out / "b" / "nb.ipynb"]
    assert output_paths(inputs[:1], out) == [out / "nb.ipynb"]

    # A folder argument means every notebook under it; -y gives both the same parameters.
    code = cli("exec", str(tmp_path / "work" / "nbs"), "--output-dir", str(out), "-y", "alpha: 41", "--jobs", "auto")

    assert code == ExitCode.OK, capsys.readouterr().err
    assert [p.read_bytes() for p in inputs] == before
    assert read_nb(out / "a" / "nb.ipynb").cells[-1].outputs[0].text == "41\n"
    assert read_nb(out / "b" / "nb.ipynb").cells[-1].outputs[0].text == "42\n"

    # Runs written inside the folder given are not picked up as notebooks by the next run.
    inside = tmp_path / "work" / "nbs" / "executed"
    assert cli("exec", str(tmp_path / "work" / "nbs"), "--output-dir", str(inside), "-p", "alpha", "1", "-j", "2") == 0
    assert cli("exec", str(tmp_path / "work" / "nbs"), "--output-dir", str(inside), "-p", "alpha", "2", "-j", "2") == 0
    assert sorted(p.relative_to(inside).as_posix() for p in inside.rglob("*.ipynb")) == ["a/nb.ipynb", "b/nb.ipynb"]
    assert "running 2 notebooks" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-p", "bad-name", "1"], "'bad-name': a name must be a Python identifier"),
        (["-y", "[1, 2]"], "must be a YAML mapping"),
        (["--kernel", "no-such-kernel"], "no kernel named 'no-such-kernel'"),
        (["missing.ipynb"], "is not a file"),
        (["empty"], "is a folder with no notebook"),
    ],
)
def test_bad_arguments_exit_2_before_any_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path / "work")
    (tmp_path / "work" / "empty").mkdir()
    nb = _notebook(tmp_path / "work" / "nb.ipynb", "print(1)")
    before = nb.read_bytes()
    assert cli("exec", "nb.ipynb", *extra) == ExitCode.USAGE
    assert message in capsys.readouterr().err
    assert nb.read_bytes() == before


def test_one_output_file_for_two_notebooks_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _notebook(tmp_path / "work" / "a.ipynb", "1")
    b = _notebook(tmp_path / "work" / "b.ipynb", "2")
    with pytest.raises(SystemExit) as exc:
        cli("exec", str(a), str(b), "-o", str(tmp_path / "work" / "out.ipynb"))
    assert exc.value.code == ExitCode.USAGE
    assert "use --output-dir DIR" in capsys.readouterr().err


@pytest.mark.anyio
async def test_a_terminal_gets_a_live_display_redrawn_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stream = io.StringIO()
    lines = NotebookLines(2, stream, live=True)
    a, b = (NotebookJob(tmp_path / n, tmp_path / n) for n in ("a.ipynb", "b.ipynb"))
    await lines.notebook_started(a)
    await lines.notebook_started(b)
    await lines.cell_started(a, 2, 5, CellRef(3, "c3", "code"))
    lines._write("")  # what the refresh task does every LIVE_REFRESH seconds
    drawn = stream.getvalue()
    assert "running 2, done 0/2, failed 0\n" in drawn
    assert re.search(r"a\.ipynb  cell 2/5  [\d.]+ s\n", drawn) and "b.ipynb  starting" in drawn
    await lines.notebook_finished(NotebookResult(a, None, 1.5))
    after = stream.getvalue()[len(drawn) :]
    # The 3 lines drawn are erased (cursor up 3, clear to the end), the finished line printed for good,
    # and the display drawn again below it with what still runs.
    assert after.startswith("\x1b[3F\x1b[J") and "[1/2] PASSED" in after
    assert after.endswith("running 1, done 1/2, failed 0\n  b.ipynb  starting  0.0 s\n")
    lines.close()
    assert stream.getvalue().endswith("\x1b[2F\x1b[J")

    plain = io.StringIO()
    quiet = NotebookLines(1, plain, live=False)
    await quiet.notebook_started(a)
    await quiet.notebook_finished(NotebookResult(a, None, 1.5))
    assert "\x1b" not in plain.getvalue() and plain.getvalue().count("\n") == 1


@pytest.mark.anyio
async def test_a_ci_log_gets_a_still_running_line_now_and_then(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stream = io.StringIO()
    lines = NotebookLines(2, stream, live=False)
    job = NotebookJob(tmp_path / "slow.ipynb", tmp_path / "slow.ipynb")
    await lines.notebook_started(job)
    await lines.cell_started(job, 3, 7, CellRef(4, "c4", "code"))
    await lines.cell_running(job, 1.0, "")
    assert stream.getvalue() == ""  # not yet: every 3 heartbeat intervals (30 s)
    lines.next_heartbeat = 0.0
    await lines.cell_running(job, 31.0, "")
    assert re.fullmatch(r"nbmcp exec: still running: slow\.ipynb \(cell 3/7, \d+ s\)\n", stream.getvalue())


def test_unreadable_notebooks_are_errors_in_the_junit_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path / "work")
    (tmp_path / "work" / "broken.ipynb").write_text("{not json")
    (tmp_path / "work" / "empty.ipynb").write_text("")
    assert cli("exec", "broken.ipynb", "empty.ipynb", "--junit-xml", "junit.xml") == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "FAILED broken.ipynb (no cells" in err and "is not a valid Jupyter notebook (not JSON" in err
    assert "0 of 2 notebooks passed" in err
    root = ET.fromstring((tmp_path / "work" / "junit.xml").read_bytes())
    _check_junit_schema(root)
    assert (root[0].get("failures"), root[0].get("errors")) == ("0", "2")
    errors = [c.find("error") for c in root[0].iter("testcase")]
    assert [e.get("type") for e in errors if e is not None] == ["NotebookFormatError"] * 2
    assert (tmp_path / "work" / "broken.ipynb").read_text() == "{not json"  # never overwritten
