"""Issue 12: the project's own environment runs the code, bad start-up input stops nbmcp, --read-only runs nothing."""

from __future__ import annotations

import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from mcp import Client

from nbmcp.cli.main import cli
from nbmcp.config import Settings
from nbmcp.kernels.choice import choose_kernel, find_project_env, install_command
from nbmcp.server.app import build_server

from .conftest import FILES, give_ipykernel, make_venv, text_of

pytestmark = pytest.mark.anyio

#: A start-up failure must come well before this (seconds). Generous: on the shared CI machine under load,
#: merely importing nbmcp has taken 30 s; a server that did not stop would wait on its client forever.
FAIL_FAST = 90


def nbmcp(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command, as a client would, and wait for it to give up."""
    return subprocess.run(
        [sys.executable, "-m", "nbmcp", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=FAIL_FAST * 2,
    )


async def call(client: Client, tool: str, **args: object) -> Any:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    return result


async def test_a_notebook_in_a_project_runs_in_the_projects_venv_without_flags(tmp_path: Path) -> None:
    project = tmp_path / "work" / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    venv = project / ".venv"
    make_venv(venv, ipykernel=True)
    nb = project / "notebooks" / "analysis.ipynb"
    async with Client(build_server(Settings(path=nb, timeout=60, structured_output=True))) as client:
        r = await call(client, "append_execute_code_cell", cell_source="import sys, os\nprint(sys.prefix)\nos.getcwd()")
        assert r.structured_content["status"] == "ok", text_of(r)
        assert f"{venv}\n" in text_of(r)  # sys.prefix: the project's environment, not nbmcp's
        assert str(project / "notebooks") in text_of(r)  # the kernel runs in the notebook's folder
        kernel = (await call(client, "get_notebook_info")).structured_content["kernel"]
        assert kernel["interpreter"] == str(venv / "bin" / "python")
        assert kernel["chosen_by"] == f"the project's environment {venv}"
        # A uv- or --without-pip-made environment has no pip: the answer says how to install instead.
        assert "uv pip install --python" in kernel["install_packages"]


def test_the_project_env_search_stops_at_the_project_root(tmp_path: Path) -> None:
    outer = tmp_path / "work"
    make_venv(outer / "venv", ipykernel=False)
    inner = outer / "repo" / "notebooks"
    inner.mkdir(parents=True)
    assert find_project_env(inner) == outer / "venv"  # no project marker in between: found above
    (outer / "repo" / ".git").mkdir()
    assert find_project_env(inner) is None  # the repository's root ends the search
    make_venv(outer / "repo" / "venv", ipykernel=False)
    assert find_project_env(inner) == outer / "repo" / "venv"


def test_a_specific_kernelspec_and_the_flags_win_over_the_project_env(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    python = make_venv(folder / ".venv", ipykernel=True)
    # "python3" is generic (nbmcp writes it into new notebooks): the project's environment wins over it.
    assert choose_kernel(notebook_kernel="python3", notebook_dir=folder, environ={}).argv0 == str(python)
    chosen = choose_kernel(python=sys.executable, notebook_kernel="python3", notebook_dir=folder, environ={})
    assert (chosen.argv0, chosen.reason) == (sys.executable, "--python")
    assert choose_kernel(kernel_name="python3", notebook_dir=folder, environ={}).reason == "--kernel"


def test_an_activated_env_is_used_and_an_env_without_ipykernel_is_passed_over_plainly(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    (folder / ".git").mkdir()
    bare = make_venv(folder / ".venv", ipykernel=False)
    activated = make_venv(tmp_path / "activated", ipykernel=True)
    chosen = choose_kernel(notebook_dir=folder, environ={"VIRTUAL_ENV": str(tmp_path / "activated")})
    assert chosen.argv0 == str(activated) and "VIRTUAL_ENV" in chosen.reason
    fallback = choose_kernel(notebook_dir=folder, environ={})
    assert fallback.argv0 == sys.executable
    assert "NOT the project's" in fallback.reason and "has no ipykernel" in fallback.reason
    assert f"uv pip install --python {bare} ipykernel" in fallback.reason


def test_unknown_kernel_exits_2_at_once_naming_it(tmp_path: Path) -> None:
    started = time.monotonic()
    done = nbmcp(str(tmp_path / "work" / "nb.ipynb"), "--kernel", "nosuch")
    assert time.monotonic() - started < FAIL_FAST
    assert done.returncode == 2
    assert done.stderr.startswith("nbmcp: error: --kernel nosuch: no kernel named 'nosuch' is installed")
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
    assert not (tmp_path / "work" / "nb.ipynb").exists()  # nothing served, nothing created


@pytest.mark.parametrize("kind", ["missing", "not executable", "no ipykernel"])
def test_an_unusable_python_exits_2_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    if kind == "missing":
        python, expected = tmp_path / "nope" / "python", "no such file"
    elif kind == "not executable":
        python, expected = tmp_path / "python", "not an executable program"
        python.write_text("")
    else:
        python = make_venv(tmp_path / "bare", ipykernel=False)
        expected = f"has no ipykernel, which a Jupyter kernel needs; install it with: uv pip install --python {python}"
    # In process (cli() returns the exit code): the real process's exit is checked above for --kernel.
    assert cli(str(tmp_path / "work" / "nb.ipynb"), "--python", str(python)) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1


def test_no_path_from_the_root_folder_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir("/")
    assert cli() == 2
    err = capsys.readouterr().err
    assert "no PATH given and the current folder is /" in err and "Give a notebook or a folder" in err


def test_a_port_in_use_exits_2_before_any_kernel_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        nb = tmp_path / "work" / "nb.ipynb"
        assert cli(str(nb), "--transport", "streamable-http", "--port", str(port)) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert not any("kernel" in r.getMessage() for r in caplog.records)  # found before a kernel was chosen


def _tracing_venv(folder: Path, trace: Path) -> None:
    """A `.venv/bin/python` that leaves `trace` behind whenever anything runs it."""
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "python"
    script.write_text(f'#!/bin/sh\ntouch "{trace}"\nexec "{sys.executable}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


async def test_read_only_runs_nothing_from_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    trace = tmp_path / "ran"
    _tracing_venv(folder, trace)
    nb = folder / "untrusted.ipynb"
    shutil.copy(FILES / "v44_no_ids.ipynb", nb)
    choose_kernel(notebook_dir=folder, environ={})
    assert trace.exists()  # the trap works: choosing a kernel for the folder runs its .venv
    trace.unlink()
    async with Client(build_server(Settings(path=nb, timeout=60, read_only=True, structured_output=True))) as client:
        await call(client, "read_notebook")
        info = (await call(client, "get_notebook_info")).structured_content
        assert info["kernel"]["state"] == "not started" and "--read-only" in info["kernel"]["chosen_by"]
        # Listed until the tool layer hides kernel tools under --read-only; refused either way.
        r = await client.call_tool("list_variables", {})
        assert r.is_error and "--read-only" in text_of(r)
    assert not trace.exists()


async def test_an_nbformat_3_notebook_is_reported_as_upgraded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    nb = tmp_path / "work" / "old.ipynb"
    shutil.copy(FILES / "v3.ipynb", nb)
    caplog.set_level("INFO", logger="nbmcp")
    async with Client(build_server(Settings(path=nb, timeout=60, read_only=True, structured_output=True))) as client:
        info = (await call(client, "get_notebook_info")).structured_content
    assert info["nbformat"].startswith("4.") and info["upgraded_from_nbformat"] == 3
    assert "the file is nbformat 3" in info["note"]
    assert any("is nbformat 3; upgraded to 4" in r.getMessage() for r in caplog.records)


async def test_the_diff_of_a_source_without_final_newline_keeps_lines_apart(tmp_path: Path) -> None:
    nb = tmp_path / "work" / "old.ipynb"
    shutil.copy(FILES / "v3.ipynb", nb)  # its cell's source "a = 1\nb = 2" has no final newline
    async with Client(build_server(Settings(path=nb, timeout=60, kernel_at_open=False))) as client:
        r = await call(client, "overwrite_cell_source", cell_index=0, cell_source="a = 1\nb = 3")
    text = text_of(r)
    assert "-b = 2\n\\ No newline at end of cell\n+b = 3\n" in text, text


async def test_a_venv_without_ipykernel_is_named_first_and_restart_uses_it_once_fixed(tmp_path: Path) -> None:
    # Issue 24: the fallback used to be silent in the answer (a bare ModuleNotFoundError), its package hint
    # led into nbmcp's own environment, and after the fix restart_kernel started the same fallback again.
    project = tmp_path / "work" / "project"
    (project / ".git").mkdir(parents=True)
    python = make_venv(project / ".venv", ipykernel=False)
    with (project / ".venv" / "pyvenv.cfg").open("a") as cfg:
        cfg.write("uv = 0.9.0\n")  # as uv writes it: the fix is uv's command
    fix = f"uv pip install --python {python} ipykernel"
    nbformat.write(nbformat.v4.new_notebook(), project / "analysis.ipynb")
    async with Client(
        build_server(Settings(path=project / "analysis.ipynb", timeout=60, structured_output=True))
    ) as client:
        code = "import sys; print(sys.executable)"
        lines = text_of(await call(client, "append_execute_code_cell", cell_source=code)).splitlines()
        assert lines[1].startswith(f"Note: the code runs in nbmcp's own Python ({sys.executable}), NOT"), lines
        assert f"{python} has no ipykernel" in lines[1] and f"`{fix}`, then restart_kernel" in lines[1]
        assert sys.executable in lines[2:]
        again = text_of(await call(client, "execute_code", code=code))
        assert "Note:" not in again  # said once, in the first answer of this kernel
        kernel = (await call(client, "get_notebook_info")).structured_content["kernel"]
        hint = kernel["install_packages"]
        assert f"uv pip install --python {python} NAME" in hint and fix in hint
        assert f"--python {sys.executable}" not in hint and "temporary" in hint
        assert f"{python} has no ipykernel" in kernel["warning"]

        give_ipykernel(python)
        kernel = (await call(client, "get_notebook_info")).structured_content["kernel"]
        assert f"{python} has ipykernel now" in kernel["warning"] and "restart_kernel" in kernel["warning"]
        restarted = text_of(await call(client, "restart_kernel"))
        assert f"Code now runs in {python} (chosen by the project's environment" in restarted, restarted
        assert f"before the restart it ran in {sys.executable}" in restarted
        after = text_of(await call(client, "append_execute_code_cell", cell_source=code))
        assert f"\n{python}\n" in f"{after}\n" and "Note:" not in after, after
        kernel = (await call(client, "get_notebook_info")).structured_content["kernel"]
        assert kernel["interpreter"] == str(python) and "warning" not in kernel


def test_the_fix_command_is_uvs_for_a_uv_made_environment_else_pips(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "env", ipykernel=False)
    assert install_command(str(python)) == f"uv pip install --python {python} ipykernel"  # no pip at all
    (python.parent / "pip").write_text("")  # a pip beside it: python -m pip works
    assert install_command(str(python)) == f"{python} -m pip install ipykernel"
    with (tmp_path / "env" / "pyvenv.cfg").open("a") as cfg:
        cfg.write("uv = 0.9.0\n")
    assert install_command(str(python), "pandas") == f"uv pip install --python {python} pandas"


def test_a_bare_name_from_the_root_folder_creates_nothing_there(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir("/")
    name = "nbmcp-test-no-such-notebook.ipynb"
    assert cli(name) == 2
    err = capsys.readouterr().err
    assert f"{name} does not exist in /" in err and "refusing to create" in err and len(err.splitlines()) == 1
    assert not Path("/", name).exists()


async def test_a_run_of_all_cells_or_a_look_at_the_variables_also_names_the_fallback_first(tmp_path: Path) -> None:
    project = tmp_path / "work" / "project"
    (project / ".git").mkdir(parents=True)
    python = make_venv(project / ".venv", ipykernel=False)
    nb = project / "analysis.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), nb)
    for tool in ("execute_all_cells", "list_variables"):
        async with Client(build_server(Settings(path=nb, timeout=60))) as client:
            lines = text_of(await call(client, tool)).splitlines()
        assert lines[1].startswith("Note: the code runs in nbmcp's own Python"), (tool, lines)
        assert f"{python} has no ipykernel" in lines[1]
