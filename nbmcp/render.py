"""nbformat outputs -> what the model sees, within a budget.

The notebook file keeps every output whole; the model gets text with ANSI codes stripped, long text
cut in the middle with a marker saying how much was left out and the read_cell_output call that returns
it, PNG/JPEG images (capped in size; larger ones become a note) and HTML only when no plain text
exists. Results are plain dataclasses: the tool layer turns them into MCP content, so no MCP type
leaks below it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_OUTPUT_CHARS",
    "MIN_OUTPUT_CHARS",
    "ImagePart",
    "Part",
    "TextPage",
    "TextPart",
    "head_length",
    "output_text",
    "page_text",
    "render_outputs",
    "strip_ansi",
    "truncate_middle",
]

#: Characters of output text shown to the model per tool answer before the middle is cut.
MAX_OUTPUT_CHARS = 20_000
#: Smallest --max-output-chars accepted: below it the cut markers would be most of the answer.
MIN_OUTPUT_CHARS = 500
#: Largest image (decoded bytes) returned as image content; larger ones are replaced by a note.
MAX_IMAGE_BYTES = 1_000_000

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_TAGS = re.compile(r"<[^>]+>")
_IMAGE_TYPES = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    data: str
    """Base64, as stored in the notebook."""
    mime_type: str


Part = TextPart | ImagePart


def strip_ansi(text: str) -> str:
    """Remove terminal colour and cursor codes (tracebacks are full of them)."""
    return _ANSI.sub("", text)


def head_length(limit: int) -> int:
    """How many leading characters `truncate_middle` keeps of a text cut to `limit` (the rest is tail)."""
    return limit * 2 // 3


def truncate_middle(text: str, limit: int, hint: str = "") -> str:
    """Keep the head and tail of `text` within `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    omitted = len(text) - limit
    marker = f"\n[... {omitted} characters omitted{'; ' + hint if hint else ''} ...]\n"
    head = head_length(limit)
    tail = limit - head
    return text[:head] + marker + text[len(text) - tail :]


def _shares(lengths: list[int], budget: int) -> list[int]:
    """Split `budget` characters between texts: short ones whole, long ones an equal share of the rest."""
    shares = [0] * len(lengths)
    left, count = budget, len(lengths)
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        shares[i] = min(lengths[i], left // count)
        left -= shares[i]
        count -= 1
    return shares


def _more_hint(cell: str | None, output_index: int, offset: int) -> str:
    if cell is None:
        return "this output was not saved anywhere; print a smaller part of it"
    return f"read_cell_output({cell}, output_index={output_index}, offset={offset}) returns them"


@dataclass(frozen=True)
class TextPage:
    """A window of an output's text, as read_cell_output returns it."""

    text: str
    offset: int
    next_offset: int | None
    """Where the next page starts, or None when this page reaches the end."""
    total_chars: int


def page_text(text: str, offset: int, max_chars: int) -> TextPage:
    """The characters of `text` from `offset`, at most `max_chars` of them."""
    if offset < 0 or offset > len(text):
        raise UsageError(
            f"offset {offset} is out of range; the output has {len(text)} characters (valid: 0 to {len(text)})"
        )
    if max_chars <= 0:
        raise UsageError(f"max_chars must be positive, not {max_chars}")
    end = min(offset + max_chars, len(text))
    return TextPage(text[offset:end], offset, end if end < len(text) else None, len(text))


def _joined(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_text(output: dict[str, Any]) -> str:
    """The plain-text form of one output, or '' if it has none (ANSI stripped)."""
    kind = output.get("output_type")
    if kind == "stream":
        return strip_ansi(_joined(output.get("text", "")))
    if kind == "error":
        tb = output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"]
        return strip_ansi("\n".join(tb))
    data = output.get("data", {})
    if "text/plain" in data:
        return strip_ansi(_joined(data["text/plain"]))
    if "text/markdown" in data:
        return _joined(data["text/markdown"])
    if "text/html" in data:
        return _TAGS.sub("", _joined(data["text/html"])).strip()
    if "application/json" in data:
        return str(data["application/json"])
    return ""


def render_outputs(
    outputs: Iterable[dict[str, Any]],
    *,
    max_chars: int = MAX_OUTPUT_CHARS,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    cell: str | None = None,
) -> list[Part]:
    """Render a cell's outputs for the model: text within `max_chars` in all, plus images.

    `cell` is how read_cell_output addresses the cell (e.g. ``cell_id="ab12"``); a cut output's marker
    names that call with the exact offset where the omitted text starts. None means the outputs were
    not saved (execute_code), and the marker says so.
    """
    parts: list[Part] = []
    # (output index or None for a note, text): notes are short and never cut.
    texts: list[tuple[int | None, str]] = []
    for index, output in enumerate(outputs):
        data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
        image_type = next((t for t in _IMAGE_TYPES if t in data), None)
        if image_type is not None:
            b64 = _joined(data[image_type]).replace("\n", "")
            size = len(base64.b64decode(b64, validate=False))
            if size <= max_image_bytes:
                parts.append(ImagePart(b64, image_type))
            else:
                where = f"output {index} of this cell in the notebook file" if cell else "not saved"
                texts.append(
                    (
                        None,
                        f"[{image_type} image of {size} bytes not shown: over the {max_image_bytes}-byte image "
                        f"cap (--max-image-bytes); {where}. Save a smaller figure (lower dpi or size) to see it]",
                    )
                )
            continue
        text = output_text(output)
        if not text:
            kinds = ", ".join(sorted(data)) or output.get("output_type", "output")
            texts.append((None, f"[{kinds}]"))
        else:
            texts.append((index, text))
    notes = sum(len(t) for k, t in texts if k is None)
    cuttable = [i for i, (k, _) in enumerate(texts) if k is not None]
    shares = _shares([len(texts[i][1]) for i in cuttable], max(max_chars - notes, 0))
    shown = [t for _, t in texts]
    for i, share in zip(cuttable, shares, strict=True):
        k, text = texts[i]
        if len(text) > share:
            assert k is not None
            shown[i] = truncate_middle(text, share, _more_hint(cell, k, head_length(share)))
    body = "\n".join(t.rstrip("\n") for t in shown)
    if body:
        parts.insert(0, TextPart(body))
    return parts
