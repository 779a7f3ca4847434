"""A scripted model on 127.0.0.1 that records what an agent client hands its model after an nbmcp tool call.

It speaks just enough of four model APIs for the real clients (streaming where they ask for it):
Anthropic Messages (Claude Code), OpenAI Responses (Codex), OpenAI Chat Completions (OpenCode) and
Gemini generateContent / streamGenerateContent (Gemini CLI). A request whose tools include nbmcp's
``append_execute_code_cell`` and that carries no tool result yet gets a call of that tool with the
scenario's code; the next request (which holds the tool result as the client gives it to the model) is
saved whole to ``OUT/turn.json`` and gets a final text. Every other request (titles, quota probes) gets
a short text. Every request is saved to ``OUT/requests/NNN-<api>.json``.

Run: ``python tests/clients/model_server.py --port 0 --out DIR --code-file FILE`` (prints the port).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOOL = "append_execute_code_cell"
FINAL = "Done: I read the tool result."


class State:
    def __init__(self, out: Path, code: str, code_mode: bool = False) -> None:
        self.out = out
        self.code = code
        self.code_mode = code_mode
        self.lock = threading.Lock()
        self.count = 0
        (out / "requests").mkdir(parents=True, exist_ok=True)

    def save(self, api: str, path: str, body: Any) -> None:
        with self.lock:
            self.count += 1
            name = f"{self.count:03d}-{api}.json"
        record = {"path": path, "time": time.time(), "body": body}
        (self.out / "requests" / name).write_text(json.dumps(record, indent=1))

    def save_turn(self, api: str, body: Any) -> None:
        (self.out / "turn.json").write_text(json.dumps({"api": api, "body": body}, indent=1))


def tool_name(names: list[str]) -> str | None:
    """The client's name for nbmcp's tool (clients prefix it: mcp__notebook__..., notebook_..., ...)."""
    return next((n for n in names if n.endswith(TOOL)), None)


class Handler(BaseHTTPRequestHandler):
    state: State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("model: " + (format % args) + "\n")

    def read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding") == "gzip":
            import gzip

            raw = gzip.decompress(raw)
        elif self.headers.get("Content-Encoding") == "zstd":
            return {"undecoded": "zstd body", "size": len(raw)}
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {"raw": raw.decode("utf-8", "replace")}

    def send_json(self, value: Any, status: int = 200) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, events: list[tuple[str | None, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for event, data in events:
            text = data if isinstance(data, str) else json.dumps(data)
            chunk = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
            self.wfile.write(chunk.encode())
            self.wfile.flush()
        self.close_connection = True

    def do_GET(self) -> None:
        self.state.save("get", self.path, None)
        if "/models" in self.path:
            self.send_json({"object": "list", "data": [{"id": "scripted", "object": "model"}], "models": []})
        else:
            self.send_json({})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.read_body()
        path = self.path
        if path.split("?")[0].endswith("/v1/messages"):
            self.state.save("anthropic", path, body)
            self.anthropic(body)
        elif "count_tokens" in path or ":countTokens" in path:
            self.state.save("count", path, body)
            self.send_json({"input_tokens": 10, "totalTokens": 10})
        elif path.split("?")[0].endswith("/responses"):
            self.state.save("responses", path, body)
            self.openai_responses(body)
        elif path.split("?")[0].endswith("/chat/completions"):
            self.state.save("chat", path, body)
            self.chat(body)
        elif "generatecontent" in path.lower():
            self.state.save("gemini", path, body)
            self.gemini(body, stream="streamGenerateContent" in path)
        else:
            self.state.save("other", path, body)
            self.send_json({})

    # Anthropic Messages -------------------------------------------------------------------------------

    def anthropic(self, body: dict[str, Any]) -> None:
        names = [t.get("name", "") for t in body.get("tools") or []]
        name = tool_name(names)
        has_result = any(
            isinstance(m.get("content"), list) and any(b.get("type") == "tool_result" for b in m["content"])
            for m in body.get("messages", [])
        )
        if name and has_result:
            self.state.save_turn("anthropic", body)
        blocks: list[dict[str, Any]]
        if name and not has_result:
            blocks = [
                {"type": "tool_use", "id": "toolu_01scripted", "name": name, "input": {"cell_source": self.state.code}}
            ]
            stop = "tool_use"
        else:
            blocks = [{"type": "text", "text": FINAL}]
            stop = "end_turn"
        message = {
            "id": "msg_scripted",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "scripted"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 10},
        }
        if not body.get("stream"):
            self.send_json(message)
            return
        start = dict(message, content=[], stop_reason=None)
        events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                events.append(
                    (
                        "content_block_start",
                        {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                    )
                )
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                empty = dict(block, input={})
                events.append(
                    ("content_block_start", {"type": "content_block_start", "index": i, "content_block": empty})
                )
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 10},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        self.send_sse(events)

    # OpenAI Responses (Codex) -------------------------------------------------------------------------

    def openai_responses(self, body: dict[str, Any]) -> None:
        names: list[str] = []
        namespace = None
        for tool in body.get("tools") or []:
            names.append(tool.get("name") or "")
            # Codex groups a server's tools in a namespace ("mcp__notebook"); a call names both.
            inner = [t.get("name", "") for t in tool.get("tools") or []]
            if tool_name(inner):
                namespace = tool.get("name")
            names.extend(inner)
        name = tool_name(names)
        items = body.get("input") or []
        has_result = any(isinstance(i, dict) and i.get("type", "").endswith("_call_output") for i in items)
        if name and has_result:
            self.state.save_turn("responses", body)
        code_tool = any(t.get("type") == "custom" and t.get("name") == "exec" for t in body.get("tools") or [])
        if name and not has_result and self.state.code_mode and code_tool:
            # Codex's code mode: the model writes JavaScript that calls the tool and forwards its content, as
            # the `exec` tool's description says (text() for text blocks, image() for image blocks).
            call = f"tools.{namespace}__{name}" if namespace else f"tools.{name}"
            source = json.dumps(self.state.code)
            script = (
                f"const r = await {call}({{cell_source: {source}}});\n"
                'text("result fields: " + Object.keys(r).join(", "));\n'
                'for (const c of r.content) { if (c.type === "image") image(c); else text(c.text); }\n'
            )
            item = {
                "type": "custom_tool_call",
                "id": "ctc_scripted",
                "call_id": "call_scripted",
                "name": "exec",
                "input": script,
                "status": "completed",
            }
        elif name and not has_result:
            item = {
                "type": "function_call",
                "id": "fc_scripted",
                "call_id": "call_scripted",
                "name": name,
                "arguments": json.dumps({"cell_source": self.state.code}),
                "status": "completed",
            }
            if namespace:
                item["namespace"] = namespace
        else:
            item = {
                "type": "message",
                "id": "msg_scripted",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": FINAL, "annotations": []}],
            }
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 10,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 20,
        }
        response = {
            "id": "resp_scripted",
            "object": "response",
            "status": "in_progress",
            "model": body.get("model"),
            "output": [],
        }
        done = dict(response, status="completed", output=[item], usage=usage)
        self.send_sse(
            [
                ("response.created", {"type": "response.created", "response": response}),
                ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
                ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
                ("response.completed", {"type": "response.completed", "response": done}),
            ]
        )

    # OpenAI Chat Completions (OpenCode) ---------------------------------------------------------------

    def chat(self, body: dict[str, Any]) -> None:
        names = [(t.get("function") or {}).get("name", "") for t in body.get("tools") or []]
        name = tool_name(names)
        has_result = any(m.get("role") == "tool" for m in body.get("messages", []))
        if name and has_result:
            self.state.save_turn("chat", body)
        base = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
        }
        if name and not has_result:
            call = {
                "index": 0,
                "id": "call_scripted",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps({"cell_source": self.state.code})},
            }
            delta: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            delta = {"role": "assistant", "content": FINAL}
            finish = "stop"
        usage = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
        if not body.get("stream"):
            message = dict(delta)
            if "tool_calls" in message:
                message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in delta["tool_calls"]]
            choice = {"index": 0, "message": message, "finish_reason": finish}
            self.send_json(dict(base, object="chat.completion", choices=[choice], usage=usage))
            return
        self.send_sse(
            [
                (None, dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])),
                (None, dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}], usage=usage)),
                (None, "[DONE]"),
            ]
        )

    # Gemini (Gemini CLI) ------------------------------------------------------------------------------

    def gemini(self, body: dict[str, Any], stream: bool) -> None:
        names = [d.get("name", "") for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
        name = tool_name(names)
        contents = body.get("contents") or []
        has_result = any("functionResponse" in p for c in contents for p in c.get("parts") or [])
        if name and has_result:
            self.state.save_turn("gemini", body)
        if name and not has_result:
            part: dict[str, Any] = {"functionCall": {"name": name, "args": {"cell_source": self.state.code}}}
        elif "responseSchema" in json.dumps(body.get("generationConfig") or {}) or "responseJsonSchema" in json.dumps(
            body.get("generationConfig") or {}
        ):
            # The CLI's own helpers (next-speaker checks, routing) ask for JSON.
            part = {"text": json.dumps({"reasoning": "scripted", "next_speaker": "user", "model_choice": "flash"})}
        else:
            part = {"text": FINAL}
        answer = {
            "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 10, "totalTokenCount": 20},
            "modelVersion": "scripted",
        }
        if stream:
            self.send_sse([(None, answer)])
        else:
            self.send_json(answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--code-file", type=Path, required=True, help="the cell source the model asks to run")
    parser.add_argument("--code-mode", action="store_true", help="Codex: call the tool through its `exec` tool")
    args = parser.parse_args()
    Handler.state = State(args.out, args.code_file.read_text(), args.code_mode)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
