"""`nbmcp exec` as a process (issue 26): IPython's history in memory, no MCP import, a clean end on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from nbmcp import Notebook
from nbmcp.cli.exec import ExitCode
from nbmcp.cli.main import cli

from .conftest import child_pids, process_exists, read_nb

PYTHON = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _nb(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = PYTHON
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# -- history --------------------------------------------------------------------------------------------

#: nbclient's "Check History in Memory" notebook, and a look into that database: it works, in memory.
HISTORY_CELLS = (
    "secret = 'from -p'",
    "ip = get_ipython()\n"
    "assert ip.history_manager.hist_file == ':memory:', ip.history_manager.hist_file\n"
    "ip.history_manager.writeout_cache()\n"
    "print([source for (source,) in ip.history_manager.db.execute('SELECT source FROM history')][:1])",
)


def test_headless_kernels_keep_ipythons_history_in_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = Path(os.environ["IPYTHONDIR"]) / "profile_default" / "history.sqlite"  # conftest points it here
    path = _nb(tmp_path / "work" / "nb.ipynb", *HISTORY_CELLS)

    assert cli("exec", str(path)) == ExitCode.OK, capsys.readouterr().err
    assert read_nb(path).cells[1].outputs[0].text == "[\"secret = 'from -p'\"]\n"
    result = Notebook.run(path, tmp_path / "work" / "out.ipynb", parameters={"secret": "x"}, timeout=60)
    assert result.ok
    assert not history.exists()

    # The check looks where IPython writes: a kernel of the MCP server (history on disk, as in Jupyter) does.
    with Notebook(path, create=False) as nb:
        assert nb.execute_cell(0).ok
    assert history.exists()


# -- no MCP library where it is not used ------------------------------------------------------------------

LOADED_MCP = """
import sys
from nbmcp.cli.main import cli
try:
    code = cli(*sys.argv[1:])
except SystemExit as exc:
    code = exc.code
mcp = sorted(m for m in sys.modules if m == "mcp" or m.startswith("mcp."))
print(f"exit {code}; mcp modules: {len(mcp)} {mcp[:3]}", file=sys.stderr)
"""


def _mcp_modules(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", LOADED_MCP, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "args",
    [["--version"], ["--help"], ["exec", "--help"], ["exec", "nb.ipynb"], ["doctor", "nb.ipynb"], ["doctor", "--help"]],
    ids=" ".join,
)
def test_commands_that_do_not_serve_import_nothing_of_the_mcp_library(tmp_path: Path, args: list[str]) -> None:
    _nb(tmp_path / "work" / "nb.ipynb", "print(1)")
    line = _mcp_modules(*args, cwd=tmp_path / "work")
    assert line.startswith("exit 0;") and line.endswith("mcp modules: 0 []"), line


def test_the_mcp_check_sees_the_library_where_it_is_used(tmp_path: Path) -> None:
    # --tools is checked against the server's tool table: the one place a command line needs the library.
    line = _mcp_modules("nb.ipynb", "--tools", "no_such_tool", cwd=tmp_path / "work")
    assert line.startswith("exit 2;") and "mcp modules: 0" not in line, line


# -- SIGTERM and SIGINT ------------------------------------------------------------------------------------

SLEEPER = ("print('first')", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", "print('never')")


def _kernel_files(runtime: Path) -> list[str]:
    return sorted(p.name for p in runtime.glob("*") if p.name.startswith(("kernel-", "nbmcp-")))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_exec_cleanly_with_papermills_exit_status(tmp_path: Path, signum: signal.Signals) -> None:
    runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
    path = _nb(tmp_path / "work" / "nb.ipynb", *SLEEPER)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbmcp", "exec", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = []
        while not any("[1/3]" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        time.sleep(1.5)  # cell 2 prints, then sleeps
        kernels = child_pids(proc.pid)
        assert kernels and _kernel_files(runtime)
        started = time.monotonic()
        proc.send_signal(signum)
        err = "".join(lines) + proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    took = time.monotonic() - started
    # Ended by the signal after cleaning up (a shell shows 128 + the signal), as an uncaught signal ends
    # papermill (SIGTERM, checked below) and Python itself (SIGINT; papermill turns that into exit 1).
    assert proc.returncode == -signum, err
    assert took < 15, err
    assert f"stopped by {signum.name}" in err and "Traceback" not in err, err
    assert not [pid for pid in kernels if process_exists(pid)], "a kernel outlived nbmcp exec"
    assert _kernel_files(runtime) == []  # connection files and sockets removed
    cells = read_nb(path).cells
    assert cells[0].outputs[0].text == "first\n"
    assert cells[1].outputs[0].text.startswith("sleeping\n") and cells[1].execution_count == 2
    assert "[nbmcp] the run was stopped (a signal, or its caller) after" in cells[1].outputs[-1].text
    assert cells[2].outputs == [] and cells[2].execution_count is None
    if signum != signal.SIGTERM:
        return
    papermill = subprocess.Popen(
        [sys.executable, "-m", "papermill", str(path), str(tmp_path / "work" / "pm.ipynb")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(6)  # papermill has started its kernel and sleeps in cell 2
        papermill.send_signal(signum)
        assert papermill.wait(timeout=30) == proc.returncode
    finally:
        if papermill.poll() is None:
            papermill.kill()
            papermill.wait()
