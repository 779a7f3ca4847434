"""nbclient's own test notebooks through `nbmcp exec`, compared with nbclient's run of them (issue 26).

The notebooks are copied from nbclient's repository (tests/files/nbclient/, with its licence). Both
tools run every notebook here on a real kernel, at the same time; the saved outputs are compared
after nbclient's own normalisation (`normalize_output` in nbclient's tests/test_client.py: memory
addresses, widget model ids, base64, SVG as XML, tracebacks' cell names and colours), cell by cell
with the execution counts, then the saved widget state and language_info.

The golden outputs stored in the files are not the reference: some were written by older IPython
versions (a traceback's context lines, an `Output()` shown as display_data); nbclient's run here is.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import FILES, USER_DIR_VARS

NBCLIENT_FILES = FILES / "nbclient"
NOTEBOOKS = sorted(p.name for p in NBCLIENT_FILES.glob("*.ipynb"))
#: Those issue 26 names: each must be here and match.
REQUIRED = {"Clear Output.ipynb", "update-display-id.ipynb", "JupyterWidgets.ipynb", "Output.ipynb"}
REQUIRED |= {"Check History in Memory.ipynb"}
#: nbclient's tests run its notebooks with a standard terminal size (it shapes tracebacks).
TERMINAL = {"COLUMNS": "80", "LINES": "24"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# nbclient's tests/test_client.py
_ADDR = re.compile(r"0x[0-9a-f]{7,9}")
_IPYTHON_INPUT = re.compile(r"(<ipython-input-\d+-[0-9a-f]+>|<IPY-INPUT>) in (<module>|<cell line: \d>\(\))")
_IPYTHON8_INPUT = re.compile(r"((Cell|Input) In\s?\[\d+\]|<IPY-INPUT>), (in )?(line \d|<module>|<cell line: \d>\(\))")
# nbconvert's strip_ansi
_ANSI = re.compile("\x1b\\[(.*?)([@-~])|\x1b\\](.*?)\x07")


def _normalize_base64(text: str) -> str:
    try:
        return base64.b64encode(base64.b64decode(text.encode("ascii"))).decode("ascii")
    except (ValueError, TypeError):
        return text


def normalize_output(output: dict[str, Any]) -> dict[str, Any]:
    """nbclient's `normalize_output`; the SVG parsed with the standard library instead of xmltodict."""
    output = copy.deepcopy(dict(output))
    output.pop("metadata", None)
    if "text" in output:
        output["text"] = _ADDR.sub("<HEXADDR>", output["text"])
    data = output.get("data", {})
    if "text/plain" in data:
        data["text/plain"] = _ADDR.sub("<HEXADDR>", data["text/plain"])
    if WIDGET_VIEW in data:
        data[WIDGET_VIEW]["model_id"] = "<MODEL_ID>"
    if "image/svg+xml" in data:
        data["image/svg+xml"] = ("svg", ET.canonicalize(data["image/svg+xml"], strip_text=True))
    for key, value in data.items():
        if isinstance(value, str):
            data[key] = _normalize_base64(value)
    if "traceback" in output:
        output["traceback"] = [
            _IPYTHON8_INPUT.sub("<IPY-INPUT>", _IPYTHON_INPUT.sub("<IPY-INPUT>", _ANSI.sub("", line)))
            for line in output["traceback"]
        ]
    return output


def _cleaned(path: Path) -> nbformat.NotebookNode:
    """The notebook as nbclient's tests run it: no outputs, no execution counts."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.pop("execution_count", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


async def _nbclient_runs(folder: Path) -> dict[str, nbformat.NotebookNode]:
    """Each notebook run by nbclient with the options of its test_run_all_notebooks, two at a time."""
    limit = asyncio.Semaphore(2)

    async def one(name: str) -> nbformat.NotebookNode:
        nb = _cleaned(folder / name)
        client = NotebookClient(
            nb,
            kernel_name="python3",
            allow_errors=name == "Skip Exceptions.ipynb",
            resources={"metadata": {"path": str(folder)}},
        )
        async with limit:
            return await client.async_execute()

    # Output.ipynb first: in a process where nbclient has already run another notebook, its Output
    # widget's cells wait for their reply until the timeout (nbclient 0.10 and 0.11, sync or async).
    names = sorted(NOTEBOOKS, key=lambda name: name != "Output.ipynb")
    runs = await asyncio.gather(*(one(name) for name in names))
    return dict(zip(names, runs, strict=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, nbformat.NotebookNode], Path]:
    """nbclient's runs and the folder of nbmcp's, made at the same time (one nbmcp process, --jobs 2)."""
    base = tmp_path_factory.mktemp("nbclient")
    inputs, out = base / "in", base / "out"
    shutil.copytree(NBCLIENT_FILES, inputs)
    for name in NOTEBOOKS:  # run from no outputs, as nbclient's tests do
        nbformat.write(_cleaned(inputs / name), inputs / name)
    (base / "user").mkdir()
    env = {var: str(base / "user" / sub) for var, sub in USER_DIR_VARS.items()}
    env |= {"NBMCP_LOCK_DIR": str(base / "locks"), "NBMCP_STATE_DIR": str(base / "state"), **TERMINAL}
    with pytest.MonkeyPatch.context() as mp:
        for var, value in env.items():
            mp.setenv(var, value)
        # --allow-errors for "Skip Exceptions" (nbclient's option for it); the others raise nothing untagged.
        command = [sys.executable, "-m", "nbmcp", "exec", "--output-dir", str(out), "--jobs", "2"]
        command += ["--allow-errors", "--kernel", "python3", *(str(inputs / n) for n in NOTEBOOKS)]
        nbmcp = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            reference = asyncio.run(_nbclient_runs(inputs))
            _, err = nbmcp.communicate(timeout=100)
        finally:
            if nbmcp.poll() is None:
                nbmcp.kill()
                nbmcp.wait()
    assert nbmcp.returncode == 0, err
    return reference, out


def _model_ids(nb: nbformat.NotebookNode) -> list[str]:
    return [
        output.data[WIDGET_VIEW]["model_id"]
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if WIDGET_VIEW in output.get("data", {})
    ]


def _no_model_ids(value: Any) -> Any:
    return re.sub(r"IPY_MODEL_[0-9a-f]+", "IPY_MODEL_<ID>", value) if isinstance(value, str) else value


def test_the_notebooks_issue_26_names_are_here() -> None:
    assert set(NOTEBOOKS) >= REQUIRED
    assert (NBCLIENT_FILES / "LICENSE").is_file()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_outputs_match_nbclient(runs: tuple[dict[str, nbformat.NotebookNode], Path], name: str) -> None:
    reference, out = runs
    expected, actual = reference[name], nbformat.read(out / name, as_version=4)
    if nbformat.validator.isvalid(expected):  # Output.ipynb's kernelspec lacks a name: both keep it
        nbformat.validate(actual)
    assert len(actual.cells) == len(expected.cells)
    for i, (want, got) in enumerate(zip(expected.cells, actual.cells, strict=True)):
        outputs = [normalize_output(o) for o in got.get("outputs", [])]
        assert outputs == [normalize_output(o) for o in want.get("outputs", [])], f"cell {i}"
        assert got.get("execution_count") == want.get("execution_count"), f"cell {i}"
    assert actual.metadata.language_info == expected.metadata.language_info


@pytest.mark.parametrize("name", ["JupyterWidgets.ipynb", "Output.ipynb"])
def test_widget_state_matches_nbclient(runs: tuple[dict[str, nbformat.NotebookNode], Path], name: str) -> None:
    """metadata.widgets: the same models, and each shown widget with nbclient's state (Output captures too)."""
    reference, out = runs
    expected, actual = reference[name], nbformat.read(out / name, as_version=4)
    want, got = expected.metadata.widgets[WIDGET_STATE], actual.metadata.widgets[WIDGET_STATE]
    assert (got["version_major"], got["version_minor"]) == (want["version_major"], want["version_minor"]) == (2, 0)
    assert sorted(m["model_name"] for m in got["state"].values()) == sorted(
        m["model_name"] for m in want["state"].values()
    )
    shown = list(zip(_model_ids(expected), _model_ids(actual), strict=True))
    assert shown
    for want_id, got_id in shown:
        a, b = want["state"][want_id], got["state"][got_id]
        assert {k: v for k, v in a.items() if k != "state"} == {k: v for k, v in b.items() if k != "state"}
        # Another model's id differs from run to run ("IPY_MODEL_..."): compared as a reference only.
        assert {k: _no_model_ids(v) for k, v in a["state"].items()} == {
            k: _no_model_ids(v) for k, v in b["state"].items()
        }
    if name == "Output.ipynb":
        # What the Output widgets captured is in their state, not in the cells (nbclient's OutputWidget).
        captured = [got["state"][k]["state"]["outputs"] for k in _model_ids(actual)]
        assert [[o["text"] for o in c] for c in captured[5:]] == [["in inner\nalso in inner\n"], ["in outer\n"]]
        assert "in output" not in str([c.get("outputs") for c in actual.cells])
