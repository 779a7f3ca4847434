"""The floor of an MCP round trip: a server on the same SDK and transport as nbmcp that does nothing.

`empty` answers at once; `replay` returns a saved tool result, so the cost of carrying a read tool's
exact answer (serialization on both sides, the pipe) is part of that tool's floor.
Run as `python -m tests.bench.floor_server` (stdio).
"""

from __future__ import annotations

from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent

server = MCPServer("nbmcp-bench-floor")
_saved: dict[str, CallToolResult] = {}


@server.tool()
async def empty() -> CallToolResult:
    """Do nothing."""
    return CallToolResult(content=[TextContent(type="text", text="ok")])


@server.tool()
async def replay(path: str) -> CallToolResult:
    """Return the tool result saved (as JSON) at `path`; read once, then from memory."""
    result = _saved.get(path)
    if result is None:
        result = _saved[path] = CallToolResult.model_validate_json(Path(path).read_bytes())
    return result


if __name__ == "__main__":
    server.run("stdio")
