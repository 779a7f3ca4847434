"""The README's table of papermill's, `jupyter execute`'s and nbmake's options: each one listed is run here.

Four runs use every spelling in the table between them (a test below checks that none is left out), on
a real kernel: a papermill-style run into a templated output path, a `jupyter execute`-style in-place
run that allows errors, a papermill `--prepare-only`, and a notebook piped through stdin and stdout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nbmcp.cli.exec import ExitCode
from nbmcp.cli.main import cli

README = Path(__file__).parent.parent / "README.md"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _table_spellings() -> set[str]:
    """Every option spelled in the README's table (both columns), as typed on a command line."""
    text = README.read_text()
    start = text.index("| papermill, jupyter execute, pytest --nbmake | nbmcp exec |")
    table = text[start : text.index("\n\n", start)]
    spellings = set()
    for cell in re.findall(r"`([^`]+)`", table):
        spellings.add(cell.split()[0] if cell.startswith("--") or cell == "-k" else cell)
    return spellings


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("name = 'default'", metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = KERNELSPEC
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


#: What each run below passes: the spellings the README lists must all be among them.
PAPERMILL = ["-k", "python3", "--execution-timeout", "30", "--start-timeout", "30", "--cwd", "--log-output"]
JUPYTER_EXECUTE = ["--kernel_name=python3", "--timeout=30", "--startup_timeout=30", "--inplace", "--allow-errors"]
#: base64 of the YAML mapping `count: 3` (papermill's -b).
B64 = "Y291bnQ6IDM="
PREPARE = [
    "--prepare-only",
    "--kernel",
    "python3",
    "--startup-timeout",
    "5",
    "--report-mode",
    "--inject-paths",
    "-b",
    B64,
]
NBMAKE = ["--nbmake-kernel", "python3", "--nbmake-timeout", "30"]


def test_every_option_in_the_readme_table_is_run_here() -> None:
    used = {arg.split("=")[0] for arg in PAPERMILL + JUPYTER_EXECUTE + PREPARE + NBMAKE}
    used |= {"-", "-o -", "-o 'out/{name}.ipynb'"}  # the stdin, stdout and template runs
    listed = _table_spellings()
    assert len(listed) >= 14
    assert listed <= used, listed - used


def test_papermill_spellings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-k, --execution-timeout, --start-timeout, --cwd, --log-output, and -o with {name} from -p."""
    source = _notebook(tmp_path / "work" / "report.ipynb", "import os\nprint(name, os.getcwd())")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = [*PAPERMILL[:-1], str(elsewhere), PAPERMILL[-1]]  # --cwd DIR --log-output
    out = tmp_path / "out" / "{name}.ipynb"
    assert cli("exec", str(source), *args, "-p", "name", "eu", "-o", str(out)) == ExitCode.OK
    err = capsys.readouterr().err
    assert f"eu {elsewhere}" in err  # --log-output shows the cell's output on stderr
    nb = nbformat.read(tmp_path / "out" / "eu.ipynb", as_version=4)
    assert nb.cells[-1].outputs[0].text == f"eu {elsewhere}\n"
    meta = nb.metadata.papermill
    assert meta["default_parameters"] == {} and meta["environment_variables"] == {} and meta["version"]
    assert meta["parameters"] == {"name": "eu"}
    assert cli("exec", str(source), "-p", "nam", "x", "-o", str(out)) == ExitCode.USAGE
    assert "names parameter name, which is not given" in capsys.readouterr().err


def test_jupyter_execute_spellings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _notebook(tmp_path / "work" / "nb.ipynb", "1 / 0", "print('after')")
    assert cli("exec", str(source), *JUPYTER_EXECUTE) == ExitCode.OK, capsys.readouterr().err
    nb = nbformat.read(source, as_version=4)
    assert nb.cells[1].outputs[0].ename == "ZeroDivisionError" and nb.cells[2].outputs[0].text == "after\n"
    with pytest.raises(SystemExit) as stop:
        cli("exec", str(source), "--inplace", "-o", str(tmp_path / "x.ipynb"))
    assert stop.value.code == ExitCode.USAGE and "not allowed with argument --inplace" in capsys.readouterr().err


def test_papermill_prepare_only_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--prepare-only, with -b, --inject-paths and --report-mode: the same notebook as papermill's."""
    source = _notebook(tmp_path / "work" / "nb.ipynb", "print(name)")
    out = tmp_path / "prepared.ipynb"
    assert cli("exec", str(source), *PREPARE, "-p", "name", "x", "-o", str(out)) == ExitCode.OK
    nb = nbformat.read(out, as_version=4)
    assert nb.cells[1].source.startswith("# Parameters\n") and 'name = "x"\n' in nb.cells[1].source
    assert all(c.execution_count is None and not c.outputs for c in nb.cells)
    assert "--prepare-only" in capsys.readouterr().err
    theirs = tmp_path / "papermill.ipynb"
    papermill = [sys.executable, "-m", "papermill", str(source), str(out), "-p", "name", "x", "-b", B64]
    papermill += ["--inject-paths", "--report-mode", "--prepare-only", "-k", "python3"]
    done = subprocess.run(papermill, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    pm = nbformat.read(out, as_version=4)  # papermill wrote the same output path (its paths are injected)
    out.rename(theirs)
    assert cli("exec", str(source), *PREPARE, "-p", "name", "x", "-o", str(out)) == ExitCode.OK
    ours = nbformat.read(out, as_version=4)
    assert ours.cells[1].source == pm.cells[1].source  # count, the paths, name: papermill's order and format
    assert "PAPERMILL_INPUT_PATH" in ours.cells[1].source and "count = 3" in ours.cells[1].source
    hidden = [c.metadata.get("jupyter", {}).get("source_hidden") for c in ours.cells if c.cell_type == "code"]
    assert hidden == [c.metadata.get("jupyter", {}).get("source_hidden") for c in pm.cells if c.cell_type == "code"]
    assert hidden == [True] * 3
    assert ours.metadata.papermill["parameters"] == pm.metadata.papermill["parameters"]


def test_stdin_to_stdout_with_nbmake_spellings(tmp_path: Path) -> None:
    """`nbmcp exec -` reads the notebook from stdin and writes the run to stdout, nothing else there."""
    source = _notebook(tmp_path / "work" / "nb.ipynb", "import os\nprint(os.getcwd())")
    done = subprocess.run(
        [sys.executable, "-m", "nbmcp", "exec", "-", *NBMAKE],
        input=source.read_bytes(),
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, "NBMCP_LOG_LEVEL": "WARNING"},
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    nb = json.loads(done.stdout)
    assert (nb["metadata"]["papermill"]["input_path"], nb["metadata"]["papermill"]["output_path"]) == ("-", "-")
    assert nb["cells"][-1]["outputs"][0]["text"] == [f"{tmp_path}\n"]  # run in the current folder
