"""The files in examples/ and the README's quick start are what a user copies: they must be valid and run."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mcp import Client

from nbmcp import __version__
from nbmcp.cli.options import add_server_arguments, command_parser, settings_from_args
from nbmcp.config import Settings
from nbmcp.server.app import build_server
from nbmcp.server.tools import ALL_TOOLS, READ_ONLY_SERVER_TOOLS

from .conftest import read_nb, text_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
#: The issue's cap (issue 24): a README a newcomer can read; internals live beside their code.
README_MAX_CHARS = 30_000


@pytest.mark.anyio
async def test_demo_notebook_runs_cell_by_cell(tmp_path: Path) -> None:
    path = tmp_path / "work" / "demo.ipynb"
    shutil.copy(EXAMPLES / "demo.ipynb", path)
    code_cells = [i for i, c in enumerate(read_nb(path).cells) if c.cell_type == "code"]
    async with Client(build_server(Settings(path=path, timeout=60, structured_output=True))) as client:
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


def _readme_blocks(language: str) -> list[str]:
    """The README's fenced code blocks in `language`, in order."""
    blocks = re.findall(rf"^ *```{language}\n(.*?)^ *```$", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [textwrap.dedent(block) for block in blocks]


def _headings() -> list[tuple[int, str]]:
    """The README's headings below the title (level, text), outside code blocks."""
    text = re.sub(r"^ *```.*?^ *```$", "", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [(len(m[1]), m[2]) for m in re.finditer(r"^(#{2,3}) (.+)$", text, flags=re.MULTILINE)]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _nbmcp_args(args: list[str], tmp_path: Path) -> Settings:
    """Settings from a configuration's `args`, parsed by nbmcp's own parser (paths pointed into tmp_path)."""
    parser = command_parser("nbmcp", "", "")
    add_server_arguments(parser)
    args = [a.replace("${workspaceFolder}", str(tmp_path)).replace("/path/to", str(tmp_path)) for a in args]
    return settings_from_args(parser.parse_args(args))


def test_readme_is_short_and_its_contents_list_its_headings() -> None:
    text = README.read_text()
    assert len(text) <= README_MAX_CHARS, f"README.md has {len(text):,} characters; move internals beside the code"
    contents = re.search(r"^## Contents\n\n((?:\s*- \[.*\n)+)", text, flags=re.MULTILINE)
    assert contents is not None
    entries = re.findall(r"^( *)- \[(.+?)\]\(#(.+?)\)$", contents[1], flags=re.MULTILINE)
    listed = [(2 + len(indent) // 2, title) for indent, title, _ in entries]
    assert listed == [h for h in _headings() if h[1] not in ("Contents", "Licence")]
    assert [anchor for *_, anchor in entries] == [_anchor(title) for _, title in listed]


def test_readme_starts_with_the_two_set_up_commands_that_ci_runs() -> None:
    first = _readme_blocks("sh")[0].splitlines()
    assert [line.split("#")[0].strip() for line in first] == [
        "uvx --from . nbmcp path/to/notebook.ipynb",
        "python3 tests/run.py",
    ]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci[-1] == "python3 tests/run.py"
    # Installed from the checkout, never by name: PyPI's `nbmcp` is another project.
    install = [line.strip() for block in _readme_blocks("sh") for line in block.splitlines() if "install" in line]
    assert "uv tool install ." in install
    assert not re.search(r"(pip|uv tool|pipx) install (--\S+ )*nbmcp\b", "\n".join(install))


def test_readme_client_configurations_parse_and_name_options_nbmcp_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdio, http = [], []
    for block in _readme_blocks("json"):
        config = json.loads(block)
        for entry in (config.get("mcpServers") or config["servers"]).values():
            (http if "url" in entry else stdio).append(entry)
    for block in _readme_blocks("toml"):
        stdio.extend(tomllib.loads(block)["mcp_servers"].values())
    # Claude Desktop, VS Code, Codex and the Jupyter-server form; plus VS Code over HTTP.
    assert len(stdio) == 4 and len(http) == 1
    for entry in stdio:
        assert entry["command"] == "nbmcp"  # the installed command: offline, and starts in about a second
        for name, value in entry.get("env", {}).items():
            monkeypatch.setenv(name, value)
        settings = _nbmcp_args(entry["args"], tmp_path)
        if "env" in entry:  # a notebook on a Jupyter server, named by the seed's variables
            assert (settings.document_url, settings.runtime_url) == (
                entry["env"]["DOCUMENT_URL"],
                entry["env"]["RUNTIME_URL"],
            )
            for name in entry["env"]:
                monkeypatch.delenv(name)
        else:
            assert settings.path == tmp_path / "analysis.ipynb"
    # The one-line forms (Claude Code, Codex) give nbmcp the same arguments.
    lines = re.findall(r"mcp add (?:--scope project )?notebook -- nbmcp ([^`]+)`", README.read_text())
    assert len(lines) >= 2
    for line in lines:
        assert _nbmcp_args(line.split(), tmp_path).path == tmp_path / "analysis.ipynb"
    # Over HTTP: the URL is where `--transport streamable-http` listens by default, with the bearer token.
    [entry] = http
    defaults = _nbmcp_args(["--transport", "streamable-http"], tmp_path)
    assert entry["url"] == f"http://{defaults.host}:{defaults.port}/mcp"
    assert entry["headers"]["Authorization"].startswith("Bearer ")


# A fresh virtual environment and a wheel build: minutes on a loaded 2-core machine.
@pytest.mark.timeout(600)
def test_quick_start_install_from_the_checkout_gives_a_working_command(tmp_path: Path) -> None:
    # The quick start's install, `pip install .` form, on a copy of the checkout (a build writes into it).
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    # nbmcp's dependencies come from this environment (no download of them); nbmcp itself from the checkout.
    [site] = (env_dir / "lib").glob("python3*/site-packages")
    (site / "deps-from-the-test-environment.pth").write_text(
        "\n".join(p for p in sys.path if p.endswith("-packages")) + "\n"
    )
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(checkout)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr
    version = subprocess.run([str(bin_dir / "nbmcp"), "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"nbmcp {__version__}"
    # The installed package, not this checkout's, with the live view's files in it.
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import nbmcp, pathlib; print(pathlib.Path(nbmcp.__file__).parent)"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not the checkout, whose nbmcp/ would be imported first
    )
    package = Path(where.stdout.strip())
    assert package.is_relative_to(env_dir), package
    assert list((package / "view" / "static").glob("*.js"))


def test_readme_names_every_tool_and_what_read_only_keeps() -> None:
    text = README.read_text()
    table = text[text.index("| tool | parameters | does |") : text.index("The seed deployment's names")]
    rows = [line.split("|")[1] for line in table.splitlines()[2:] if line.startswith("|")]
    in_table = {name for row in rows for name in re.findall(r"`(\w+)`", row)}
    folder_tools = {"list_notebooks", "use_notebook", "unuse_notebook"}  # "Several notebooks in one server"
    assert in_table == set(ALL_TOOLS) - folder_tools
    section = text[text.index("## Several notebooks in one server") : text.index("## A notebook on a Jupyter server")]
    assert all(f"`{name}" in section for name in folder_tools)
    said = re.search(r"`--read-only` keeps (.+?)\.", text, flags=re.DOTALL)
    assert said is not None
    words = " ".join(said[1].split())
    kept = {name for name in ALL_TOOLS if name.startswith("read_")} if "the `read_*` tools" in words else set()
    kept |= set(re.findall(r"`(\w+)`", words))
    assert kept == set(READ_ONLY_SERVER_TOOLS)


# A kernel start and a few cells; slow on a loaded machine.
@pytest.mark.timeout(300)
def test_readme_python_api_example_runs(tmp_path: Path) -> None:
    [example] = _readme_blocks("python")
    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2.8\n"  # as its comment says
    cells = read_nb(tmp_path / "report.ipynb").cells
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]
    assert all(c.execution_count for c in cells[1:])  # run_all ran them again
