"""nbformat outputs -> what the model sees, within a budget.

The notebook file keeps every output whole; the model gets text with ANSI codes stripped, long text
cut in the middle with a marker saying how much was left out, PNG/JPEG images (capped in size) and
HTML only when no plain text exists. Results are plain dataclasses: the tool layer turns them into
MCP content, so no MCP type leaks below it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_OUTPUT_CHARS",
    "ImagePart",
    "Part",
    "TextPart",
    "output_text",
    "render_outputs",
    "strip_ansi",
    "truncate_middle",
]

#: Characters of output text shown to the model per tool answer before the middle is cut.
MAX_OUTPUT_CHARS = 20_000
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


def truncate_middle(text: str, limit: int, hint: str = "") -> str:
    """Keep the head and tail of `text` within `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    omitted = len(text) - limit
    marker = f"\n[... {omitted} characters omitted{'; ' + hint if hint else ''} ...]\n"
    head = limit * 2 // 3
    tail = limit - head
    return text[:head] + marker + text[len(text) - tail :]


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
    hint: str = "the notebook file keeps the whole output",
) -> list[Part]:
    """Render a cell's outputs for the model: text within `max_chars` in all, plus images."""
    parts: list[Part] = []
    texts: list[str] = []
    for output in outputs:
        data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
        image_type = next((t for t in _IMAGE_TYPES if t in data), None)
        if image_type is not None:
            b64 = _joined(data[image_type]).replace("\n", "")
            size = len(base64.b64decode(b64, validate=False))
            if size <= max_image_bytes:
                parts.append(ImagePart(b64, image_type))
            else:
                texts.append(f"[{image_type} image of {size} bytes not shown: over the {max_image_bytes}-byte cap]")
            continue
        text = output_text(output)
        if not text:
            kinds = ", ".join(sorted(data)) or output.get("output_type", "output")
            text = f"[{kinds}]"
        texts.append(text)
    body = "\n".join(t.rstrip("\n") for t in texts)
    if body:
        parts.insert(0, TextPart(truncate_middle(body, max_chars, hint)))
    return parts
