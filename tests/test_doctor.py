"""`nbmcp doctor`: real kernels, a real interpreter without ipykernel, real sockets, a real `jupyter server`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbmcp.cli.doctor import Verdict
from nbmcp.cli.main import cli
from nbmcp.kernels.choice import install_command

from .test_remote import TOKEN, Jupyter, _free_port, jupyter  # noqa: F401 (jupyter is a fixture)


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `nbmcp doctor ARGS`; its exit code and everything it printed (stdout and stderr)."""
    code = cli("doctor", *args)
    out = capsys.readouterr()
    return code, out.out + out.err


def doctor_process(*args: str) -> tuple[int, str]:
    """`nbmcp doctor ARGS` as a real process (the environment is this one's, monkeypatched variables included)."""
    proc = subprocess.run(
        [sys.executable, "-m", "nbmcp", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    return proc.returncode, proc.stdout + proc.stderr


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = cli("doctor", "--json", *args)
    return code, json.loads(capsys.readouterr().out)


def by_name(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in rep["checks"]}


@pytest.fixture
def good_nb(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "good.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("hi")])
    nbformat.write(nb, path)
    return path


def test_a_good_notebook_passes_and_names_the_kernel_and_its_timing(
    good_nb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = doctor(capsys, str(good_nb))
    assert code == 0, out
    assert f"{good_nb}: 2 cells, nbformat 4." in out
    kernel_line = next(line for line in out.splitlines() if " kernel " in line)
    assert sys.executable in kernel_line and "chosen by" in kernel_line
    # The tests' kernel is nbmcp's own Python: said plainly, with the way to the project's, but no failure.
    assert kernel_line.startswith("[warn]") and "the Python nbmcp itself runs on" in kernel_line
    run_line = next(line for line in out.splitlines() if "kernel run" in line)
    assert run_line.startswith("[ ok ]") and "ran 1+1 = 2 in" in run_line and "started in" in run_line
    assert "FAIL" not in out
    # The warning is counted, not folded into "All 5 checks passed" (issue 24).
    assert out.rstrip().splitlines()[-1] == "4 passed, 1 warning, 1 skipped."  # skipped: the live view (no --view)


def test_json_parses_and_carries_every_check(good_nb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = report(capsys, str(good_nb))
    assert code == 0 and rep["ok"] is True
    checks = by_name(rep)
    assert {"notebook", "lock folder", "kernel", "ipykernel", "kernel run"} <= checks.keys()
    assert all(c["verdict"] in {v.value for v in Verdict} for c in rep["checks"])
    assert checks["kernel run"]["verdict"] == "pass" and checks["kernel run"]["seconds"] > 0


def test_read_only_starts_no_kernel(good_nb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = report(capsys, str(good_nb), "--read-only")
    assert code == 0
    assert by_name(rep)["kernel"]["verdict"] == "skip" and "kernel run" not in by_name(rep)


def test_an_interpreter_given_on_purpose_is_no_warning(good_nb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = report(capsys, str(good_nb), "--python", sys.executable)
    assert code == 0 and by_name(rep)["kernel"]["verdict"] == "pass"
    assert "chosen by --python" in by_name(rep)["kernel"]["detail"]


def test_an_interpreter_without_ipykernel_fails_with_the_install_command(
    good_nb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = tmp_path / "bare-venv"
    # No pip and no system site packages: an environment that certainly lacks ipykernel.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    code, out = doctor(capsys, str(good_nb), "--python", str(python))
    assert code == 1
    assert "[FAIL] ipykernel" in out and "cannot import ipykernel" in out
    # That venv has no pip, so the fix is uv's command (a venv with pip gets `python -m pip install ...`).
    assert f"fix: install it into that environment: `{install_command(str(python))}`" in out
    assert "ipykernel" in install_command(str(python))
    assert "[skip] kernel run" in out  # no pointless start that would only time out


def test_an_r_notebook_without_irkernel_fails_as_its_executions_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 26: the server answers every execution of such a notebook with this error; doctor says it first.
    path = tmp_path / "work" / "analysis.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x <- 1")])
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    nbformat.write(nb, path)
    code, rep = report(capsys, str(path))
    assert code == 1
    kernel = by_name(rep)["kernel"]
    assert kernel["verdict"] == "fail" and "No such kernel named ir" in kernel["detail"]
    assert "--kernel NAME" in kernel["fix"] and "kernel run" not in by_name(rep)


def test_a_port_in_use_fails_and_suggests_another(good_nb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = doctor(capsys, str(good_nb), "--read-only", "--transport", "streamable-http", "--port", str(port))
    assert code == 1
    assert "[FAIL] port" in out and f"127.0.0.1:{port} is already in use" in out
    assert "--port " in out.split("fix:", 1)[1]
    # Free again: the same command passes.
    code, out = doctor(capsys, str(good_nb), "--read-only", "--transport", "streamable-http", "--port", str(port))
    assert code == 0, out


def test_the_host_and_token_rule(good_nb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(_free_port())
    code, out = doctor(
        capsys, str(good_nb), "--read-only", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", port
    )
    assert code == 1 and "[FAIL] access" in out and "NBMCP_TOKEN" in out
    secret = "sekrit-7d1e0b9c2a"
    code, out = doctor(
        capsys, str(good_nb), "--read-only", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", port,
        "--token", secret,
    )  # fmt: skip
    assert code == 0, out
    assert "a bearer token is set" in out and secret not in out


def test_an_unreachable_jupyter_server_fails_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # a free port: nobody listens there
    code, out = doctor(capsys, "--server-url", url, "work/analysis.ipynb")
    assert code == 1
    assert f"[FAIL] jupyter reachable  nothing answers at {url}" in out
    assert "fix: start the Jupyter server, or correct the URL" in out
    assert "[skip] kernel run" in out


def test_a_wrong_token_is_refused_and_never_printed(
    jupyter: Jupyter,  # noqa: F811 (the fixture)
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = "wrong-token-5c8e2f"
    monkeypatch.setenv("DOCUMENT_TOKEN", wrong)
    code, out = doctor_process("--server-url", jupyter.url, "analysis.ipynb")
    assert code == 1
    assert "[FAIL] jupyter token" in out and "refused the token (HTTP 403)" in out and "jupyter server list" in out
    assert wrong not in out and TOKEN not in out
    code, out = doctor_process("--json", "--server-url", jupyter.url, "analysis.ipynb")
    assert code == 1 and wrong not in out
    assert json.loads(out[: out.rindex("}") + 1])["ok"] is False  # stdout is the report (stderr is empty)


def test_a_good_jupyter_server_passes_every_check(
    jupyter: Jupyter,  # noqa: F811 (the fixture)
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), jupyter.root / "doc.ipynb")
    monkeypatch.setenv("DOCUMENT_TOKEN", TOKEN)
    with jupyter.http() as http:
        before = {k["id"] for k in http.get("/api/kernels").json()}
    code, out = doctor_process("--server-url", jupyter.url, "doc.ipynb")
    assert code == 0, out
    for line in ("jupyter reachable", "jupyter token", "contents API", "notebook", "kernels API", "kernel run"):
        assert f"[ ok ] {line}" in out
    assert "doc.ipynb: 1 cells" in out and "ran 1+1 = 2" in out and TOKEN not in out
    with jupyter.http() as http:
        assert {k["id"] for k in http.get("/api/kernels").json()} == before  # its own kernel is gone
    # A notebook that is not there yet is fine (nbmcp creates it); one in a missing folder is not.
    code, out = doctor_process("--server-url", jupyter.url, "new.ipynb", "--read-only")
    assert "[ ok ] notebook" in out and "would be created" in out
    code, out = doctor_process("--server-url", jupyter.url, "nope/new.ipynb", "--read-only")
    assert code == 1 and "[FAIL] notebook" in out and "neither is its folder nope" in out
