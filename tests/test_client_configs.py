"""The client set-ups in examples/: each parses in its client's own format and starts nbmcp with arguments
nbmcp's own parser accepts (issue 23).

The formats, as each client documents them: Claude Desktop and Cursor `mcpServers.NAME.{command,args}`;
Claude Code's `.mcp.json` the same with `"type": "stdio"` and `"alwaysLoad"`; VS Code `servers.NAME` with
`"type": "stdio"`; Gemini CLI's `settings.json` `mcpServers.NAME.{command,args}`; Codex's `config.toml`
`[mcp_servers.NAME]` with `command`, `args`, `required`, `startup_timeout_sec`, `tool_timeout_sec`;
OpenCode's `opencode.json` `mcp.NAME` with `"type": "local"` and `command` as one list (OpenCode 1.x).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from nbmcp.cli.options import add_server_arguments, command_parser, settings_from_args
from nbmcp.config import Settings
from nbmcp.server.render import MAX_OUTPUT_CHARS
from nbmcp.session.executions import DEFAULT_MAX_WAIT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def _entry(name: str) -> tuple[dict[str, Any], list[str]]:
    """The `notebook` server of examples/`name` and the command line it starts (command first)."""
    text = (EXAMPLES / name).read_text()
    if name.endswith(".toml"):
        entry = tomllib.loads(text)["mcp_servers"]["notebook"]
        return entry, [entry["command"], *entry.get("args", [])]
    config = json.loads(text)
    if name == "opencode.json":
        assert config["$schema"] == "https://opencode.ai/config.json"
        entry = config["mcp"]["notebook"]
        return entry, list(entry["command"])
    entry = (config["servers"] if name == ".vscode/mcp.json" else config["mcpServers"])["notebook"]
    return entry, [entry["command"], *entry.get("args", [])]


def _settings(args: list[str], tmp_path: Path) -> Settings:
    """Settings from a configuration's arguments, parsed by nbmcp's own parser (paths pointed into tmp_path)."""
    parser = command_parser("nbmcp", "", "")
    add_server_arguments(parser)
    args = [a.replace("${workspaceFolder}", str(tmp_path)).replace("/path/to", str(tmp_path)) for a in args]
    return settings_from_args(parser.parse_args(args))


CLIENT_FILES = [
    "claude_desktop_config.json",
    "claude_code.mcp.json",
    ".vscode/mcp.json",
    ".cursor/mcp.json",
    "codex_config.toml",
    "gemini_settings.json",
    "opencode.json",
]


@pytest.mark.parametrize("name", CLIENT_FILES)
def test_each_client_file_starts_nbmcp_with_arguments_it_accepts(name: str, tmp_path: Path) -> None:
    entry, command = _entry(name)
    # The installed command (uv tool install / pipx install): it starts offline and in about a second.
    assert command[0] == "nbmcp", command
    settings = _settings(command[1:], tmp_path)
    assert settings.path == tmp_path / "analysis.ipynb"
    assert settings.transport == "stdio"
    # Plain answers: a model client needs no --structured-output.
    assert settings.structured_output is False
    # Nothing else a client would drop or refuse: the keys each client documents for a stdio server.
    allowed = {
        "codex_config.toml": {"command", "args", "required", "startup_timeout_sec", "tool_timeout_sec"},
        "opencode.json": {"type", "command", "enabled", "timeout"},
        "claude_code.mcp.json": {"type", "command", "args", "alwaysLoad"},
    }.get(name, {"type", "command", "args"})
    assert set(entry) <= allowed, set(entry) - allowed
    if "type" in entry:
        assert entry["type"] == ("local" if name == "opencode.json" else "stdio")


def test_codex_waits_for_nbmcp_and_fails_loudly_without_it() -> None:
    entry, _ = _entry("codex_config.toml")
    # Not required, `codex exec` gives a server about a second before its first model request and then
    # runs the whole turn without its tools (issue 23); required, it waits up to startup_timeout_sec.
    assert entry["required"] is True
    assert entry["startup_timeout_sec"] >= 10  # Codex's default; nbmcp took up to 3.4 s under load
    assert entry["tool_timeout_sec"] > DEFAULT_MAX_WAIT  # an execution answers within --max-wait


def test_claude_code_waits_for_nbmcp_before_its_first_model_request() -> None:
    entry, _ = _entry("claude_code.mcp.json")
    # Without it, `claude -p` (2.1.197) sends its first model request without waiting for --mcp-config
    # servers: nbmcp's tools were missing in 5 of 12 runs (tests/clients); with it, Claude Code waits up to 5 s.
    assert entry["alwaysLoad"] is True


def test_codex_lets_a_whole_answer_through() -> None:
    config = tomllib.loads((EXAMPLES / "codex_config.toml").read_text())
    # Codex cut nbmcp's 20,134-character answer to 11,984 characters, its marker with it (tests/clients);
    # with this limit (tokens, each at least one character) the answer arrived whole.
    assert config["tool_output_token_limit"] >= MAX_OUTPUT_CHARS


def test_opencode_gives_nbmcp_time_to_list_its_tools() -> None:
    entry, _ = _entry("opencode.json")
    # OpenCode's timeout is milliseconds for listing the tools (5000 by default).
    assert entry["enabled"] is True and entry["timeout"] >= 10_000


@pytest.mark.parametrize("name", CLIENT_FILES)
def test_the_readme_points_at_each_client_file(name: str) -> None:
    assert f"(examples/{name})" in (ROOT / "README.md").read_text()
