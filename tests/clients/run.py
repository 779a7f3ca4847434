"""Runs real agent clients against a scripted model and a real nbmcp; prints what each client's model received.

Usage (see README.md here): ``python tests/clients/run.py --bin DIR [--clients claude,gemini,codex,opencode]
[--scenarios image,traceback,long] [--keep DIR] [-- NBMCP_ARGS...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent.parent / "examples"
TOOL = "append_execute_code_cell"
# Set from the command line: codex_optional drops `required`/`startup_timeout_sec` from Codex's entry (to see
# its start-up race); codex_model is the model name Codex sends (its budget for a tool result depends on it);
# codex_config are `codex exec -c KEY=VALUE` overrides; claude_no_always_load drops `"alwaysLoad"` from
# Claude Code's entry (it then does not wait for nbmcp).
OPTIONS: dict[str, Any] = {
    "codex_optional": False,
    "codex_model": "scripted-model",
    "codex_config": [],
    "claude_no_always_load": False,
    "codex_code_mode": False,
}
PROMPT = "Run the scenario cell in the notebook."

SCENARIOS = {
    "image": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()",
    "traceback": "def f():\n    return 1 / 0\n\nf()",
    # 300,000 characters of six-digit counters: the numbers around a cut show where it was made.
    "long": "print(''.join(f'{i:06d}' for i in range(50000)))",
    "hello": "print('hello')",
}


def example(name: str, notebook: Path, extra: list[str]) -> str:
    """examples/`name` as a user copies it, with the notebook's path (and any extra nbmcp options) filled in.

    The command stays `nbmcp`: the runner puts the running Python's scripts folder first on PATH.
    """
    args = ", ".join(json.dumps(a) for a in [str(notebook), *extra])
    text = (EXAMPLES / name).read_text()
    assert '"/path/to/analysis.ipynb"' in text, name
    return text.replace('"/path/to/analysis.ipynb"', args)


def setup_claude(
    home: Path, base: str, notebook: Path, extra: list[str], bindir: Path
) -> tuple[list[str], dict[str, str]]:
    config = json.loads(example("claude_code.mcp.json", notebook, extra))
    if OPTIONS["claude_no_always_load"]:
        config["mcpServers"]["notebook"].pop("alwaysLoad", None)
    path = home / "mcp.json"
    path.write_text(json.dumps(config))
    argv = [
        str(bindir / "claude"),
        "-p",
        PROMPT,
        "--mcp-config",
        str(path),
        "--strict-mcp-config",
        "--allowedTools",
        "mcp__notebook__append_execute_code_cell",
        "--model",
        "claude-sonnet-4-5",
        "--output-format",
        "json",
        # Its log: MCP connection time, how it stops the server.
        "--debug-file",
        str(home.parent / "client-debug.txt"),
    ]
    env = {
        "ANTHROPIC_BASE_URL": base,
        "ANTHROPIC_API_KEY": "sk-ant-scripted",
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    return argv, env


def setup_gemini(
    home: Path, base: str, notebook: Path, extra: list[str], bindir: Path
) -> tuple[list[str], dict[str, str]]:
    settings = json.loads(example("gemini_settings.json", notebook, extra))
    settings.update(
        {
            "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
            "privacy": {"usageStatisticsEnabled": False},
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
            "telemetry": {"enabled": False},
        }
    )
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    # --yolo: tool calls run without asking (there is nobody to ask).
    argv = [str(bindir / "gemini"), "-p", PROMPT, "--yolo", "-m", "gemini-2.5-flash", "--output-format", "json"]
    env = {"GEMINI_API_KEY": "scripted", "GOOGLE_GEMINI_BASE_URL": base}
    return argv, env


def setup_codex(
    home: Path, base: str, notebook: Path, extra: list[str], bindir: Path
) -> tuple[list[str], dict[str, str]]:
    codex_home = home / ".codex"
    codex_home.mkdir()
    lines = example("codex_config.toml", notebook, extra).splitlines()
    if OPTIONS["codex_optional"]:
        lines = [line for line in lines if not line.startswith(("required", "startup_timeout_sec"))]
    # Top-level keys first, then the example (its own top-level keys, then its table), then the provider.
    (codex_home / "config.toml").write_text(
        f"""model = "{OPTIONS["codex_model"]}"
model_provider = "scripted"
approval_policy = "never"
sandbox_mode = "danger-full-access"
"""
        + "\n".join(lines)
        + f"""

[model_providers.scripted]
name = "scripted"
base_url = "{base}/v1"
wire_api = "responses"
env_key = "SCRIPTED_API_KEY"
"""
    )
    extra_config = [*OPTIONS["codex_config"], *(["features.code_mode=true"] if OPTIONS["codex_code_mode"] else [])]
    overrides = [a for kv in extra_config for a in ("-c", kv)]
    argv = [str(bindir / "codex"), "exec", "--skip-git-repo-check", *overrides, PROMPT]
    env = {"CODEX_HOME": str(codex_home), "SCRIPTED_API_KEY": "scripted"}
    return argv, env


def setup_opencode(
    home: Path, base: str, notebook: Path, extra: list[str], bindir: Path
) -> tuple[list[str], dict[str, str]]:
    config = json.loads(example("opencode.json", notebook, extra))
    config.update(
        {
            "model": "scripted/scripted-model",
            "autoupdate": False,
            "share": "disabled",
            "provider": {
                "scripted": {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "scripted",
                    "options": {"baseURL": f"{base}/v1", "apiKey": "scripted"},
                    "models": {
                        "scripted-model": {
                            "name": "scripted",
                            "tool_call": True,
                            # A model that takes images, as a user would pick for plots.
                            "attachment": True,
                            "modalities": {"input": ["text", "image"], "output": ["text"]},
                        }
                    },
                }
            },
        }
    )
    path = home / "opencode.json"
    path.write_text(json.dumps(config))
    argv = [str(bindir / "opencode"), "run", PROMPT]
    env = {"OPENCODE_CONFIG": str(path), "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_LSP_DOWNLOAD": "1"}
    return argv, env


CLIENTS = {"claude": setup_claude, "gemini": setup_gemini, "codex": setup_codex, "opencode": setup_opencode}


def tool_result(turn: dict[str, Any]) -> Any:
    """The tool result as it appears in the client's request to the model."""
    api, body = turn["api"], turn["body"]
    if api == "anthropic":
        return [
            b
            for m in body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_result"
        ]
    if api == "responses":
        return [i for i in body["input"] if isinstance(i, dict) and i.get("type", "").endswith("_call_output")]
    if api == "chat":
        messages = body["messages"]
        first = next(i for i, m in enumerate(messages) if m.get("role") == "tool")
        return messages[first:]
    found = False
    parts = []
    for content in body["contents"]:
        for part in content.get("parts") or []:
            found = found or "functionResponse" in part
            if found:
                parts.append(part)
    return parts


def strip_images(value: Any) -> Any:
    """The value with base64 image data replaced by its length (kept readable)."""
    if isinstance(value, dict):
        return {
            k: (
                f"<{len(v)} base64 chars>"
                if k in ("data", "image_url", "url") and isinstance(v, str) and len(v) > 200
                else strip_images(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [strip_images(v) for v in value]
    if isinstance(value, str) and value.startswith("data:image") and len(value) > 200:
        return f"<data URL, {len(value)} chars>"
    return value


def describe(result: Any) -> dict[str, Any]:
    """Facts about a tool result: its text (length, whether it is escaped JSON), images, where a long output was cut."""
    flat = json.dumps(result)
    images = len(
        re.findall(r'"(?:type": "image|mimeType": "image/png|media_type": "image/png|image_url|input_image)', flat)
    )
    texts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k in ("text", "content", "output", "result") and isinstance(v, str):
                    texts.append(v)
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(result)
    text = max(texts, key=len) if texts else ""
    marker = text.find("characters omitted")
    return {
        "texts": len(texts),
        "text_chars": len(text),
        "escaped_json": text.lstrip().startswith("{"),
        "image_markers": images,
        "first_line": text.splitlines()[0][:200] if text else "",
        # Where the long output was cut: nbmcp's marker (and the digits either side), the text's end.
        "nbmcp_marker_at": marker if marker >= 0 else None,
        "around_marker": text[max(0, marker - 40) : marker + 160] if marker >= 0 else None,
        "text_end": text[-60:],
        "other_cut_notes": re.findall(
            r"[^\n]{0,80}\\b(?:truncat\\w*|omitted|cut)\\b[^\n]{0,80}", text.replace("characters omitted", "")
        )[:3],
    }


def client_env(home: Path, env: dict[str, str]) -> dict[str, str]:
    """The client's environment: its HOME and XDG folders in the temp folder, no real API keys, nbmcp on PATH."""
    keys = ("ANTHROPIC", "OPENAI", "GEMINI", "GOOGLE", "CODEX", "OPENCODE", "CLAUDE")
    full = {k: v for k, v in os.environ.items() if not k.startswith(keys)}
    full.update(env, HOME=str(home), NO_COLOR="1")
    for name, sub in [("CONFIG", ".config"), ("DATA", ".local/share"), ("CACHE", ".cache"), ("STATE", ".local/state")]:
        full[f"XDG_{name}_HOME"] = str(home / sub)
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full.get('PATH', '')}"
    return full


def run_client(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int | str, str, str]:
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        return proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return "timeout", stdout, stderr


def summarize(work: Path, started: float) -> dict[str, Any]:
    """What the model server saw: the requests, whether nbmcp's tools were offered, the tool result's facts."""
    out = work / "model"
    report: dict[str, Any] = {}
    requests = sorted((out / "requests").glob("*.json"))
    report["requests"] = [p.name for p in requests]
    if requests:
        report["first_request_after_s"] = round(json.loads(requests[0].read_text())["time"] - started, 2)
    # Whether nbmcp's tools were ready for the client's first model request that offered any tools.
    for path in requests:
        tools = json.dumps(json.loads(path.read_text())["body"].get("tools") or "")
        if tools != '""':
            report["nbmcp_tools_in_first_request"] = TOOL in tools
            break
    debug = work / "client-debug.txt"
    if debug.exists():
        report["mcp_log"] = [line[11:] for line in debug.read_text().splitlines() if 'MCP server "notebook"' in line]
    turn_path = out / "turn.json"
    if turn_path.exists():
        result = tool_result(json.loads(turn_path.read_text()))
        report["facts"] = describe(result)
        (work / "tool_result.json").write_text(json.dumps(strip_images(result), indent=1))
        report["tool_result"] = json.dumps(strip_images(result))[:600]
    else:
        report["stderr_tail"] = (work / "client.stderr").read_text()[-1500:]
        report["stdout_tail"] = (work / "client.stdout").read_text()[-800:]
    return report


def run_one(client: str, scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"nbmcp-{client}-{scenario}-"))
    home = work / "home"
    home.mkdir()
    (work / "code.py").write_text(SCENARIOS[scenario])
    notebook = work / "project" / "scenario.ipynb"
    notebook.parent.mkdir()
    server = [sys.executable, str(HERE / "model_server.py"), "--out", str(work / "model")]
    if OPTIONS["codex_code_mode"]:
        server.append("--code-mode")
    server.append("--code-file")
    with open(work / "model.log", "w") as log:
        model = subprocess.Popen([*server, str(work / "code.py")], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert model.stdout is not None
        base = f"http://127.0.0.1:{model.stdout.readline().strip()}"
        argv, env = CLIENTS[client](home, base, notebook, args.nbmcp_args, args.bin.resolve())
        start, started = time.monotonic(), time.time()
        rc, stdout, stderr = run_client(argv, notebook.parent, client_env(home, env), args.timeout)
        elapsed = time.monotonic() - start
    finally:
        model.terminate()
        model.wait()
    (work / "client.stdout").write_text(stdout)
    (work / "client.stderr").write_text(stderr)
    report = {"client": client, "scenario": scenario, "rc": rc, "seconds": round(elapsed, 1), "work": str(work)}
    report.update(summarize(work, started))
    if args.keep:
        target = args.keep / f"{client}-{scenario}"
        shutil.copytree(work / "model", target / "model", dirs_exist_ok=True)
        for name in ("client.stdout", "client.stderr", "client-debug.txt", "model.log", "tool_result.json"):
            if (work / name).exists():
                shutil.copy(work / name, target / name)
        # The rest is the temp HOME (OpenCode's provider package alone is about 50 MB).
        shutil.rmtree(work, ignore_errors=True)
        report["work"] = str(target)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bin", type=Path, required=True, help="node_modules/.bin holding claude, codex, gemini, opencode"
    )
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--scenarios", default="image,traceback,long")
    parser.add_argument("--keep", type=Path, help="copy each run's folder (requests, client output) here")
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--codex-optional", action="store_true", help="Codex without required/startup_timeout_sec")
    parser.add_argument("--codex-model", default=OPTIONS["codex_model"], help="e.g. gpt-5-codex: a model Codex knows")
    parser.add_argument("--codex-config", action="append", default=[], help="KEY=VALUE passed as codex exec -c")
    parser.add_argument("--codex-code-mode", action="store_true", help="Codex with features.code_mode: via exec")
    parser.add_argument("--claude-no-always-load", action="store_true", help='Claude Code without "alwaysLoad"')
    parser.add_argument("nbmcp_args", nargs="*", help="extra nbmcp options (after --)")
    args = parser.parse_args()
    OPTIONS.update(
        codex_optional=args.codex_optional,
        codex_model=args.codex_model,
        claude_no_always_load=args.claude_no_always_load,
        codex_code_mode=args.codex_code_mode,
        codex_config=args.codex_config,
    )
    for client in args.clients.split(","):
        for scenario in args.scenarios.split(","):
            report = run_one(client, scenario, args)
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
