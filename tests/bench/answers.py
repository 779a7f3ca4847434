"""What one answer costs on a large notebook: time and size of both views (issue 11).

    python -m tests.bench.answers [--cells 10000]

Prints, per call, the median time of 5 and the characters of the content view's text and of the
structured view's JSON. Both must stay within --max-output-chars (20,000) plus the answer overhead.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import nbformat
from mcp import Client

from nbmcp.config import Settings
from nbmcp.server.app import build_server


def _sizes(result: Any) -> tuple[int, int]:
    text = sum(len(b.text) for b in result.content if b.type == "text")
    return text, len(json.dumps(result.structured_content))


async def main(cells: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.ipynb"
        nb = nbformat.v4.new_notebook()
        for i in range(cells):
            cell = nbformat.v4.new_code_cell(f"x_{i} = {i}\nprint(x_{i})")
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}\n")]
            cell.execution_count = i + 1
            nb.cells.append(cell)
        nbformat.write(nb, path)
        async with Client(build_server(Settings(path=path, timeout=300, structured_output=True))) as client:
            calls: list[tuple[str, dict[str, Any]]] = [
                ("read_all_cells", {}),
                ("read_notebook", {"limit": 500}),
                ("read_notebook", {"limit": 500, "response_format": "detailed"}),
                ("read_cell", {"cell_index": cells // 2}),
            ]
            for tool, args in calls:
                times = []
                for _ in range(5):
                    started = time.perf_counter()
                    result = await client.call_tool(tool, args)
                    times.append(time.perf_counter() - started)
                text, structured = _sizes(result)
                median = sorted(times)[2] * 1000
                print(f"{tool} {args}: {median:.1f} ms; content {text} chars, structured {structured} JSON chars")
            for label, code in [
                ("print of 200,000 characters", "print('x' * 200_000)"),
                ("10,000 display() calls", "for i in range(10_000):\n    display(i)"),
            ]:
                result = await client.call_tool("execute_code", {"code": code, "timeout_seconds": 600})
                text, structured = _sizes(result)
                print(f"execute_code, {label}: content {text} chars, structured {structured} JSON chars")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=10_000, help="cells in the generated notebook")
    anyio.run(main, parser.parse_args().cells)
