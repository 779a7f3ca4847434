"""What a client sees of the server does not change with how fast it starts (issue 23).

The start was made cheaper (garbage collection held off, models built on first use, modules loaded
later); the tools a client lists must stay exactly as they were. `tests/files/tools_list.json` holds
the `tools/list` answers (names, descriptions, input and output schemas, annotations) of a notebook's
server, of one with --structured-output and of a folder's, as the code before that work gave them.
A change to a tool on purpose updates it: `python -m tests.test_startup` writes it again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import nbformat
import pytest

from nbmcp.config import Settings
from nbmcp.server.app import create_server

GOLDEN = Path(__file__).parent / "files" / "tools_list.json"


async def tool_lists(folder: Path) -> dict[str, Any]:
    """The `tools/list` answers of the servers the golden file holds, as JSON."""
    notebook = folder / "start.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    servers = {
        "notebook": Settings(path=notebook, watch=False),
        "structured": Settings(path=notebook, watch=False, structured_output=True),
        "folder": Settings(path=folder, watch=False),
    }
    lists: dict[str, Any] = {}
    for name, settings in servers.items():
        server, _ = create_server(settings)
        tools = await server.list_tools()  # what the tools/list handler answers with
        lists[name] = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    return lists


@pytest.mark.anyio
async def test_the_tool_list_is_what_it_was(tmp_path: Path) -> None:
    lists = await tool_lists(tmp_path)
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert set(lists) == set(golden)
    for name, tools in lists.items():
        assert [t["name"] for t in tools] == [t["name"] for t in golden[name]], name
        for tool, expected in zip(tools, golden[name], strict=True):
            assert tool == expected, f"{name}: {tool['name']} changed (python -m tests.test_startup writes it again)"


def test_the_command_module_leaves_the_notebook_stack_to_cli() -> None:
    # `main` holds garbage collection off first, so what the module imports itself is not covered.
    heavy = ("nbformat", "jsonschema", "mcp", "pydantic", "nbmcp.config", "nbmcp.notebook.store")
    code = f"import sys, nbmcp.cli.main; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


#: Two first uses of jupyter_client at once, as when a server with a live view opens its notebook: the
#: kernel is looked up on one worker thread while the view's renderer loads nbconvert (and with it nbclient,
#: which imports jupyter_client.manager) on another. A finder holds the look-up early in jupyter_client's
#: own import, starts the renderer, and lets the look-up go on once the renderer reaches
#: jupyter_client.manager (or after a second): the collision that once failed a tool call. What else
#: nbconvert imports is loaded first, so that the renderer gets there in time. Without the lock in
#: load_jupyter_client this script failed in 3 of 8 runs, the rest passing by luck of timing.
FIRST_USES_AT_ONCE = """
import sys, threading
import bleach, jinja2, mistune, nbformat, pygments.lexers, traitlets
from nbmcp.kernels.choice import check_kernel_options
from nbmcp.view.render import warm_up
assert "jupyter_client" not in sys.modules
look_up_held, renderer_there, errors = threading.Event(), threading.Event(), []
class Collide:
    def find_spec(self, name, path, target=None):
        if name == "jupyter_client.asynchronous" and threading.current_thread().name == "look-up":
            look_up_held.set()
            renderer_there.wait(1.0)
        elif name == "jupyter_client.manager" and threading.current_thread().name != "look-up":
            renderer_there.set()
        return None
sys.meta_path.insert(0, Collide())
def run(first_use):
    try:
        first_use()
    except Exception as exc:
        errors.append(repr(exc))
look_up = threading.Thread(target=run, args=(lambda: check_kernel_options(kernel_name="python3", probe=False),))
look_up.name = "look-up"
look_up.start()
look_up_held.wait(30)
render = threading.Thread(target=run, args=(warm_up,))
render.start()
look_up.join()
render.join()
print(errors)
"""


def test_jupyter_client_first_used_by_two_threads_at_once_is_whole_in_both() -> None:
    # Without load_jupyter_client's lock, CPython breaks the import deadlock by handing one thread a
    # half-imported module ("cannot import name 'AsyncKernelManager' from 'jupyter_client.manager'").
    done = subprocess.run([sys.executable, "-c", FIRST_USES_AT_ONCE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def _write_golden() -> None:
    with tempfile.TemporaryDirectory() as folder:
        lists = anyio.run(tool_lists, Path(folder))
    GOLDEN.write_text(json.dumps(lists, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    _write_golden()
