"""Tools that look into or control the kernel without running a cell."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from .answers import KernelAnswer, VariablesAnswer
from .registry import tool, toolbox

__all__ = ["interrupt_kernel", "list_variables", "restart_kernel"]


@tool
async def list_variables(ctx: Context) -> Annotated[CallToolResult, VariablesAnswer]:
    """The user's variables in the kernel: name, type, shape (arrays, frames) and a short repr.

    Adds no cell and saves nothing; modules and names starting with "_" are left out.
    """
    box = toolbox()
    session = await box.session(ctx)
    variables, total, note = await session.list_variables()
    lines: list[str] = []
    used = 0
    for v in variables:
        shape = f" shape={tuple(v.shape)}" if v.shape else ""
        line = f"{v.name}: {v.type}{shape} = {v.repr}"
        if used + len(line) + 1 > box.max_output_chars:
            break
        lines.append(line)
        used += len(line) + 1
    head = f"{total} variable(s)" + (f", first {len(lines)} shown" if total > len(lines) else "")
    if total > len(lines):
        head += "; execute_code can print the others (e.g. `sorted(globals())`)"
    notes = [f"Note: {note}"] if note else []
    return box.reply(VariablesAnswer(text="\n".join([head, *notes, *lines]), total=total, shown=len(lines)))


@tool
async def interrupt_kernel(ctx: Context) -> Annotated[CallToolResult, KernelAnswer]:
    """Interrupt the code the kernel is running (like Ctrl+C); its variables are kept."""
    box = toolbox()
    session = await box.session(ctx)
    was_busy = await session.interrupt()
    text = (
        "Interrupted the running code."
        if was_busy
        else "The kernel was not running anything; sent the interrupt anyway."
    )
    return box.reply(KernelAnswer(text=text, was_running=was_busy))


@tool
async def restart_kernel(ctx: Context) -> Annotated[CallToolResult, KernelAnswer]:
    """Restart the kernel: every variable and import is lost; the notebook and its outputs are kept.

    The kernel is chosen again, so ipykernel installed into the project's environment since the start
    takes effect; the answer says which Python runs the code now.
    """
    box = toolbox()
    session = await box.session(ctx)
    before = session.kernel_choice
    await session.restart_kernel()
    kernel = (await session.info())["kernel"]
    text = f"Restarted the kernel ({kernel.get('name')}); it is {kernel['state']}."
    interpreter = kernel.get("interpreter")
    if interpreter:
        text += f" Code now runs in {interpreter} (chosen by {kernel.get('chosen_by')})"
        text += f"; before the restart it ran in {before.argv0}." if before and before.argv0 != interpreter else "."
    if kernel.get("warning"):
        text += f"\nNote: {kernel['warning']}"
    return box.reply(KernelAnswer(text=text, state=kernel["state"], interpreter=interpreter))
