"""Cells to HTML fragments for the live view, rendered on the server with nbconvert's filters.

nbconvert renders a notebook the way JupyterLab shows it, so its filters do the work here: markdown
(mistune, CommonMark with tables, math kept as written), Python highlighting (Pygments with the
IPython lexer) and ANSI colours (the `ansi-*` classes JupyterLab uses). Measured (issue 22): about
0.5 ms for a markdown cell, 0.8 ms for a code cell and 0.05 ms for a coloured traceback, so the
changed cells of an edit render well within the one-second target; a whole 10,000-cell notebook does
not (several seconds), which is why the page asks only for the cells it shows.

Outputs are untrusted. A fragment never carries script that runs in the view's origin:

- `text/html` goes into an `<iframe sandbox="allow-scripts" srcdoc=...>` without `allow-same-origin`:
  its document has an opaque origin, so even a script that ran could not reach the page, its token or
  its cookies. The page's Content-Security-Policy (inherited by srcdoc frames) lets only the frame's
  resize script (`FRAME_SCRIPT`, allowed by its hash) run there;
- SVG is shown as an `<img>` of a data URL, where SVG never runs script;
- markdown may hold raw HTML (Jupyter allows it): it is cleaned with nbconvert's `SanitizeHTML`
  (bleach) keeping the tags markdown produces, dropping scripts, event handlers and foreign URLs.

`render_cells(nb, ids)` is the entry point another face (the MCP App) can call on its own.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from collections.abc import Collection, Mapping, Sequence
from importlib import resources
from typing import Any

from ..kernels.choice import load_jupyter_client

__all__ = [
    "FRAME_SCRIPT",
    "LONG_OUTPUT_CHARS",
    "LONG_OUTPUT_LINES",
    "MAX_OUTPUT_CHARS",
    "cell_hash",
    "cell_key",
    "pygments_css",
    "render_cell",
    "render_cells",
    "render_outputs",
    "stylesheet",
    "warm_up",
]

#: An output longer than this many lines shows its first lines and a "show N more lines" expander.
LONG_OUTPUT_LINES = 60
#: ... or longer than this many characters.
LONG_OUTPUT_CHARS = 8_000
#: Characters of one output sent to the page at most; the rest stays in the file (and is said so).
MAX_OUTPUT_CHARS = 1_000_000

#: Runs inside each sandboxed HTML-output frame: reports the document's height to the page, which sizes
#: the frame. The page's CSP allows this script by its hash, and no other inline script.
FRAME_SCRIPT = (
    "(function(){function s(){parent.postMessage({nbmcpHeight:document.documentElement.scrollHeight},'*')}"
    "addEventListener('load',s);new ResizeObserver(s).observe(document.documentElement)})()"
)

#: Mime types of a rich output, most preferred first (JupyterLab's order, without the ones that run code).
_MIME_ORDER = (
    "text/html",
    "text/markdown",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "image/gif",
    "application/json",
    "text/latex",
    "text/plain",
)

#: Tags and attributes markdown and the HTML people write in notebooks produce; everything else is dropped.
_MD_TAGS = frozenset(
    [
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "code",
        "dd",
        "del",
        "details",
        "div",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    ]
)
_MD_ATTRIBUTES = {
    "*": ["class", "id", "title", "align"],
    "a": ["href", "title"],
    "img": ["src", "alt", "title", "width", "height"],
    "td": ["colspan", "rowspan", "style"],
    "th": ["colspan", "rowspan", "style"],
    "ol": ["start"],
}


@functools.cache
def _filters() -> tuple[Any, Any, Any, Any]:
    # nbconvert takes about a second to import: only a view pays it, once. It imports nbclient and with it
    # jupyter_client, which a worker thread may be importing at the same moment to choose the kernel.
    load_jupyter_client("nbconvert")
    from nbconvert.filters.ansi import ansi2html
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    from nbconvert.preprocessors.sanitize import SanitizeHTML

    sanitizer = SanitizeHTML(tags=sorted(_MD_TAGS), attributes=_MD_ATTRIBUTES, strip=True)
    return markdown2html_mistune, ansi2html, Highlight2HTML(pygments_lexer="ipython3"), sanitizer


def warm_up() -> None:
    """Import the renderer's libraries now (the first render would otherwise wait for them)."""
    _filters()


def pygments_css() -> str:
    """The stylesheet for highlighted code (`.highlight` blocks)."""
    from pygments.formatters import HtmlFormatter

    return str(HtmlFormatter(style="default").get_style_defs(".highlight"))


def stylesheet() -> str:
    """Every style the fragments need (the page's, ANSI colours, highlighting), for a page of another face."""
    page = resources.files(__package__).joinpath("static").joinpath("view.css").read_text(encoding="utf-8")
    return page + "\n" + pygments_css()


def cell_key(cell: Mapping[str, Any], index: int) -> str:
    """The cell's id; a cell of an nbformat 4.4 notebook has none, and is known by its index then."""
    cell_id = cell.get("id")
    return str(cell_id) if cell_id else f"#{index}"


def cell_hash(cell: Mapping[str, Any]) -> str:
    """A short hash of everything the cell holds: equal hashes render the same."""
    data = json.dumps(cell, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


#: Where a markdown cell's `attachment:NAME` images point while the HTML is cleaned (bleach keeps only
#: http(s) URLs); they become data URLs of the cell's own attachments afterwards.
_ATTACHMENT_URL = "https://attachment.invalid/"
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")


def _markdown(source: str, attachments: Mapping[str, Any] | None = None) -> str:
    markdown2html, _, _, sanitizer = _filters()
    if attachments:
        source = source.replace("attachment:", _ATTACHMENT_URL)
    cleaned = str(sanitizer.sanitize_html_tags(markdown2html(source)))
    for name, bundle in (attachments or {}).items():
        mime = next((m for m in _IMAGE_TYPES if m in (bundle or {})), None)
        if mime is not None:
            payload = html.escape("".join(_text(bundle[mime]).split()))
            cleaned = cleaned.replace(f'"{_ATTACHMENT_URL}{html.escape(name)}"', f'"data:{mime};base64,{payload}"')
    return cleaned


def _shortened(text: str, css: str) -> str:
    """`text` (already HTML-safe per line) in a <pre>, long ones cut with a <details> expander for the rest."""
    more_note = ""
    if len(text) > MAX_OUTPUT_CHARS:
        more_note = f'<div class="note">{len(text) - MAX_OUTPUT_CHARS:,} more characters are in the file</div>'
        text = text[:MAX_OUTPUT_CHARS]
    lines = text.split("\n")
    if len(lines) <= LONG_OUTPUT_LINES and len(text) <= LONG_OUTPUT_CHARS:
        return f'<pre class="{css}">{text}</pre>{more_note}'
    head: list[str] = []
    size = 0
    for line in lines[:LONG_OUTPUT_LINES]:
        size += len(line) + 1
        if size > LONG_OUTPUT_CHARS and head:
            break
        head.append(line)
    rest = lines[len(head) :]
    return (
        f'<pre class="{css}">{chr(10).join(head)}</pre>'
        f'<details class="more"><summary>show {len(rest):,} more lines</summary>'
        f'<pre class="{css}">{chr(10).join(rest)}</pre></details>{more_note}'
    )


def _ansi_block(text: str, css: str) -> str:
    _, ansi2html, _, _ = _filters()
    # nbconvert's ansi2html escapes the text and turns colour codes into JupyterLab's ansi-* classes.
    return _shortened(str(ansi2html(text)), css)


def _frame(content: str) -> str:
    doc = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{margin:0;font:14px sans-serif}'
        f"</style><script>{FRAME_SCRIPT}</script></head><body>{content}</body></html>"
    )
    return (
        '<iframe class="html-output" sandbox="allow-scripts" referrerpolicy="no-referrer" loading="lazy" '
        f'srcdoc="{html.escape(doc, quote=True)}"></iframe>'
    )


def _image(mime: str, data: str) -> str:
    payload = "".join(data.split())  # base64 as saved, possibly with line breaks
    return f'<img class="image-output" alt="{mime} output" src="data:{mime};base64,{html.escape(payload)}">'


def _rich(data: Mapping[str, Any]) -> str:
    mime = next((m for m in _MIME_ORDER if m in data), None)
    if mime is None:
        kinds = ", ".join(sorted(data)) or "no data"
        return f'<div class="note">an output this view does not show ({html.escape(kinds)})</div>'
    value = data[mime]
    if mime == "text/html":
        return _frame(_text(value))
    if mime == "text/markdown":
        return f'<div class="markdown">{_markdown(_text(value))}</div>'
    if mime == "image/svg+xml":
        svg = _text(value).encode()
        return _image(mime, base64.b64encode(svg).decode())
    if mime.startswith("image/"):
        return _image(mime, _text(value))
    if mime == "application/json":
        text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
        return _shortened(html.escape(text), "json")
    if mime == "text/latex":
        return _shortened(html.escape(_text(value)), "latex")
    return _ansi_block(_text(value), "text")


def _output(output: Mapping[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        name = "stderr" if output.get("name") == "stderr" else "stdout"
        return f'<div class="output stream">{_ansi_block(_text(output.get("text")), name)}</div>'
    if kind == "error":
        traceback = output.get("traceback") or [f"{output.get('ename', '')}: {output.get('evalue', '')}"]
        return f'<div class="output error">{_ansi_block(chr(10).join(map(str, traceback)), "traceback")}</div>'
    if kind in ("execute_result", "display_data"):
        prompt = ""
        if kind == "execute_result" and output.get("execution_count") is not None:
            prompt = f'<div class="prompt out">Out[{int(output["execution_count"])}]:</div>'
        return f'<div class="output {kind}">{prompt}<div class="body">{_rich(output.get("data") or {})}</div></div>'
    return f'<div class="note">an output of type {html.escape(str(kind))}</div>'


def render_outputs(outputs: Sequence[Mapping[str, Any]]) -> str:
    """The HTML of a list of outputs (a cell's, or a running cell's outputs so far)."""
    return "".join(_output(o) for o in outputs)


def render_cell(cell: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One cell as {"id", "hash", "type", "html"}: `html` is the cell's inner HTML for the page."""
    kind = str(cell.get("cell_type", "code"))
    source = _text(cell.get("source"))
    if kind == "markdown":
        body = f'<div class="markdown">{_markdown(source, cell.get("attachments"))}</div>'
    elif kind == "code":
        _, _, highlight, _ = _filters()
        count = cell.get("execution_count")
        prompt = f"[{int(count)}]:" if count is not None else "[ ]:"
        body = (
            f'<div class="input"><div class="prompt in">{prompt}</div>'
            f'<div class="source">{highlight(source)}</div></div>'
            f'<div class="outputs">{render_outputs(cell.get("outputs") or [])}</div>'
        )
    else:
        body = f'<pre class="raw">{html.escape(source)}</pre>'
    return {"id": cell_key(cell, index), "hash": cell_hash(cell), "type": kind, "html": body}


def render_cells(nb: Mapping[str, Any], ids: Collection[str] | None = None) -> list[dict[str, Any]]:
    """The cells of `nb` (all, or those whose id is in `ids`) rendered, in notebook order."""
    cells = nb.get("cells") or []
    return [render_cell(cell, i) for i, cell in enumerate(cells) if ids is None or cell_key(cell, i) in ids]
