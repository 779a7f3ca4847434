"""The files in examples/ are what a user copies: they must be valid and the demo must run."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mcp import Client

from nbmcp.config import Settings
from nbmcp.server.app import build_server

from .conftest import read_nb, text_of

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("name", ["claude_desktop_config.json", ".vscode/mcp.json", ".cursor/mcp.json"])
def test_client_configurations_start_nbmcp(name: str) -> None:
    config = json.loads((EXAMPLES / name).read_text())
    servers = config.get("mcpServers") or config["servers"]
    entry = servers["notebook"]
    # The installed command (uv tool install / pipx install): it starts offline and in about a second.
    assert entry["command"] == "nbmcp"
    [notebook] = entry["args"]
    assert notebook.endswith(".ipynb")
    # The README shows the same configuration.
    assert json.dumps(entry["args"]) in (EXAMPLES.parent / "README.md").read_text()


@pytest.mark.anyio
async def test_demo_notebook_runs_cell_by_cell(tmp_path: Path) -> None:
    path = tmp_path / "work" / "demo.ipynb"
    shutil.copy(EXAMPLES / "demo.ipynb", path)
    code_cells = [i for i, c in enumerate(read_nb(path).cells) if c.cell_type == "code"]
    async with Client(build_server(Settings(path=path, timeout=60))) as client:
        for i in code_cells:
            r = await client.call_tool("execute_cell_simple_timeout", {"cell_index": i})
            assert r.structured_content["status"] == "ok", text_of(r)
    nb = read_nb(path)
    assert "mean=" in nb.cells[code_cells[1]].outputs[0].text


def _workflow_commands() -> list[str]:
    """The single-line `run:` commands of examples/github-actions.yml, in order."""
    lines = (EXAMPLES / "github-actions.yml").read_text().splitlines()
    return [line.split("run:", 1)[1].strip() for line in lines if line.strip().startswith("run:")]


def test_github_workflow_installs_from_the_checkout_never_from_pypi() -> None:
    commands = _workflow_commands()
    assert commands[0] == "python -m pip install . matplotlib"
    assert not any(re.search(r"pip install[^.]*\bnbmcp\b", c) for c in commands)
    assert "python examples/ci_report.py build/report.ipynb" in commands
    assert any(c.startswith("nbmcp exec build/report.ipynb") for c in commands)


# Three real processes (a plot, two kernels): on the shared 2-core machine under load this took over 120 s.
@pytest.mark.timeout(360)
def test_github_workflow_builds_the_report_and_runs_it(tmp_path: Path) -> None:
    # The workflow's own commands (minus pip: nbmcp is installed here), in a copy of the checkout.
    repo = tmp_path / "work" / "repo"
    shutil.copytree(EXAMPLES, repo / "examples")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for command in _workflow_commands()[1:]:
        done = subprocess.run(command, shell=True, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        assert done.stdout == ""
    report = read_nb(repo / "build" / "report.ipynb")
    assert [c.cell_type for c in report.cells] == ["markdown", "code"] * 3
    code = [c for c in report.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3]  # from the `nbmcp exec` re-run
    assert code[0].outputs[0].text == "5 builds, mean 308.6 s, slowest 341 s\n"
    assert "| Wed | 341 | +32.4 |" in code[1].outputs[0].data["text/markdown"]
    png = base64.b64decode(code[2].outputs[0].data["image/png"])
    assert png.startswith(b"\x89PNG") and len(png) > 5_000  # a real plot, not a placeholder
    # The parameterized report: the injected values were used; the source notebook is untouched.
    assert (repo / "examples" / "sales.ipynb").read_bytes() == (EXAMPLES / "sales.ipynb").read_bytes()
    sales = read_nb(repo / "build" / "sales-eu.ipynb")
    assert sales.cells[2].metadata["tags"] == ["injected-parameters"]
    assert sales.cells[2].source == '# Parameters\nmonths = [1, 2, 3]\nregion = "eu"\n'  # -y before -p, as papermill
    assert sales.cells[-1].outputs[0].text == "region=eu months=1-3 total=367.2\n"
    assert sales.metadata["papermill"]["parameters"] == {"months": [1, 2, 3], "region": "eu"}
    # Every example notebook ran into build/executed, and the JUnit report lists each one as passed.
    for name in ("demo.ipynb", "sales.ipynb"):
        executed = read_nb(repo / "build" / "executed" / name)
        assert all(c.execution_count for c in executed.cells if c.cell_type == "code"), name
        assert executed.cells[-1].outputs, name
    assert (repo / "examples" / "demo.ipynb").read_bytes() == (EXAMPLES / "demo.ipynb").read_bytes()
    suite = ET.fromstring((repo / "build" / "junit.xml").read_bytes())[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    assert sorted(c.get("name") for c in suite.iter("testcase")) == ["demo.ipynb", "sales.ipynb"]
    assert {c.get("classname") for c in suite.iter("testcase")} == {"examples"}


def test_ci_report_fails_loudly_when_a_cell_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("ci_report", EXAMPLES / "ci_report.py")
    assert spec is not None and spec.loader is not None
    ci_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ci_report)
    monkeypatch.setattr(ci_report, "TABLE", "raise RuntimeError('no data today')")
    path = tmp_path / "work" / "report.ipynb"
    assert ci_report.main([str(path)]) == 1
    assert read_nb(path).cells[3].outputs[0].evalue == "no data today"
