"""What the model sees: ANSI stripped, long text cut in the middle, images capped."""

from __future__ import annotations

import base64

from nbmcp.render import (
    MAX_IMAGE_BYTES,
    MAX_OUTPUT_CHARS,
    ImagePart,
    TextPart,
    render_outputs,
    strip_ansi,
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
    assert "49000 characters omitted" in parts[0].text


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
    assert isinstance(text, TextPart) and "image/jpeg image of 2002 bytes not shown" in text.text


def test_html_is_used_only_without_plain_text() -> None:
    both = [
        {"output_type": "display_data", "data": {"text/html": "<b>html</b>", "text/plain": "plain"}, "metadata": {}}
    ]
    html_only = [{"output_type": "display_data", "data": {"text/html": "<b>html</b>"}, "metadata": {}}]
    assert render_outputs(both)[0] == TextPart("plain")
    assert render_outputs(html_only)[0] == TextPart("html")
