"""The live notebook view inside the chat: an MCP App (issue 22, item 6).

MCP Apps (the `io.modelcontextprotocol/ui` extension, spec 2026-01-26) lets a tool name a `ui://`
resource, an HTML document of type `text/html;profile=mcp-app`, that a host which renders apps (Claude
Desktop, VS Code, ChatGPT, Goose) shows in a sandboxed frame beside the tool's answer. nbmcp serves one:

- `APP_URI`: the view, one self-contained document (the browser view's stylesheet and renderer's
  fragments, and `view/static/mcp_app.js`, which speaks the app's side of the protocol over postMessage);
- the execution and read tools name it in `_meta.ui.resourceUri` (`APP_TOOL_META`, `APP_LINKED_TOOLS`).
  Their answers do not change: a client that does not render apps sees exactly what it saw before;
- `view_notebook`, a tool for the app only (`_meta.ui.visibility: ["app"]`): the app calls it through
  the host for the cells rendered as HTML (with the browser view's renderer), the running cell with its
  outputs so far, and the cell the last tool touched. It and the resource are listed only to clients
  that say they render apps (`NotebookServer`, the server class nbmcp runs, makes the lists), so other
  clients' lists stay as they were (both can be had by name by anyone: they only read).

The app asks for fresh content itself, as the spec describes (a host proxies `tools/call` for it): after
each tool result the host hands it, and about once a second while it is shown.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import html
import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp, client_supports_apps
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resources import FunctionResource
from mcp.types import CallToolResult, ListResourcesResult, ListToolsResult, TextContent, Tool, ToolAnnotations
from pydantic import Field

from ..errors import NbmcpError
from ..notebook.store import LocalStore
from ..session.session import NotebookSession
from ..view.live import NotebookFeed
from ..view.render import FRAME_SCRIPT, pygments_css

__all__ = [
    "APP_CELLS_PER_CALL",
    "APP_LINKED_TOOLS",
    "APP_MIME_TYPE",
    "APP_TOOL",
    "APP_TOOL_META",
    "APP_URI",
    "NotebookServer",
    "app_document",
    "notebook_app",
]

#: The app's resource.
APP_URI = "ui://nbmcp/notebook-view"
#: The app-only tool the app calls for the notebook's cells.
APP_TOOL = "view_notebook"
#: What a linked tool carries in `_meta` (a host that renders apps shows APP_URI beside its answer).
APP_TOOL_META: dict[str, Any] = {"ui": {"resourceUri": APP_URI}}
#: The tools whose call shows the view: the ones that run cells and the ones that read them.
APP_LINKED_TOOLS = frozenset(
    {
        "execute_cell",
        "execute_cell_simple_timeout",
        "execute_cell_streaming",
        "execute_cell_with_progress",
        "append_execute_code_cell",
        "insert_execute_code_cell",
        "execute_code",
        "wait_for_execution",
        "execute_all_cells",
        "read_cell",
        "read_all_cells",
        "read_notebook",
    }
)
#: Cells rendered in one view_notebook answer at most; the app asks again for the rest (`more`).
APP_CELLS_PER_CALL = 200

SessionGetter = Callable[[Context], Awaitable[NotebookSession]]

_STATIC = resources.files("nbmcp.view") / "static"

_DOCUMENT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nbmcp notebook view</title>
<style>{css}</style></head>
<body class="mcp-app">
<header><span class="name" id="name">notebook</span><span id="status">connecting</span>
<label><input type="checkbox" id="follow" checked> follow</label></header>
<div id="error" hidden></div>
<main id="cells"></main>
<script>{script}</script>
</body></html>
"""

#: The app's own additions to the browser view's stylesheet: the cells scroll inside a frame of bounded height.
_APP_CSS = """
body.mcp-app main { max-height: 640px; overflow-y: auto; padding-bottom: 16px; }
body.mcp-app header label { font-size: 12px; color: #616161; }
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.cache
def app_document() -> str:
    """The app's HTML: one document with its stylesheet and script inline, nothing fetched from a network.

    Its Content-Security-Policy lets run only its own script and the renderer's frame script (by hash,
    the latter inside the sandboxed frames of HTML outputs, which inherit the policy), so script in a
    notebook's markdown or outputs never runs in the app.
    """
    script = (_STATIC / "mcp_app.js").read_text(encoding="utf-8")
    css = (_STATIC / "view.css").read_text(encoding="utf-8") + pygments_css() + _APP_CSS
    csp = (
        f"default-src 'none'; script-src {_sha256(script)} {_sha256(FRAME_SCRIPT)}; "
        "style-src 'unsafe-inline'; img-src data:; frame-src 'self' about: data:; base-uri 'none'; form-action 'none'"
    )
    # A script element ends at the first "</script": the file holds none, and this keeps it so.
    if "</script" in script.lower():
        raise ValueError("mcp_app.js must not contain '</script'")
    return _DOCUMENT.format(csp=html.escape(csp, quote=True), css=css, script=script)


class _Views:
    """One NotebookFeed per notebook the app shows: reads the file, keeps rendered cells by hash."""

    def __init__(self) -> None:
        self._feeds: dict[Path, NotebookFeed] = {}

    def feed(self, session: NotebookSession) -> NotebookFeed:
        feed = self._feeds.get(session.path)
        if feed is None:
            # The session's activity (the running cell, the last tool) is what the browser view reads too.
            feed = NotebookFeed(session.path, lambda: session.activity)
            self._feeds[session.path] = feed
        return feed

    def view(
        self, session: NotebookSession, known: set[str], state: str | None, ids: list[str] | None
    ) -> dict[str, Any]:
        """What the app shows (called in a worker thread: reading and rendering take a moment)."""
        feed = self.feed(session)
        feed.load()
        feed.poll_activity()
        snapshot = feed.snapshot()
        order: list[str] = snapshot["order"]
        hashes: dict[str, str] = snapshot["hashes"]
        stamp = hashlib.blake2b(json.dumps([order, hashes]).encode(), digest_size=8).hexdigest()
        answer: dict[str, Any] = {
            "name": snapshot["name"],
            "state": stamp,
            "count": len(order),
            "running": snapshot["running"],
            "last": snapshot["last"],
            "error": snapshot["error"],
        }
        if stamp != state:
            answer.update(order=order, hashes=hashes)
        elif ids is None:
            return answer  # the app has every cell it asked for already
        # The cells the app shows (or, before it shows any, all of them) that it has not rendered as they are.
        wanted = order if ids is None else [key for key in ids if key in hashes]
        missing = [key for key in wanted if hashes[key] not in known]
        answer["cells"] = feed.rendered(missing[:APP_CELLS_PER_CALL])
        answer["more"] = len(missing) > APP_CELLS_PER_CALL
        return answer


def notebook_app(get_session: SessionGetter, requested_notebook: ContextVar[str | None]) -> Apps:
    """The MCP Apps extension for a server: the view's resource and the app-only `view_notebook` tool.

    `get_session` gives the notebook of a call, after `requested_notebook` (the variable the other
    tools' wrapper sets) holds the notebook_path the call named.
    """
    apps = Apps()
    views = _Views()
    # Built when a host first reads it (add_html_resource would build it now, while the client waits
    # for `initialize`: the highlighting stylesheet alone takes milliseconds).
    ui = {
        "csp": ResourceCsp().model_dump(by_alias=True, exclude_none=True),  # no network: all comes through the host
        "prefersBorder": True,
    }
    apps.add_resource(
        FunctionResource(
            uri=APP_URI,
            name="notebook-view",
            title="Notebook view",
            description="The notebook as Jupyter shows it, kept current while the assistant edits and runs it.",
            mime_type=APP_MIME_TYPE,
            meta={"ui": ui},
            fn=functools.cache(app_document),
        )
    )

    @apps.tool(
        resource_uri=APP_URI,
        visibility=["app"],
        name=APP_TOOL,
        title="Notebook view (for the app)",
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True),
    )
    async def view_notebook(
        ctx: Context,
        known: Annotated[
            list[str] | None, Field(description="Hashes of the cells the app has rendered already.")
        ] = None,
        state: Annotated[str | None, Field(description="The `state` of the app's last answer.")] = None,
        ids: Annotated[
            list[str] | None, Field(description="The ids of the cells the app shows (default: all cells).")
        ] = None,
        notebook_path: str | None = None,
    ) -> CallToolResult:
        """The notebook's cells rendered as HTML for nbmcp's notebook view app (not for a model).

        structuredContent: name, state, count, running (id, elapsed, tool, html of its outputs so far),
        last (id, tool), error; order (cell ids) and hashes (id -> hash) unless `state` says the app has
        them; cells (id, hash, type, html): those of `ids` (all cells when not given, and then only if
        the state changed) whose hash is not in `known`, at most APP_CELLS_PER_CALL (`more`: some are left).
        """
        token = requested_notebook.set(notebook_path)
        try:
            session = await get_session(ctx)
            if not isinstance(session.store, LocalStore):
                raise ToolError("the notebook view shows notebooks on this machine only")
            answer = await anyio.to_thread.run_sync(views.view, session, set(known or ()), state, ids)
        except NbmcpError as exc:
            raise ToolError(str(exc)) from exc
        finally:
            requested_notebook.reset(token)
        summary = f"{answer['name']}: {answer['count']} cells (rendered for nbmcp's notebook view app)"
        return CallToolResult(content=[TextContent(type="text", text=summary)], structured_content=answer)

    return apps


class NotebookServer(MCPServer):
    """The MCPServer nbmcp runs: it lists the exposed tools, and the app's tool and resource to clients of apps.

    Exposed: all, or those --tools and --read-only leave. The others stay registered, so a client that
    calls one by name gets a clear refusal (or, for view_notebook, its answer).
    """

    exposed: frozenset[str] | None = None
    #: Set after the first tools/list is answered (the workspace starts its kernel then).
    listed: anyio.Event | None = None

    async def list_tools(self) -> list[Tool]:
        tools = await super().list_tools()
        return [t for t in tools if self.exposed is None or t.name in self.exposed]

    # These override MCPServer's handlers: the one place that knows which client asks (list_tools does not).
    async def _handle_list_tools(self, ctx: Any, params: Any) -> ListToolsResult:
        tools = await self.list_tools()
        if client_supports_apps(ctx):
            tools += [t for t in await super().list_tools() if t.name == APP_TOOL]
        if self.listed is not None and not self.listed.is_set():
            # After this answer is on its way: the event wakes the waiting task at the loop's next turn.
            asyncio.get_running_loop().call_soon(self.listed.set)
        return ListToolsResult(tools=tools)

    async def _handle_list_resources(self, ctx: Any, params: Any) -> ListResourcesResult:
        resources = await self.list_resources()
        if not client_supports_apps(ctx):  # a host reads it by its URI; other clients' lists stay as they were
            resources = [r for r in resources if str(r.uri) != APP_URI]
        return ListResourcesResult(resources=resources)
