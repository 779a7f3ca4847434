"""The tool table, `--tools`/`--read-only`, and the one wrapper every tool runs in.

Tools are plain module-level functions registered with `@tool`. At call time the wrapper gives them
their server's `Toolbox` (limits and the notebook the call works on), checks that the tool is
exposed, and turns every exception into an MCP error result that says what was wrong: project errors
with their own message, anything unexpected with what nbmcp was doing and the exception's type.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Strict

from ...errors import NbmcpError, ToolDisabledError, UsageError
from ...session.activity import current_tool
from ...session.executions import DEFAULT_MAX_WAIT
from ...session.session import NotebookSession
from ..client_log import ClientLog
from ..mcp_app import APP_LINKED_TOOLS, APP_TOOL_META
from ..render import ImagePart
from .answers import ANSWER_OVERHEAD, Answer, reply, with_note

if TYPE_CHECKING:
    from ..app import Workspace

__all__ = [
    "ALL_TOOLS",
    "KERNEL_READ_TOOLS",
    "NOTICE_TOOLS",
    "READ_ONLY_SERVER_TOOLS",
    "READ_ONLY_TOOLS",
    "SEED_TOOLS",
    "TOOL_ANNOTATIONS",
    "WORKSPACE_TOOLS",
    "CellIndex",
    "Count",
    "SessionGetter",
    "Toolbox",
    "exposed_tools",
    "install",
    "requested_notebook",
    "timeout_of",
    "tool",
    "toolbox",
]

logger = logging.getLogger("nbmcp.tools")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
SessionGetter = Callable[[Context], Awaitable[NotebookSession]]

#: A cell index as a tool argument: an integer, never a boolean or a numeric string (`true` is not 1).
CellIndex = Annotated[int, Strict()]
#: A count or offset: an integer, never a boolean.
Count = Annotated[int, Strict()]

#: The notebook_path a tool call named, for the workspace to resolve (None: the client's active one).
requested_notebook: contextvars.ContextVar[str | None] = contextvars.ContextVar("requested_notebook", default=None)

SEED_TOOLS = (
    "append_markdown_cell",
    "insert_markdown_cell",
    "append_execute_code_cell",
    "insert_execute_code_cell",
    "overwrite_cell_source",
    "delete_cell",
    "execute_cell_simple_timeout",
    "execute_cell_streaming",
    "execute_cell_with_progress",
    "read_cell",
    "read_all_cells",
    "get_notebook_info",
)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
REPLACES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)
EDITS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
RUNS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)
#: Interrupting or restarting loses running work or variables, but doing it twice changes nothing more.
KERNEL_CONTROL = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)

#: Every tool and its MCP annotations: the one table --tools and --read-only are checked against.
TOOL_ANNOTATIONS: dict[str, ToolAnnotations] = {
    "append_markdown_cell": ADDS,
    "insert_markdown_cell": ADDS,
    "append_execute_code_cell": RUNS,
    "insert_execute_code_cell": RUNS,
    "overwrite_cell_source": REPLACES,
    "delete_cell": DELETES,
    "execute_cell_simple_timeout": RUNS,
    "execute_cell_streaming": RUNS,
    "execute_cell_with_progress": RUNS,
    "read_cell": READ_ONLY,
    "read_all_cells": READ_ONLY,
    "get_notebook_info": READ_ONLY,
    "read_notebook": READ_ONLY,
    "read_cell_output": READ_ONLY,
    # Runs an introspection snippet in the kernel that defines nothing and saves nothing.
    "list_variables": READ_ONLY,
    "insert_cell": ADDS,
    "edit_cell_source": EDITS,
    "move_cell": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False),
    "clear_cell_output": REPLACES,
    "clear_all_outputs": REPLACES,
    "execute_cell": RUNS,
    "execute_all_cells": RUNS,
    "execute_code": RUNS,
    # Waiting for a running execution, or listing them, changes nothing (interrupt_kernel stops one).
    "wait_for_execution": READ_ONLY,
    "list_executions": READ_ONLY,
    "interrupt_kernel": KERNEL_CONTROL,
    "restart_kernel": KERNEL_CONTROL,
    # The undo journal: undo rewrites cells (a later undo does not redo it).
    "undo": EDITS,
    "list_changes": READ_ONLY,
    # Several notebooks in one server: choosing one changes no file.
    "list_notebooks": READ_ONLY,
    "use_notebook": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True),
    # Shuts the notebook's kernel down: its variables are lost.
    "unuse_notebook": ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True),
}
WORKSPACE_TOOLS = ("list_notebooks", "use_notebook", "unuse_notebook")
#: Tools whose answers carry the session's notice (a notebook nbmcp created): those that show the notebook,
#: where an empty one would otherwise read as "no cells" (issue 24). Answers that end with a cell's
#: outputs are left as they are.
NOTICE_TOOLS = ("get_notebook_info", "read_notebook", "read_all_cells", "use_notebook")
ALL_TOOLS = tuple(TOOL_ANNOTATIONS)
READ_ONLY_TOOLS = tuple(name for name, a in TOOL_ANNOTATIONS.items() if a.read_only_hint)
#: Read-only tools that still run code in the kernel: --read-only starts no kernel, so it offers none.
KERNEL_READ_TOOLS = ("list_variables", "wait_for_execution", "list_executions")
#: What --read-only offers.
READ_ONLY_SERVER_TOOLS = tuple(name for name in READ_ONLY_TOOLS if name not in KERNEL_READ_TOOLS)

#: The tool functions, by name, as `@tool` registered them (filled when the family modules are imported).
TOOLS: dict[str, Callable[..., Awaitable[Any]]] = {}

_NOTEBOOK_PATH = inspect.Parameter("notebook_path", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None)
NOTEBOOK_PATH_DOC = """

`notebook_path` (optional) names the notebook to work on, relative to the served folder; by default
the call works on the notebook chosen with use_notebook (or the server's notebook).
"""


def exposed_tools(only: Collection[str] | None = None, *, read_only: bool = False) -> frozenset[str]:
    """The tools a server lists: those in `only` (all when None), read-only ones only if `read_only`."""
    if only is not None:
        unknown = sorted(set(only) - set(ALL_TOOLS))
        if unknown:
            raise UsageError(f"unknown tool(s) {', '.join(unknown)}; valid: {', '.join(ALL_TOOLS)}")
    names = set(ALL_TOOLS if only is None else only)
    if read_only:
        names &= set(READ_ONLY_SERVER_TOOLS)
    if not names:
        raise UsageError(
            f"no tool left to expose; with --read-only, --tools may name: {', '.join(READ_ONLY_SERVER_TOOLS)}"
        )
    return frozenset(names)


def _refusal(name: str, only: Collection[str] | None, read_only: bool) -> str:
    if read_only and name not in READ_ONLY_SERVER_TOOLS:
        available = ", ".join(n for n in READ_ONLY_SERVER_TOOLS if only is None or n in only)
        return (
            "this server runs with --read-only, so tools that change the notebook or run code are refused; "
            f"available: {available}"
        )
    return (
        f"this server exposes only the tools given with --tools: {', '.join(n for n in ALL_TOOLS if n in (only or ()))}"
    )


@dataclass(frozen=True)
class Toolbox:
    """What a tool needs of its server: the notebook a call works on and the answer limits."""

    get_session: SessionGetter
    max_output_chars: int
    max_image_bytes: int
    default_timeout: float
    workspace: Workspace | None = None
    client_log: ClientLog | None = None
    """Sends what nbmcp logs during a call to its client (the MCP logging capability)."""
    max_wait: float = DEFAULT_MAX_WAIT
    """Seconds an execution tool waits before answering with the outputs so far (--max-wait)."""
    view_url: str | None = None
    """The live view's address with its token (--view), for get_notebook_info to tell the person."""
    structured: bool = False
    """Answers carry structuredContent and tools list their outputSchema (--structured-output)."""

    async def session(self, ctx: Context) -> NotebookSession:
        session = await self.get_session(ctx)
        _call_session.set(session)  # for the note the wrapper adds to the answer
        return session

    @property
    def answer_limit(self) -> int:
        """Characters one answer may have, in either view."""
        return self.max_output_chars + ANSWER_OVERHEAD

    def reply(self, answer: Answer, images: Sequence[ImagePart] = (), cuts: Sequence[str] = ()) -> CallToolResult:
        """The tool result of `answer`; `cuts` name what it leaves out (its first line says so)."""
        return reply(answer, images, self.answer_limit, cuts=cuts, structured=self.structured)


_toolbox: contextvars.ContextVar[Toolbox] = contextvars.ContextVar("toolbox")
#: The session the tool call being served works on, once the tool asked for it.
_call_session: contextvars.ContextVar[NotebookSession | None] = contextvars.ContextVar("call_session", default=None)


def toolbox() -> Toolbox:
    """The server of the tool call being served."""
    return _toolbox.get()


def tool(fn: F) -> F:
    """Register a tool function under its name (which must be in TOOL_ANNOTATIONS)."""
    if fn.__name__ not in TOOL_ANNOTATIONS:
        raise ValueError(f"{fn.__name__} is not in TOOL_ANNOTATIONS")
    TOOLS[fn.__name__] = fn
    return fn


def timeout_of(value: float | None, default: float) -> float:
    """A tool's `timeout_seconds`: None means the server's default; it must be a positive number."""
    if value is None:
        return default
    if isinstance(value, bool) or value <= 0:
        raise UsageError(
            f"timeout_seconds must be a positive number of seconds, not {value!r} "
            f"(leave it out for the server's default of {default:g} s)"
        )
    return float(value)


def _unexpected(name: str, exc: Exception) -> str:
    notebook = requested_notebook.get()
    where = f" on {notebook:.200}" if notebook else ""
    message = str(exc) or repr(exc)
    if isinstance(exc, RecursionError):
        message = "the data is nested too deeply to process"
    elif isinstance(exc, OSError) and exc.strerror:
        message = exc.strerror + (f": {exc.filename!s:.200}" if exc.filename else "")
    return f"{name} failed{where} (unexpected {type(exc).__name__}): {message[:1000]}"


def _guarded(name: str, fn: Callable[..., Awaitable[Any]], box: Toolbox, refusal: str | None) -> Any:
    takes_notebook = name not in WORKSPACE_TOOLS

    @functools.wraps(fn)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        token = requested_notebook.set(kwargs.pop("notebook_path", None) if takes_notebook else None)
        # The live view marks the cell a tool changed or ran with the tool's name (issue 22).
        tool_token = current_tool.set(name)
        box_token = _toolbox.set(box)
        ctx = kwargs.get("ctx")
        log_token = box.client_log.begin_call(ctx) if box.client_log is not None and ctx is not None else None
        session_token = _call_session.set(None)
        try:
            if refusal is not None:
                raise ToolDisabledError(name, refusal)
            result = await fn(*args, **kwargs)
            session = _call_session.get()
            note = session.notice() if session is not None and name in NOTICE_TOOLS else ""
            return with_note(result, note) if note and isinstance(result, CallToolResult) else result
        except NbmcpError as exc:
            raise ToolError(str(exc)) from exc
        except ToolError:
            raise
        except Exception as exc:
            # Never an empty "Error executing tool": say what nbmcp was doing and what went wrong.
            logger.error("%s failed", name, exc_info=True)
            raise ToolError(_unexpected(name, exc)) from exc
        finally:
            _call_session.reset(session_token)
            _toolbox.reset(box_token)
            requested_notebook.reset(token)
            current_tool.reset(tool_token)
            if log_token is not None and box.client_log is not None:
                await box.client_log.end_call(log_token)

    if takes_notebook:
        signature = inspect.signature(fn, eval_str=True)
        guarded.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), _NOTEBOOK_PATH]
        )
        guarded.__doc__ = inspect.cleandoc(fn.__doc__ or "") + NOTEBOOK_PATH_DOC
    return guarded


def install(
    box: Toolbox,
    *,
    tools: Collection[str] | None = None,
    read_only: bool = False,
) -> tuple[list[Tool], frozenset[str]]:
    """Every tool, for the server of `box`, and the names it should list (`--tools`, `--read-only`).

    Tools outside the exposed set stay registered so that a call by name gets a clear refusal
    instead of "unknown tool". The workspace tools exist only on a server of a folder.
    """
    exposed = exposed_tools(tools, read_only=read_only)
    made = []
    for name in ALL_TOOLS:
        if name in WORKSPACE_TOOLS and box.workspace is None:
            continue
        refusal = None if name in exposed else _refusal(name, tools, read_only)
        made.append(_described(name, _guarded(name, TOOLS[name], box, refusal), structured=box.structured))
    return made, (exposed if box.workspace is not None else exposed - set(WORKSPACE_TOOLS))


#: The SDK's description of each tool, by (name, structured), made once per process.
_DESCRIBED: dict[tuple[str, bool], Tool] = {}


def _described(name: str, fn: Callable[..., Any], *, structured: bool) -> Tool:
    """Tool `name`, running `fn`, as the SDK describes it: its argument model and JSON schemas.

    Making the description builds pydantic models from the signature, milliseconds per tool; a process
    that makes many servers (a test suite, a program that embeds nbmcp) makes it once and gives each a
    copy with its own function (the `_guarded` one bound to that server's toolbox).
    """
    described = _DESCRIBED.get((name, structured))
    if described is None:
        # The tools that run or read cells name the notebook view app (MCP Apps): their answers stay the same.
        meta = APP_TOOL_META if name in APP_LINKED_TOOLS else None
        # Without --structured-output no tool lists an outputSchema (its answer model stays in the annotation).
        described = _DESCRIBED[name, structured] = Tool.from_function(
            fn, annotations=TOOL_ANNOTATIONS[name], meta=meta, structured_output=None if structured else False
        )
    return described.model_copy(update={"fn": fn})
