"""Issue 4 flags: --tools, --read-only, the output budget and --python, through the MCP client."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from nbmcp.cli.main import _parser, cli
from nbmcp.cli.options import settings_from_args
from nbmcp.config import Settings
from nbmcp.server.app import build_server
from nbmcp.server.render import MAX_IMAGE_BYTES, MAX_OUTPUT_CHARS, MIN_OUTPUT_CHARS
from nbmcp.server.tools import READ_ONLY_SERVER_TOOLS, WORKSPACE_TOOLS

from .conftest import make_venv, read_nb, site_packages, text_of
from .test_tools import PNG_B64

pytestmark = pytest.mark.anyio


async def call(client: Client, tool: str, **args: object) -> Any:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    return result


async def listed(client: Client) -> set[str]:
    return {t.name for t in (await client.list_tools()).tools}


async def test_read_only_lists_no_mutating_tool_and_refuses_one_called_by_name(nb_path: Path) -> None:
    async with Client(build_server(Settings(path=nb_path, timeout=60))) as client:
        await call(client, "append_execute_code_cell", cell_source="answer = 42\nanswer")
    before = nb_path.read_bytes()
    async with Client(build_server(Settings(path=nb_path, timeout=60, read_only=True))) as client:
        tools = (await client.list_tools()).tools
        # A server of one notebook has no workspace tools (list_notebooks is for folders).
        assert {t.name for t in tools} == set(READ_ONLY_SERVER_TOOLS) - set(WORKSPACE_TOOLS)
        assert "list_variables" not in {t.name for t in tools}  # it needs a kernel: --read-only starts none
        assert all(t.annotations and t.annotations.read_only_hint for t in tools)
        for tool, args in [
            ("delete_cell", {"cell_index": 0}),
            ("append_markdown_cell", {"cell_source": "x"}),
            ("execute_code", {"code": "1"}),
            ("clear_all_outputs", {}),
        ]:
            r = await client.call_tool(tool, args)
            assert r.is_error, tool
            assert f"tool {tool!r} is not available on this server" in text_of(r)
            assert "--read-only" in text_of(r) and "read_notebook" in text_of(r)
        r = await call(client, "read_cell", cell_index=0)
        assert "42" in text_of(r)
        # --read-only starts no kernel (issue 12): tools that need one are not offered, and refused.
        r = await client.call_tool("list_variables", {})
        assert r.is_error and "--read-only" in text_of(r)
    assert nb_path.read_bytes() == before


async def test_tools_flag_exposes_only_the_named_tools(nb_path: Path) -> None:
    settings = Settings(path=nb_path, timeout=60, tools=("insert_cell", "read_notebook"), kernel_at_open=False)
    async with Client(build_server(settings)) as client:
        assert await listed(client) == {"insert_cell", "read_notebook"}
        await call(client, "insert_cell", cell_index=-1, cell_type="markdown", cell_source="# hi")
        r = await client.call_tool("delete_cell", {"cell_index": 0})
        assert r.is_error and "given with --tools: read_notebook, insert_cell" in text_of(r)
    assert [c.source for c in read_nb(nb_path).cells] == ["# hi"]


def test_cli_flags_reach_the_settings(nb_path: Path) -> None:
    flags = ["--tools", "read_cell, read_notebook", "--read-only", "--max-output-chars", "5000"]
    ns = _parser().parse_args([str(nb_path), *flags, "--max-image-bytes", "2048"])
    settings = settings_from_args(ns)
    assert settings.tools == ("read_cell", "read_notebook") and settings.read_only
    assert (settings.max_output_chars, settings.max_image_bytes) == (5000, 2048)
    defaults = settings_from_args(_parser().parse_args([str(nb_path)]))
    assert (defaults.tools, defaults.read_only) == (None, False)
    assert (defaults.max_output_chars, defaults.max_image_bytes) == (MAX_OUTPUT_CHARS, MAX_IMAGE_BYTES)
    assert MIN_OUTPUT_CHARS == 500


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tools", "read_cell,bogus"], "unknown tool(s) bogus; valid: append_markdown_cell"),
        (["--read-only", "--tools", "delete_cell"], "no tool left to expose"),
        (["--max-output-chars", "499"], "--max-output-chars must be at least 500"),
        (["--max-image-bytes", "-1"], "--max-image-bytes must be 0"),
    ],
)
def test_cli_rejects_bad_flags(
    nb_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(str(nb_path), *args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not nb_path.exists()


async def test_max_output_chars_and_image_cap_are_applied(nb_path: Path) -> None:
    settings = Settings(path=nb_path, timeout=60, max_output_chars=1000, max_image_bytes=10)
    code = (
        "import base64\nfrom IPython.display import Image, display\n"
        f"print('y' * 5000)\ndisplay(Image(data=base64.b64decode('{PNG_B64}')))"
    )
    async with Client(build_server(settings)) as client:
        r = await call(client, "append_execute_code_cell", cell_source=code)
        text = text_of(r)
        # The image note takes its part of the 1000-character budget; the text gets the rest.
        omitted = re.search(r"(\d+) characters omitted; read_cell_output\(cell_id='\w+', output_index=0", text)
        assert omitted and 4000 <= int(omitted.group(1)) < 4500, text
        # The budget, plus the head line and the first line that names what was left out.
        assert len(text) < 1000 + 500
        assert not [c for c in r.content if c.type == "image"]
        assert (
            "image/png image of 69 bytes (output 1) not shown: over the 10-byte image cap (--max-image-bytes)" in text
        )
        r = await call(client, "read_cell_output", cell_index=0, max_chars=100_000)
        page = text_of(r).split("\n", 1)[1]
        assert len(page) == 1000  # never more than the budget per answer
        r = await call(client, "execute_code", code="print('z' * 3000)")
        assert "2201 characters omitted; this output was not saved anywhere" in text_of(r)
        assert "execution_count" not in text_of(r)  # execute_code takes no execution count
    # The file keeps every output whole.
    outputs = read_nb(nb_path).cells[0].outputs
    assert outputs[0].text == "y" * 5000 + "\n" and "image/png" in outputs[1].data


def _venv_with_module(root: Path) -> Path:
    """A virtual environment whose site-packages alone has the module `only_in_that_env`.

    It reaches ipykernel through a .pth line to the test environment's site-packages (no network, no
    pip), so the module is the only thing the two environments do not share.
    """
    python = make_venv(root / "other-env", ipykernel=True)
    Path(site_packages(python), "only_in_that_env.py").write_text("import sys\nWHERE = sys.prefix\n")
    return python


async def test_python_flag_runs_code_with_that_interpreter(nb_path: Path, tmp_path: Path) -> None:
    python = _venv_with_module(tmp_path)
    assert importlib.util.find_spec("only_in_that_env") is None  # nbmcp's own environment lacks it
    async with Client(
        build_server(Settings(path=nb_path, timeout=60, python=str(python), structured_output=True))
    ) as client:
        r = await call(client, "append_execute_code_cell", cell_source="import only_in_that_env, sys\nsys.prefix")
        assert r.structured_content["status"] == "ok", text_of(r)
        assert str(python.parent.parent) in text_of(r)
        kernel = (await call(client, "get_notebook_info")).structured_content["kernel"]
        assert kernel["interpreter"] == str(python) and kernel["chosen_by"] == "--python"
