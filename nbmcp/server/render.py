"""nbformat outputs -> what the model sees, within a budget.

The notebook file keeps every output whole; the model gets text with ANSI codes stripped, long text
cut in the middle with a marker saying how much was left out and the read_cell_output call that returns
it, PNG/JPEG images (capped in size and number per answer; the others become a note) and HTML only
when no plain text exists. The budget holds for all of a cell's outputs together: many small outputs
are shown from the start and the end with one marker for the run left out between them, so ten
thousand `display()` calls cost no more than one long print. Each thing left out is also listed in
`Rendered.cuts` with the call that returns it, for the answer's first line (a client's own cut of a long
answer must not hide how to get the rest: issue 23). Results are plain dataclasses: the tool layer turns
them into MCP content, so no MCP type leaks below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..kernels.outputs import joined_text, output_text

__all__ = [
    "MARKER_CHARS",
    "MAX_ANSWER_IMAGES",
    "MAX_IMAGE_BYTES",
    "MAX_OUTPUT_CHARS",
    "MIN_OUTPUT_CHARS",
    "MIN_SHARE",
    "ImageBudget",
    "ImagePart",
    "Part",
    "Rendered",
    "TextPage",
    "TextPart",
    "cut_note",
    "head_length",
    "page_text",
    "render",
    "render_outputs",
    "truncate_middle",
]

#: Characters of text shown to the model per tool answer (outputs, sources, listings together).
MAX_OUTPUT_CHARS = 20_000
#: Smallest --max-output-chars accepted: below it the cut markers would be most of the answer.
MIN_OUTPUT_CHARS = 500
#: Largest image (decoded bytes) returned as image content; also what all images of one answer may
#: add up to. Larger ones, and those past the answer's share, are replaced by a note.
MAX_IMAGE_BYTES = 1_000_000
#: Images one answer carries at most (a loop of tiny plots must not become thousands of blocks).
MAX_ANSWER_IMAGES = 20
#: Room kept for one cut marker ("[... N characters omitted; read_cell_output(...) returns them ...]").
MARKER_CHARS = 200
#: Below this share of the budget per output, outputs are no longer cut one by one: a run of them
#: in the middle is left out under a single marker.
MIN_SHARE = 300

_IMAGE_TYPES = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    data: str
    """Base64, as stored in the notebook."""
    mime_type: str
    output_index: int = 0
    """Which output of its cell the image is (read_cell_output's output_index)."""
    size: int = 0
    """Decoded bytes."""


Part = TextPart | ImagePart


@dataclass
class ImageBudget:
    """What images one answer may still carry; shared by every cell an answer shows."""

    bytes_left: int = MAX_IMAGE_BYTES
    count_left: int = MAX_ANSWER_IMAGES
    reason: str = "this answer's image budget is used"
    """Why an image that fits the per-image cap is not shown."""

    def take(self, size: int) -> bool:
        if size > self.bytes_left or self.count_left <= 0:
            return False
        self.bytes_left -= size
        self.count_left -= 1
        return True


@dataclass(frozen=True)
class Rendered:
    """A cell's outputs as the model sees them."""

    text: str
    """Every output as text (image outputs as a one-line note), within the budget; '' if none."""
    images: list[ImagePart] = field(default_factory=list)
    """The images shown as image content (a note for each is in `text`)."""
    cuts: list[str] = field(default_factory=list)
    """What `text` leaves out, each with the call that returns it (each is also marked in place)."""


def head_length(limit: int) -> int:
    """How many leading characters `truncate_middle` keeps of a text cut to `limit` (the rest is tail)."""
    return limit * 2 // 3


def truncate_middle(text: str, limit: int, hint: str = "") -> str:
    """Keep the head and tail of `text` within `limit` characters, saying how much was cut.

    The marker comes on top of `limit`; callers keep `MARKER_CHARS` free for it.
    """
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


def cut_note(cell: str | None, output_index: int, omitted: int, offset: int) -> str:
    """One output's cut, for an answer's first line: how much, and the call that returns it."""
    if cell is None:
        return f"{omitted} characters of output {output_index} (not saved anywhere: print a smaller part)"
    return f"{omitted} characters of output {output_index}: {_more_hint(cell, output_index, offset)}"


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
            f"offset {offset} is out of range; the text has {len(text)} characters (valid: 0 to {len(text)})"
        )
    if max_chars <= 0:
        raise UsageError(f"max_chars must be positive, not {max_chars}")
    end = min(offset + max_chars, len(text))
    return TextPage(text[offset:end], offset, end if end < len(text) else None, len(text))


@dataclass(frozen=True)
class _Item:
    index: int
    text: str
    cuttable: bool
    """Output text may be cut in the middle; notes (images, unknown types) are shown whole or not at all."""


def _image(
    output: dict[str, Any], index: int, cell: str | None, max_image_bytes: int, budget: ImageBudget
) -> tuple[_Item, ImagePart | None, str] | None:
    """An image output as a note and the image shown, or the note and what was left out."""
    data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
    mime = next((t for t in _IMAGE_TYPES if t in data), None)
    if mime is None:
        return None
    b64 = joined_text(data[mime]).replace("\n", "")
    size = len(b64) * 3 // 4 - b64[-2:].count("=")  # decoded size without decoding megabytes
    where = f"read_cell_output({cell}, output_index={index}) returns it" if cell else "it was not saved"
    if size > max_image_bytes:
        note = (
            f"[{mime} image of {size} bytes (output {index}) not shown: over the {max_image_bytes}-byte image "
            "cap (--max-image-bytes). Save a smaller figure (lower dpi or size) to see it]"
        )
        return _Item(index, note, False), None, f"image output {index} (over --max-image-bytes: save a smaller one)"
    if not budget.take(size):
        note = f"[{mime} image of {size} bytes (output {index}) not shown: {budget.reason}; {where}]"
        return _Item(index, note, False), None, f"image output {index}: {where}"
    note = f"[{mime} image of {size} bytes (output {index}): shown as image content]"
    return _Item(index, note, False), ImagePart(b64, mime, index, size), ""


def _items(
    outputs: Iterable[dict[str, Any]], cell: str | None, max_image_bytes: int, budget: ImageBudget, cuts: list[str]
) -> tuple[list[_Item], list[ImagePart]]:
    items: list[_Item] = []
    images: list[ImagePart] = []
    for index, output in enumerate(outputs):
        image = _image(output, index, cell, max_image_bytes, budget)
        if image is not None:
            items.append(image[0])
            if image[1] is not None:
                images.append(image[1])
            if image[2]:
                cuts.append(image[2])
            continue
        text = output_text(output).rstrip("\n")
        if text:
            items.append(_Item(index, text, True))
        else:
            data = output.get("data", {})
            kinds = ", ".join(sorted(data)) if isinstance(data, dict) and data else output.get("output_type", "output")
            items.append(_Item(index, f"[{kinds}]", False))
    return items, images


def _cut_each(items: Sequence[_Item], budget: int, cell: str | None, cuts: list[str]) -> list[str]:
    """Every output, long ones cut to an equal share of what the short ones leave."""
    notes = sum(len(i.text) + 1 for i in items if not i.cuttable)
    cuttable = [k for k, i in enumerate(items) if i.cuttable]
    lengths = [len(items[k].text) for k in cuttable]
    room = max(budget - notes - len(cuttable), 0)
    shares = _shares(lengths, room)
    for _ in range(3):  # reserve room for the markers of the outputs that get cut (converges fast)
        cut = sum(n > s for n, s in zip(lengths, shares, strict=True))
        shares = _shares(lengths, max(room - cut * MARKER_CHARS, 0))
    shown = [i.text for i in items]
    for k, share in zip(cuttable, shares, strict=True):
        item = items[k]
        if len(item.text) > share:
            shown[k] = truncate_middle(item.text, share, _more_hint(cell, item.index, head_length(share)))
            cuts.append(cut_note(cell, item.index, len(item.text) - share, head_length(share)))
    return shown


def _window(items: Sequence[_Item], budget: int, cell: str | None, cuts: list[str]) -> list[str]:
    """Too many outputs to cut each: the first ones and the last ones, one marker for those between."""
    room = max(budget - MARKER_CHARS, 0)
    head: list[str] = []
    tail: list[str] = []
    used = 0
    first, last = 0, len(items) - 1
    limits = (room * 2 // 3, room)
    for side, limit in enumerate(limits):
        while first <= last:
            item = items[first] if side == 0 else items[last]
            cost = len(item.text) + 1
            if used + cost > limit:
                space = limit - used - MARKER_CHARS - 1
                if item.cuttable and space >= MIN_SHARE:
                    hint = _more_hint(cell, item.index, head_length(space))
                    (head if side == 0 else tail).append(truncate_middle(item.text, space, hint))
                    cuts.append(cut_note(cell, item.index, len(item.text) - space, head_length(space)))
                    used = limit
                    if side == 0:
                        first += 1
                    else:
                        last -= 1
                break
            used += cost
            if side == 0:
                head.append(item.text)
                first += 1
            else:
                tail.append(item.text)
                last -= 1
    tail.reverse()
    if first <= last:
        skipped = items[first : last + 1]
        chars = sum(len(i.text) for i in skipped)
        where = (
            f"read_cell_output({cell}, output_index={skipped[0].index}) and the following indexes return them"
            if cell
            else "they were not saved anywhere; print less"
        )
        what = f"outputs {skipped[0].index} to {skipped[-1].index} ({len(skipped)} outputs, {chars} characters)"
        head.append(f"[... {what} omitted; {where} ...]")
        cuts.append(f"{what}: {where}")
    return head + tail


def render(
    outputs: Sequence[dict[str, Any]],
    *,
    max_chars: int = MAX_OUTPUT_CHARS,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    cell: str | None = None,
    images: ImageBudget | None = None,
) -> Rendered:
    """Render a cell's outputs for the model: text within `max_chars` in all, plus images.

    `cell` is how read_cell_output addresses the cell (e.g. ``cell_id="ab12"``); a cut output's marker
    names that call with the exact offset where the omitted text starts. None means the outputs were
    not saved (execute_code), and the marker says so. `images` is the answer's image budget, shared
    when one answer shows several cells (a fresh one per call otherwise).
    """
    budget = images if images is not None else ImageBudget(max_image_bytes)
    cuts: list[str] = []
    items, shown_images = _items(outputs, cell, max_image_bytes, budget, cuts)
    if not items:
        return Rendered("", shown_images)
    if sum(len(i.text) + 1 for i in items) <= max_chars:
        texts = [i.text for i in items]
    elif len(items) * MIN_SHARE <= max_chars:
        texts = _cut_each(items, max_chars, cell, cuts)
    else:
        texts = _window(items, max_chars, cell, cuts)
    return Rendered("\n".join(texts), shown_images, cuts)


def render_outputs(
    outputs: Sequence[dict[str, Any]],
    *,
    max_chars: int = MAX_OUTPUT_CHARS,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    cell: str | None = None,
) -> list[Part]:
    """`render` as a list of parts: the text (if any) first, then the images."""
    rendered = render(outputs, max_chars=max_chars, max_image_bytes=max_image_bytes, cell=cell)
    parts: list[Part] = [TextPart(rendered.text)] if rendered.text else []
    return parts + list(rendered.images)
