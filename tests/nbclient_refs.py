"""nbclient's runs of its own test notebooks, stored as the reference of tests/test_nbclient_notebooks.py.

The notebooks in tests/files/nbclient/ were run by nbclient (with the options of its own
test_run_all_notebooks) and saved to tests/files/nbclient/executed/, with what depends on the machine
(the Python version, the folder the notebooks ran in) replaced by placeholders that `load` fills in
again. Regenerate them after changing a notebook there, or when a kernel-side upgrade (IPython,
ipykernel, ipywidgets) changes what the kernel prints, from the checkout's root:

    python -m tests.nbclient_refs

It runs the notebooks one at a time (~20 s) and rewrites the whole folder; the widget model ids are
numbered, so an unchanged run changes no file. If nbclient's run of Output.ipynb stalls until its
timeout (seen on a loaded machine), the notebook is run again, up to three times.

The stored runs were made with nbclient 0.11.0, nbformat 5.11.1, ipykernel 7.4.0, IPython 9.18.1,
ipywidgets 8.1.9 on Python 3.11; each file records these versions in metadata.nbclient_reference.

Why stored rather than run beside nbmcp by the test: nbclient's run cost ~12 s of CPU per test run,
and on a loaded machine its run of Output.ipynb sometimes waited for a widget reply until its timeout
(nbclient's own stall, also in a fresh process or run alone).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import nbformat

INPUTS = Path(__file__).parent / "files" / "nbclient"
REFS = INPUTS / "executed"
#: nbclient's tests run its notebooks with a standard terminal size (it shapes tracebacks).
TERMINAL = {"COLUMNS": "80", "LINES": "24"}
#: The packages whose versions shape the stored outputs.
PACKAGES = ("nbclient", "nbformat", "ipykernel", "ipython", "ipywidgets")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: Seconds per cell: every cell here takes well under one; a stalled run fails instead of hanging.
CELL_TIMEOUT = 30
REGENERATE = "regenerate them with `python -m tests.nbclient_refs` (see its docstring)"


def cleaned(path: Path) -> nbformat.NotebookNode:
    """The notebook as nbclient's tests run it: no outputs, no execution counts."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.pop("execution_count", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def without_outputs(nb: nbformat.NotebookNode) -> list[dict[str, object]]:
    """The cells with neither outputs nor execution counts: what a stored run must share with its input."""
    return [{k: v for k, v in cell.items() if k not in ("outputs", "execution_count")} for cell in nb.cells]


def versions() -> dict[str, str]:
    """The installed versions of `PACKAGES`, and Python's major.minor (its full version is a placeholder)."""
    return {"python": ".".join(platform.python_version_tuple()[:2]), **{name: version(name) for name in PACKAGES}}


def _placeholders(folder: Path) -> dict[str, str]:
    # The kernel runs in this interpreter (the "python3" kernelspec of its environment).
    return {"<PYTHON_VERSION>": platform.python_version(), "<FOLDER>": str(folder)}


def load(name: str, folder: Path) -> nbformat.NotebookNode:
    """The stored nbclient run of notebook `name`, as if it had run here in `folder`."""
    text = (REFS / name).read_text(encoding="utf-8")
    for placeholder, value in _placeholders(folder).items():
        text = text.replace(placeholder, value)
    return nbformat.reads(text, as_version=4)


def _stable_model_ids(nb: nbformat.NotebookNode, text: str) -> str:
    """`text` with the widget model ids (random at each run) numbered, so a regeneration changes no line.

    Numbered in the order the cells show them, then the models they refer to, then the others.
    """
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    order = [
        o.data[WIDGET_VIEW]["model_id"]
        for c in nb.cells
        for o in c.get("outputs", [])
        if WIDGET_VIEW in o.get("data", {})
    ]
    for model_id in order:  # grows while it is walked: breadth first
        fields = state.get(model_id, {}).get("state", {})
        order += re.findall(r"IPY_MODEL_([0-9a-f]{32})", json.dumps([fields[k] for k in sorted(fields)]))
    order += sorted(state, key=lambda m: json.dumps(state[m], sort_keys=True))
    numbers = {model_id: f"{n:032x}" for n, model_id in enumerate(dict.fromkeys(order), 1)}
    return re.sub(r"[0-9a-f]{32}", lambda m: numbers.get(m.group(), m.group()), text)


def _store(name: str, nb: nbformat.NotebookNode, folder: Path) -> None:
    nb.metadata["nbclient_reference"] = versions()
    # Written again: the widget states sorted by their new ids.
    text = nbformat.writes(nbformat.reads(_stable_model_ids(nb, nbformat.writes(nb)), as_version=4))
    for placeholder, value in _placeholders(folder).items():
        text = text.replace(value, placeholder)
    (REFS / name).write_text(text + "\n", encoding="utf-8")


async def _run(folder: Path, name: str) -> nbformat.NotebookNode:
    from nbclient import NotebookClient  # only here: the test imports this module, not nbclient

    client = NotebookClient(
        cleaned(folder / name),
        kernel_name="python3",
        allow_errors=name == "Skip Exceptions.ipynb",
        timeout=CELL_TIMEOUT,
        record_timing=False,  # timestamps: nothing the comparison uses, and a diff at each regeneration
        resources={"metadata": {"path": str(folder)}},
    )
    return await client.async_execute()


def _run_with_retries(folder: Path, name: str, attempts: int = 3) -> nbformat.NotebookNode:
    from nbclient.exceptions import CellTimeoutError

    for _ in range(attempts - 1):
        print(f"nbclient runs {name}", flush=True)
        try:
            return asyncio.run(_run(folder, name))
        except CellTimeoutError:  # nbclient's intermittent stall (module docstring)
            print(f"{name}: a cell timed out after {CELL_TIMEOUT} s; running it again", flush=True)
    print(f"nbclient runs {name}, a last time", flush=True)
    return asyncio.run(_run(folder, name))


def main() -> None:
    """Run every notebook of `INPUTS` with nbclient, one at a time, and store the runs in `REFS`."""
    os.environ.update(TERMINAL)
    names = sorted(p.name for p in INPUTS.glob("*.ipynb"))
    # Output.ipynb first: in a process where nbclient has already run another notebook, its Output
    # widget's cells wait for their reply until the timeout (nbclient 0.10 and 0.11, sync or async).
    names.sort(key=lambda name: name != "Output.ipynb")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        shutil.copytree(INPUTS, folder, ignore=shutil.ignore_patterns(REFS.name))
        runs = {}
        for name in names:
            runs[name] = _run_with_retries(folder, name)
        shutil.rmtree(REFS, ignore_errors=True)  # stored only once every run succeeded
        REFS.mkdir()
        for name, nb in runs.items():
            _store(name, nb, folder)


if __name__ == "__main__":
    main()
