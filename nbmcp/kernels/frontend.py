"""What a notebook front end keeps across executions: display ids, widget state, Output widgets.

nbclient (`NotebookClient`, `nbclient/output_widget.py`) plays the front end for a headless run, and
nbmcp follows its rules, for `nbmcp exec` and the server alike (issue 26):

- `update_display_data` (and a display or result sent again with the same display id) replaces the
  data of every output that shows that id, in earlier cells too: `displays` maps a display id to the
  cells and output positions that show it. An earlier cell's new data waits in `pending` until the
  session saves the notebook (with the next cell's outputs: no extra write per cell).
- ipywidgets' comm messages build the state nbclient writes to `metadata.widgets`
  (`application/vnd.jupyter.widget-state+json`), buffers base64-encoded.
- Output printed inside `with output_widget:` goes to that widget (its state's `outputs`), not to the
  cell, and a `clear_output` there clears the widget; the widget's new outputs are sent back to the
  kernel, as a front end does, when the kernel can take them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from nbformat import NotebookNode

__all__ = ["WIDGET_STATE_MIME", "CommSender", "Frontend", "OutputWidget", "output_from_msg"]

#: The key of `metadata.widgets` that JupyterLab and nbconvert read the saved widget state from.
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"

#: Sends a comm message to the kernel: (content, parent header of the message it answers).
CommSender = Callable[[dict[str, Any], dict[str, Any]], None]


def output_from_msg(msg: dict[str, Any]) -> NotebookNode:
    """The nbformat output of an iopub message: `nbformat.v4.output_from_msg` without its validation.

    nbformat validates every output against the JSON schema as it builds it (about 3 ms each): a cell
    that calls display() ten thousand times spent more time there than in the kernel. The kernel's
    messages already have the output's shape; notebooks are validated when they are read.
    """
    msg_type = msg["header"]["msg_type"]
    content = msg["content"]
    out = NotebookNode(output_type=msg_type)
    if msg_type in ("execute_result", "display_data"):
        out.metadata = content["metadata"]
        out.data = content["data"]
        if msg_type == "execute_result":
            out.execution_count = content["execution_count"]
    elif msg_type == "stream":
        out.name = content["name"]
        out.text = content["text"]
    elif msg_type == "error":
        out.ename = content["ename"]
        out.evalue = content["evalue"]
        out.traceback = content["traceback"]
    else:
        raise ValueError(f"not an output message: {msg_type!r}")
    return out


class OutputWidget:
    """An ipywidgets `Output` as a front end shows it: it takes the output of the code run inside it."""

    def __init__(self, comm_id: str, frontend: Frontend) -> None:
        self.comm_id = comm_id
        self.frontend = frontend
        self.outputs: list[NotebookNode] = list(frontend.widget_state.get(comm_id, {}).get("outputs") or [])
        self.msg_id = ""
        self.clear_before_next_output = False

    def output(self, msg: dict[str, Any], send: CommSender | None) -> None:
        if self.clear_before_next_output:
            self.outputs = []
            self.clear_before_next_output = False
        try:
            out = output_from_msg(msg)
        except ValueError:
            return
        last = self.outputs[-1] if self.outputs else None
        if (
            last is not None
            and last["output_type"] == "stream" == out["output_type"]
            and last.get("name") == out.get("name")
        ):
            last["text"] += out["text"]
        else:
            self.outputs.append(out)
        self._sync(msg, send)

    def clear_output(self, msg: dict[str, Any], send: CommSender | None) -> None:
        if msg.get("content", {}).get("wait"):
            self.clear_before_next_output = True
        else:
            self.outputs = []
            self._sync(msg, send)

    def set_state(self, state: dict[str, Any]) -> None:
        """The kernel says where it routes output: `msg_id` set on entering `with out:`, '' on leaving."""
        if "msg_id" not in state:
            return
        msg_id = state.get("msg_id") or ""
        if msg_id:
            self.frontend.hooks.setdefault(msg_id, []).append(self)
        else:
            stack = self.frontend.hooks.get(self.msg_id)
            if stack and stack[-1] is self:
                stack.pop()
                if not stack:
                    del self.frontend.hooks[self.msg_id]
        self.msg_id = msg_id

    def _sync(self, msg: dict[str, Any], send: CommSender | None) -> None:
        # The saved state shows what the widget shows; the kernel's widget learns it too (nbclient's
        # sync_state), so code reading `out.outputs` later sees what was captured.
        self.frontend.widget_state.setdefault(self.comm_id, {})["outputs"] = self.outputs
        self.frontend.widgets_version += 1
        if send is not None:
            data = {"method": "update", "state": {"outputs": self.outputs}, "buffer_paths": []}
            send({"comm_id": self.comm_id, "data": data}, msg.get("parent_header") or {})


class Frontend:
    """The state a front end keeps across the executions of one notebook (see the module docstring)."""

    def __init__(self) -> None:
        #: display id -> cell id (None: code run without a cell) -> positions of its outputs showing it.
        self.displays: dict[str, dict[str | None, list[int]]] = {}
        #: cell id -> output position -> (data, metadata): updates of cells not running now, not yet saved.
        self.pending: dict[str, dict[int, tuple[Any, Any]]] = {}
        #: comm id -> the widget's state, as its comm messages built it (nbclient's `widget_state`).
        self.widget_state: dict[str, dict[str, Any]] = {}
        #: comm id -> buffer path -> the buffer, base64-encoded (nbclient's `widget_buffers`).
        self.widget_buffers: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {}
        #: Bumped whenever the widget state changes, so a save can tell whether to write it.
        self.widgets_version = 0
        self.output_widgets: dict[str, OutputWidget] = {}
        #: execution msg_id -> the Output widgets capturing its output, innermost last.
        self.hooks: dict[str, list[OutputWidget]] = {}
        #: The kernel's `language_info` (its kernel_info reply), for `metadata.language_info`.
        self.language_info: dict[str, Any] | None = None

    # -- display ids ------------------------------------------------------------------------------

    def forget_cell(self, cell_id: str | None) -> None:
        """The cell's outputs are replaced (it runs again, or was cleared): it no longer shows any display id."""
        for cells in self.displays.values():
            if cell_id in cells:
                cells[cell_id] = []
        if cell_id is not None:
            self.pending.pop(cell_id, None)

    def shown(self, display_id: str, cell_id: str | None, position: int) -> None:
        self.displays.setdefault(display_id, {}).setdefault(cell_id, []).append(position)

    def update_display(
        self, display_id: str, msg: dict[str, Any], cell_id: str | None, outputs: list[NotebookNode]
    ) -> bool:
        """Give every output showing `display_id` the message's data; True if the running cell's changed.

        `outputs` are the running cell's (`cell_id`); other cells' new data waits in `pending`.
        """
        cells = self.displays.get(display_id)
        if not cells:
            return False
        content = msg.get("content", {})
        data, metadata = content.get("data", {}), content.get("metadata", {})
        here = False
        for other, positions in cells.items():
            if other == cell_id:
                for pos in positions:
                    if pos < len(outputs):
                        outputs[pos]["data"], outputs[pos]["metadata"] = data, metadata
                        here = True
            elif other is not None and positions:
                updates = self.pending.setdefault(other, {})
                for pos in positions:
                    updates[pos] = (data, metadata)
        return here

    def take_pending(self) -> dict[str, dict[int, tuple[Any, Any]]]:
        """The waiting updates of other cells, handed over to be saved (and forgotten here)."""
        pending, self.pending = self.pending, {}
        return pending

    # -- widgets ----------------------------------------------------------------------------------

    def hook_for(self, msg: dict[str, Any]) -> OutputWidget | None:
        """The Output widget that takes this output or clear_output, if the code runs inside one."""
        if not self.hooks:
            return None
        stack = self.hooks.get(msg.get("parent_header", {}).get("msg_id", ""))
        return stack[-1] if stack else None

    def handle_comm(self, msg: dict[str, Any]) -> None:
        """A comm message from the kernel: widget state, buffers, and Output widgets (nbclient's handle_comm_msg)."""
        content = msg.get("content", {})
        data = content.get("data") or {}
        comm_id = content.get("comm_id", "")
        if "state" in data:  # a custom message (widget.send) has no state and is not saved
            self.widget_state.setdefault(comm_id, {}).update(data["state"])
            self.widgets_version += 1
            if data.get("buffer_paths"):
                buffers = self.widget_buffers.setdefault(comm_id, {})
                for path, buffer in zip(data["buffer_paths"], msg.get("buffers") or [], strict=False):
                    encoded = base64.b64encode(bytes(buffer)).decode("ascii")
                    buffers[tuple(path)] = {"data": encoded, "encoding": "base64", "path": path}
        msg_type = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        if msg_type == "comm_open" and content.get("target_name") == "jupyter.widget":
            state = data.get("state") or {}
            if state.get("_model_module") == "@jupyter-widgets/output" and state.get("_model_name") == "OutputModel":
                self.output_widgets[comm_id] = OutputWidget(comm_id, self)
        elif msg_type == "comm_msg" and comm_id in self.output_widgets and "state" in data:
            self.output_widgets[comm_id].set_state(data["state"])

    def widgets_metadata(self) -> dict[str, Any] | None:
        """`metadata.widgets` as nbclient's `set_widgets_metadata` writes it; None when no widget was seen."""
        if not self.widget_state:
            return None
        state = {}
        for model_id, model in self.widget_state.items():
            if "_model_name" not in model:
                continue
            entry = {
                "model_name": model.get("_model_name"),
                "model_module": model.get("_model_module"),
                "model_module_version": model.get("_model_module_version"),
                "state": model,
            }
            buffers = self.widget_buffers.get(model_id)
            if buffers:
                entry["buffers"] = list(buffers.values())
            state[model_id] = entry
        return {WIDGET_STATE_MIME: {"state": state, "version_major": 2, "version_minor": 0}}
