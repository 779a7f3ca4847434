"""Kernel iopub messages -> nbformat outputs, following nbclient's rules; an output's plain text.

`OutputCollector` is fed the iopub messages of one execution and keeps the cell's outputs the way
nbclient (`NotebookClient.process_message`) builds them: streams, display_data, execute_result,
error, `clear_output(wait=...)`, `update_display_data` by display_id, and the execution count; what
lasts beyond one execution (display ids shown by earlier cells, widgets, Output-widget capture) is
its `Frontend`'s (`nbmcp.kernels.frontend`). Consecutive stream outputs of the same name are merged
and carriage returns resolved, as nbclient's `coalesce_streams` and JupyterLab's saved files do, so a
progress bar is one output, not thousands.
"""

from __future__ import annotations

import re
from typing import Any

from nbformat import NotebookNode

from .frontend import CommSender, Frontend, output_from_msg

__all__ = ["OutputCollector", "joined_text", "normalize_stream_text", "output_text", "strip_ansi"]

# nbclient's coalesce_streams rules (nbclient/client.py), with the backspace written as \x08: in a
# raw string "\b" is a regex word boundary, which would eat the last letter of every word.
_RGX_BACKSPACE = re.compile(r"[^\n]\x08")

_OUTPUT_TYPES = {"stream", "display_data", "execute_result", "error"}
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_TAGS = re.compile(r"<[^>]+>")


def strip_ansi(text: str) -> str:
    """Remove terminal colour and cursor codes (tracebacks are full of them)."""
    return _ANSI.sub("", text)


def joined_text(value: Any) -> str:
    """A notebook string field as one string (nbformat allows a list of lines)."""
    return "".join(value) if isinstance(value, list) else str(value)


def output_text(output: dict[str, Any]) -> str:
    """The plain-text form of one output, or '' if it has none (ANSI stripped)."""
    kind = output.get("output_type")
    if kind == "stream":
        return strip_ansi(joined_text(output.get("text", "")))
    if kind == "error":
        tb = output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"]
        return strip_ansi("\n".join(tb))
    data = output.get("data", {})
    if "text/plain" in data:
        return strip_ansi(joined_text(data["text/plain"]))
    if "text/markdown" in data:
        return joined_text(data["text/markdown"])
    if "text/html" in data:
        return _TAGS.sub("", joined_text(data["text/html"])).strip()
    if "application/json" in data:
        return str(data["application/json"])
    return ""


def _after_last_carriage_return(line: str) -> str:
    # The same as nbclient's `.*\r(?=[^\n])` on one line, in linear time: drop everything up to the
    # last carriage return that has something after it (a trailing one, as in "\r\n", stays).
    cut = line.rfind("\r", 0, len(line) - 1)
    return line[cut + 1 :] if cut >= 0 else line


def normalize_stream_text(text: str) -> str:
    """Resolve backspaces and carriage returns the way a terminal would show the text."""
    if "\x08" in text:
        old = None
        while old is None or len(text) < len(old):
            old = text
            text = _RGX_BACKSPACE.sub("", text)
    if "\r" in text:
        # Line by line rather than with the regex, which takes quadratic time on one very long line.
        text = "\n".join(_after_last_carriage_return(line) for line in text.split("\n"))
    return text


class OutputCollector:
    """Builds one cell's outputs from the iopub messages of its execution.

    `frontend` is what lasts across executions (display ids, widgets; see `nbmcp.kernels.frontend`):
    shared by the executions of one notebook, so an update of a display id reaches earlier cells and
    widget state is saved; a collector given none has one of its own. `cell_id` names the cell run
    (None for code run without one).
    """

    def __init__(self, frontend: Frontend | None = None, cell_id: str | None = None) -> None:
        self.outputs: list[NotebookNode] = []
        self.execution_count: int | None = None
        self.idle = False
        #: Bumped on every change, so a caller can tell whether there is anything new to save.
        self.version = 0
        self._clear_before_next_output = False
        self.frontend = frontend if frontend is not None else Frontend()
        self.cell_id = cell_id
        self.frontend.forget_cell(cell_id)
        #: How comm messages reach the kernel (an Output widget's new outputs), set by the kernel's run.
        self.send_comm: CommSender | None = None

    @property
    def last_line(self) -> str:
        """The last non-empty line of text output, for progress messages."""
        for out in reversed(self.outputs):
            if out.get("output_type") == "stream":
                text = out.get("text", "")
            elif out.get("output_type") == "error":
                text = f"{out.get('ename')}: {out.get('evalue')}"
            else:
                text = out.get("data", {}).get("text/plain", "")
            if isinstance(text, list):
                text = "".join(text)
            for line in reversed(text.splitlines()):
                if line.strip():
                    return line.strip()
        return ""

    def process(self, msg: dict[str, Any]) -> None:
        """Apply one iopub message that belongs to this execution (nbclient's process_message)."""
        msg_type = msg["msg_type"]
        content = msg.get("content", {})
        transient = content.get("transient")
        display_id = transient.get("display_id") if transient else None
        frontend = self.frontend

        if (
            display_id
            and msg_type in {"execute_result", "display_data", "update_display_data"}
            and frontend.update_display(display_id, msg, self.cell_id, self.outputs)
        ):
            self.version += 1
        if "execution_count" in content and content["execution_count"] is not None:
            self.execution_count = content["execution_count"]
            self.version += 1

        if msg_type == "status":
            if content.get("execution_state") == "idle":
                self.idle = True
        elif msg_type == "clear_output":
            hook = frontend.hook_for(msg)
            if hook is not None:
                hook.clear_output(msg, self.send_comm)
            elif content.get("wait"):
                self._clear_before_next_output = True
            else:
                self._clear()
        elif msg_type in _OUTPUT_TYPES:
            hook = frontend.hook_for(msg)
            if hook is not None:
                hook.output(msg, self.send_comm)
            else:
                self._append(msg, display_id)
        elif msg_type.startswith("comm"):
            frontend.handle_comm(msg)

    def finish(self) -> list[NotebookNode]:
        """The final outputs, with stream text normalized."""
        for out in self.outputs:
            if out.get("output_type") == "stream":
                out["text"] = normalize_stream_text(out["text"])
        return self.outputs

    # -- internals --------------------------------------------------------------------------------

    def _clear(self) -> None:
        self.outputs = []
        self.frontend.forget_cell(self.cell_id)
        self._clear_before_next_output = False
        self.version += 1

    def _append(self, msg: dict[str, Any], display_id: str | None) -> None:
        try:
            out = output_from_msg(msg)
        except ValueError:
            return
        if self._clear_before_next_output:
            self._clear()
        last = self.outputs[-1] if self.outputs else None
        if (
            out.output_type == "stream"
            and last is not None
            and last.get("output_type") == "stream"
            and last.get("name") == out.name
        ):
            last["text"] += out.text
        else:
            if display_id:
                self.frontend.shown(display_id, self.cell_id, len(self.outputs))
            self.outputs.append(out)
        self.version += 1
