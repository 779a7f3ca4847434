"""What the model sees: ANSI stripped, long text cut in the middle, images capped."""

from __future__ import annotations

import base64
import re

import pytest

from nbmcp.errors import UsageError
from nbmcp.kernels.outputs import strip_ansi
from nbmcp.server.render import (
    MAX_ANSWER_IMAGES,
    MAX_IMAGE_BYTES,
    MAX_OUTPUT_CHARS,
    ImageBudget,
    ImagePart,
    TextPage,
    TextPart,
    page_text,
    render,
    render_outputs,
    truncate_middle,
)


def test_caps_are_named_constants_with_sane_values() -> None:
    assert MAX_OUTPUT_CHARS == 20_000
    assert MAX_IMAGE_BYTES == 1_000_000


def test_ansi_codes_are_stripped() -> None:
    assert strip_ansi("\x1b[0;31mValueError\x1b[0m: x") == "ValueError: x"


def test_truncate_middle_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    text = "A" * 1000 + "B" * 1000
    out = truncate_middle(text, 300, "see the file")
    assert out.startswith("A" * 200) and out.endswith("B" * 100)
    assert "[... 1700 characters omitted; see the file ...]" in out
    assert truncate_middle("short", 300) == "short"


def test_render_applies_the_budget_to_all_text() -> None:
    outputs = [{"output_type": "stream", "name": "stdout", "text": "x" * 50_000}]
    parts = render_outputs(outputs, max_chars=1000)
    assert len(parts) == 1 and isinstance(parts[0], TextPart)
    # The marker's room comes out of the budget: the whole text, marker included, stays within it.
    assert "49201 characters omitted" in parts[0].text and len(parts[0].text) <= 1000


def test_images_become_image_parts_unless_over_the_cap() -> None:
    small = base64.b64encode(b"\x89PNG" + b"0" * 10).decode()
    big = base64.b64encode(b"\xff\xd8" + b"0" * 2000).decode()
    outputs = [
        {"output_type": "display_data", "data": {"image/png": small, "text/plain": "<Figure>"}, "metadata": {}},
        {"output_type": "display_data", "data": {"image/jpeg": big}, "metadata": {}},
    ]
    parts = render_outputs(outputs, max_image_bytes=1000)
    images = [p for p in parts if isinstance(p, ImagePart)]
    assert [(i.mime_type, i.data) for i in images] == [("image/png", small)]
    text = parts[0]
    assert isinstance(text, TextPart) and "image/jpeg image of 2002 bytes (output 1) not shown" in text.text
    # The structured view has only text: it must say that the shown image exists, too.
    assert "image/png image of 14 bytes (output 0): shown as image content" in text.text


def test_html_is_used_only_without_plain_text() -> None:
    both = [
        {"output_type": "display_data", "data": {"text/html": "<b>html</b>", "text/plain": "plain"}, "metadata": {}}
    ]
    html_only = [{"output_type": "display_data", "data": {"text/html": "<b>html</b>"}, "metadata": {}}]
    assert render_outputs(both)[0] == TextPart("plain")
    assert render_outputs(html_only)[0] == TextPart("html")


def test_the_budget_is_shared_between_outputs_and_each_cut_names_its_exact_offset() -> None:
    short = {"output_type": "stream", "name": "stdout", "text": "short\n"}
    long_a = {"output_type": "stream", "name": "stderr", "text": "a" * 5000}
    long_b = {"output_type": "execute_result", "data": {"text/plain": "b" * 8000}, "metadata": {}}
    parts = render_outputs([short, long_a, long_b], max_chars=1500, cell="cell_id='c1'")
    text = parts[0].text
    assert isinstance(parts[0], TextPart) and len(text) <= 1500
    # Each long output gets an equal share of what the short one and the two markers leave: 546.
    assert text.startswith("short\n" + "a" * 364 + "\n[... 4454")
    assert "[... 4454 characters omitted; read_cell_output(cell_id='c1', output_index=1, offset=364)" in text
    assert "[... 7454 characters omitted; read_cell_output(cell_id='c1', output_index=2, offset=364)" in text
    unsaved = render_outputs([long_a], max_chars=600)[0]
    assert isinstance(unsaved, TextPart) and "this output was not saved anywhere" in unsaved.text


def test_many_small_outputs_share_one_marker_and_stay_within_the_budget() -> None:
    outputs = [
        {"output_type": "display_data", "data": {"text/plain": f"<obj {i}>"}, "metadata": {}} for i in range(10_000)
    ]
    rendered = render(outputs, max_chars=MAX_OUTPUT_CHARS, cell="cell_id='c1'")
    assert len(rendered.text) <= MAX_OUTPUT_CHARS
    assert rendered.text.startswith("<obj 0>\n<obj 1>\n") and rendered.text.endswith("<obj 9999>")
    marker = re.search(
        r"\[\.\.\. outputs (\d+) to (\d+) \((\d+) outputs, \d+ characters\) omitted; "
        r"read_cell_output\(cell_id='c1', output_index=(\d+)\)",
        rendered.text,
    )
    assert marker is not None
    first, last, count, index = map(int, marker.groups())
    assert count == last - first + 1 and index == first and rendered.text.count("omitted") == 1
    # Every output is either shown or inside the marked run.
    shown = {int(m) for m in re.findall(r"<obj (\d+)>", rendered.text)}
    assert shown | set(range(first, last + 1)) == set(range(10_000))


def test_images_per_answer_are_capped_in_number_and_bytes() -> None:
    png = base64.b64encode(b"\x89PNG" + b"0" * 100).decode()
    outputs = [{"output_type": "display_data", "data": {"image/png": png}, "metadata": {}} for _ in range(50)]
    rendered = render(outputs, cell="cell_id='c1'")
    assert len(rendered.images) == MAX_ANSWER_IMAGES
    assert rendered.text.count("shown as image content") == MAX_ANSWER_IMAGES
    assert (
        "output 20) not shown: this answer's image budget is used; read_cell_output(cell_id='c1', output_index=20)"
        in rendered.text
    )
    budget = ImageBudget(250)
    two = render(outputs[:5], images=budget)
    assert len(two.images) == 2 and budget.bytes_left == 250 - 2 * 104


def test_page_text_windows_and_ranges() -> None:
    page = page_text("0123456789", 4, 3)
    assert (page.text, page.offset, page.next_offset, page.total_chars) == ("456", 4, 7, 10)
    assert page_text("0123456789", 7, 3).next_offset is None
    assert page_text("", 0, 5) == TextPage("", 0, None, 0)
    with pytest.raises(UsageError, match="valid: 0 to 10"):
        page_text("0123456789", 11, 3)
    with pytest.raises(UsageError, match="max_chars must be positive"):
        page_text("0123456789", 0, 0)
