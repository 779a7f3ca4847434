"""The live view's renderer and feed without a browser: fragments, shortening, and what a change sends."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from nbmcp.session.activity import Activity, current_tool
from nbmcp.view.live import MAX_PUSHED_CELLS, NotebookFeed
from nbmcp.view.render import LONG_OUTPUT_LINES, MAX_OUTPUT_CHARS, render_cells, render_outputs

from .viewing import write_nb


def test_render_cells_gives_ids_hashes_and_html_per_cell() -> None:
    nb = nbformat.v4.new_notebook(cells=[new_markdown_cell("*a*"), new_code_cell("x = 1", execution_count=7)])
    rendered = render_cells(nb)
    assert [c["id"] for c in rendered] == [c.id for c in nb.cells]
    assert [c["type"] for c in rendered] == ["markdown", "code"]
    assert "<em>a</em>" in rendered[0]["html"] and "[7]:" in rendered[1]["html"]
    assert render_cells(nb, {nb.cells[1].id}) == rendered[1:]
    again = render_cells(nb)
    assert [c["hash"] for c in again] == [c["hash"] for c in rendered]
    nb.cells[1].source = "x = 2"
    assert render_cells(nb)[1]["hash"] != rendered[1]["hash"]


def test_cells_without_ids_are_known_by_index() -> None:
    nb = {"cells": [{"cell_type": "markdown", "source": "a", "metadata": {}}]}
    assert render_cells(nb)[0]["id"] == "#0"


def test_long_outputs_are_shortened_with_a_way_to_expand() -> None:
    text = "".join(f"line {i}\n" for i in range(500))
    html = render_outputs([new_output("stream", name="stdout", text=text)])
    assert "<details" in html and f"show {500 - LONG_OUTPUT_LINES + 1:,} more lines" in html
    assert "line 0" in html and "line 499" in html  # the rest is in the expander, not lost
    huge = render_outputs([new_output("stream", name="stdout", text="x" * (MAX_OUTPUT_CHARS + 10))])
    assert "10 more characters are in the file" in huge


def test_rich_outputs_pick_the_richest_safe_type() -> None:
    html = render_outputs(
        [
            new_output("display_data", data={"text/markdown": "**bold**", "text/plain": "bold"}),
            new_output("display_data", data={"application/vnd.unknown": "?"}),
            new_output("display_data", data={"text/latex": "$x$", "text/plain": "x"}),
        ]
    )
    assert "<strong>bold</strong>" in html
    assert "application/vnd.unknown" in html and "does not show" in html
    assert "$x$" in html


def test_a_change_sends_only_the_changed_cells_deletions_and_the_order(nb_path: Path) -> None:
    nb = write_nb(nb_path, *(new_markdown_cell(f"cell {i}") for i in range(5)))
    feed = NotebookFeed(nb_path)
    assert feed.load() is not None
    assert feed.snapshot()["order"] == [c.id for c in nb.cells]
    assert feed.load() is None  # nothing changed
    nb.cells[1].source = "changed"
    gone = nb.cells.pop(3).id
    nbformat.write(nb, nb_path)
    event = feed.load()
    assert event is not None
    assert [c["id"] for c in event["changed"]] == [nb.cells[1].id] and "changed" in event["changed"][0]["html"]
    assert event["deleted"] == [gone] and event["order"] == [c.id for c in nb.cells]
    nb.cells[0].source = "only the text"
    nbformat.write(nb, nb_path)
    event = feed.load()
    assert event is not None and "order" not in event and len(json.dumps(event)) < 1000


def test_a_large_change_sends_hashes_and_lets_the_page_ask(nb_path: Path) -> None:
    nb = write_nb(nb_path, *(new_markdown_cell(f"cell {i}") for i in range(MAX_PUSHED_CELLS + 20)))
    feed = NotebookFeed(nb_path)
    event = feed.load()
    assert event is not None
    with_html = [c for c in event["changed"] if "html" in c]
    assert len(with_html) == MAX_PUSHED_CELLS and len(event["changed"]) == len(nb.cells)
    last = nb.cells[-1].id
    assert [c["id"] for c in feed.rendered([last, "no-such-id"])] == [last]


def test_the_cell_a_tool_changed_is_marked_with_the_tool(nb_path: Path) -> None:
    nb = write_nb(nb_path, new_markdown_cell("a"), new_markdown_cell("b"))
    activity = Activity()
    feed = NotebookFeed(nb_path, lambda: activity)
    feed.load()
    token = current_tool.set("overwrite_cell_source")
    try:
        activity.changed()
    finally:
        current_tool.reset(token)
    nb.cells[1].source = "b2"
    nbformat.write(nb, nb_path)
    event = feed.load()
    assert event is not None and event["last"] == {"id": nb.cells[1].id, "tool": "overwrite_cell_source"}


def test_a_markdown_cells_attached_image_is_shown_and_foreign_urls_are_not() -> None:
    cell = new_markdown_cell("![plot](attachment:plot.png) ![x](attachment:missing.png) ![y](data:text/html,x)")
    cell["attachments"] = {"plot.png": {"image/png": "iVBORw0KGgo="}}
    html = render_cells({"cells": [cell]})[0]["html"]
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html
    assert "data:text/html" not in html
