"""Reading a notebook's bytes: `parse_notebook`, fast for the plain v4 files nbmcp and Jupyter write.

A file that does not parse raises `NotebookFormatError` saying why; the store retries it briefly (an
editor caught mid-write) and never overwrites it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ..errors import NotebookFormatError
from .encoder import TRANSIENT_METADATA

__all__ = ["parse_notebook"]

logger = logging.getLogger(__name__)


def parse_notebook(data: bytes, path: Path) -> NotebookNode:
    """Parse bytes into a v4 notebook, or raise NotebookFormatError saying why.

    A v4 notebook takes the fast path: `json.loads` building NotebookNodes directly, then nbformat's
    own rejoin_lines and strip_transient, as `nbformat.reads` does, but without its JSON-schema
    validation of every cell, which costs several times the parse (issue 14) and only ever led to a
    logged warning here. What nbmcp relies on is checked instead (cells are objects with a type; code
    cells have a list of outputs). Anything else (nbformat 3, odd shapes) goes through `nbformat.reads`.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookFormatError(path, f"not UTF-8 text: {exc}") from exc
    if not text.strip():
        raise NotebookFormatError(path, "the file is empty")
    try:
        raw = json.loads(text, object_hook=_Node)
    except json.JSONDecodeError as exc:
        raise NotebookFormatError(path, f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise NotebookFormatError(path, "JSON nested too deeply to be a notebook") from exc
    if not isinstance(raw, dict) or ("cells" not in raw and "worksheets" not in raw) or "nbformat" not in raw:
        raise NotebookFormatError(path, "JSON without the 'nbformat' and 'cells' keys of a notebook")
    if _plain_v4(raw):
        try:
            _rejoin_and_strip(raw)  # type: ignore[arg-type]  # object_hook made every object a NotebookNode
            return raw  # type: ignore[return-value]
        except (AttributeError, TypeError):
            pass  # an odd shape in an output or attachment: nbformat says what is wrong with it
    try:
        holder: dict[str, Any] = {}
        nb = nbformat.reads(text, as_version=4, capture_validation_error=holder)
    except Exception as exc:  # nbformat raises a zoo of types for malformed content
        raise NotebookFormatError(path, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(nb.get("cells"), list):
        raise NotebookFormatError(path, "'cells' is not a list")
    original = nb.metadata.get("orig_nbformat")
    if original is not None and original < 4:
        logger.info("%s is nbformat %s; upgraded to 4 as read (saved as 4 at the first change)", path, original)
    if holder.get("ValidationError") is not None:
        # Jupyter opens such notebooks with a warning; refusing them would strand the user.
        logger.warning("%s does not fully match the nbformat schema: %s", path, holder["ValidationError"].message)
    return nb


def _plain_v4(raw: dict[str, Any]) -> bool:
    """Whether `raw` has the shape nbmcp relies on, so it can skip nbformat's full validation."""
    if raw.get("nbformat") != 4 or not isinstance(raw.get("nbformat_minor"), int):
        return False
    if not isinstance(raw.get("metadata"), dict):
        return False
    cells = raw.get("cells")
    if not isinstance(cells, list):
        return False
    for cell in cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("metadata"), dict):
            return False
        kind = cell.get("cell_type")
        source = cell.get("source")
        if kind not in _CELL_TYPES or not isinstance(source, (str, list)):
            return False
        if kind == "code":
            outputs = cell.get("outputs")
            if not isinstance(outputs, list) or not all(
                isinstance(o, dict) and isinstance(o.get("output_type"), str) for o in outputs
            ):
                return False
    return True


_CELL_TYPES = frozenset({"code", "markdown", "raw"})


class _Node(NotebookNode):
    """A NotebookNode built without running Python code: json.loads makes one per JSON object.

    NotebookNode's own __init__ is a Python function that only calls dict's; calling dict's directly
    takes a third off a large notebook's parse. Attribute access and item assignment are NotebookNode's.
    """

    __init__ = dict.__init__


_set = dict.__setitem__  # NotebookNode's own __setitem__ runs Python code; a string needs none of it


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _rejoin_bundle(data: dict[str, Any]) -> None:
    for key, value in list(data.items()):
        if not _is_json_mime(key) and isinstance(value, list) and all(isinstance(line, str) for line in value):
            _set(data, key, "".join(value))


def _rejoin_and_strip(nb: NotebookNode) -> None:
    """nbformat.v4's rejoin_lines and strip_transient, in place, with item access.

    The same rules (nbformat.v4.rwbase, checked against it by the tests), but nbformat's attribute
    access runs a Python `__getattr__` per use, which made up most of a large notebook's reload.
    """
    metadata = nb["metadata"]
    for key in TRANSIENT_METADATA:
        metadata.pop(key, None)
    for cell in nb["cells"]:
        source = cell.get("source")
        if isinstance(source, list):
            _set(cell, "source", "".join(source))
        for attachment in cell.get("attachments", {}).values():
            _rejoin_bundle(attachment)
        if cell.get("cell_type") == "code":
            for output in cell.get("outputs", []):
                output_type = output.get("output_type", "")
                if output_type in {"execute_result", "display_data"}:
                    _rejoin_bundle(output.get("data", {}))
                elif output_type and isinstance(output.get("text", ""), list):
                    _set(output, "text", "".join(output["text"]))
        cell["metadata"].pop("trusted", None)
