"""The MCP tools: thin translations between MCP calls and `NotebookSession` calls.

No notebook logic lives here. Tool names, parameter names and defaults of the seed deployment are
kept (each tool that takes `cell_index` also accepts `cell_id`), so existing client set-ups and
prompts keep working. The tools live in one module per family (cells, execution, reading, kernel,
workspace); `registry` holds the table and the one wrapper that turns errors into MCP errors;
`answers` the one rule for what a client shows the model.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from mcp.server.mcpserver.tools import Tool

from ...kernels.base import DEFAULT_TIMEOUT
from ...session.executions import DEFAULT_MAX_WAIT
from ..client_log import ClientLog
from ..render import MAX_IMAGE_BYTES, MAX_OUTPUT_CHARS

# Importing the family modules registers their tools.
from . import cells, execution, history, kernel, reading  # noqa: F401
from . import workspace as workspace_tools  # noqa: F401
from .answers import ANSWER_OVERHEAD
from .reading import MAX_READ_LIMIT, READ_NOTEBOOK_LIMIT
from .registry import (
    ALL_TOOLS,
    KERNEL_READ_TOOLS,
    READ_ONLY_SERVER_TOOLS,
    READ_ONLY_TOOLS,
    SEED_TOOLS,
    TOOL_ANNOTATIONS,
    WORKSPACE_TOOLS,
    SessionGetter,
    Toolbox,
    exposed_tools,
    install,
    requested_notebook,
)

if TYPE_CHECKING:
    from ..app import Workspace

__all__ = [
    "ALL_TOOLS",
    "ANSWER_OVERHEAD",
    "KERNEL_READ_TOOLS",
    "MAX_READ_LIMIT",
    "READ_NOTEBOOK_LIMIT",
    "READ_ONLY_SERVER_TOOLS",
    "READ_ONLY_TOOLS",
    "SEED_TOOLS",
    "TOOL_ANNOTATIONS",
    "WORKSPACE_TOOLS",
    "SessionGetter",
    "exposed_tools",
    "make_tools",
    "requested_notebook",
]


def make_tools(
    get_session: SessionGetter,
    *,
    max_output_chars: int = MAX_OUTPUT_CHARS,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    default_timeout: float = DEFAULT_TIMEOUT,
    tools: Collection[str] | None = None,
    read_only: bool = False,
    workspace: Workspace | None = None,
    client_log: ClientLog | None = None,
    max_wait: float = DEFAULT_MAX_WAIT,
    view_url: str | None = None,
    structured_output: bool = False,
) -> tuple[list[Tool], frozenset[str]]:
    """Every tool, for a server's `tools=`, and the names it should list (`--tools`, `--read-only`).

    `get_session` gives the notebook a call works on. Tools outside the exposed set stay registered
    so that a call by name gets a clear refusal instead of "unknown tool". `structured_output`: tools list
    an outputSchema and answer with structuredContent too (--structured-output); the text is the same.
    """
    box = Toolbox(
        get_session,
        max_output_chars,
        max_image_bytes,
        default_timeout,
        workspace,
        client_log,
        max_wait,
        view_url,
        structured_output,
    )
    return install(box, tools=tools, read_only=read_only)
