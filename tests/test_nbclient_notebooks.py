"""nbclient's own test notebooks through `nbmcp exec`, compared with nbclient's run of them (issue 26).

The notebooks are copied from nbclient's repository (tests/files/nbclient/, with its licence). nbclient's
runs of them (with the options of its test_run_all_notebooks) are stored in tests/files/nbclient/executed/
by tests/nbclient_refs.py, which says how to regenerate them; nbmcp runs every notebook here on a real
kernel. The saved outputs are compared after nbclient's own normalisation (`normalize_output` in
nbclient's tests/test_client.py: memory addresses, widget model ids, base64, SVG as XML, tracebacks' cell
names and colours), cell by cell with the execution counts, then the saved widget state and language_info.

The golden outputs stored in the notebooks are not the reference: some were written by older IPython
versions (a traceback's context lines, an `Output()` shown as display_data); nbclient's run is.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .conftest import USER_DIR_VARS
from .nbclient_refs import INPUTS, REFS, REGENERATE, TERMINAL, cleaned, load, versions, without_outputs

NBCLIENT_FILES = INPUTS
NOTEBOOKS = sorted(p.name for p in NBCLIENT_FILES.glob("*.ipynb"))
#: Those issue 26 names: each must be here and match.
REQUIRED = {"Clear Output.ipynb", "update-display-id.ipynb", "JupyterWidgets.ipynb", "Output.ipynb"}
REQUIRED |= {"Check History in Memory.ipynb"}
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


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The folder the notebooks ran in and the folder of nbmcp's runs (one nbmcp process, --jobs 2)."""
    base = tmp_path_factory.mktemp("nbclient")
    inputs, out = base / "in", base / "out"
    shutil.copytree(NBCLIENT_FILES, inputs, ignore=shutil.ignore_patterns(REFS.name))
    for name in NOTEBOOKS:  # run from no outputs, as nbclient's tests do
        nbformat.write(cleaned(inputs / name), inputs / name)
    (base / "user").mkdir()
    env = {var: str(base / "user" / sub) for var, sub in USER_DIR_VARS.items()}
    env |= {"NBMCP_LOCK_DIR": str(base / "locks"), "NBMCP_STATE_DIR": str(base / "state"), **TERMINAL}
    # --allow-errors for "Skip Exceptions" (nbclient's option for it); the others raise nothing untagged.
    command = [sys.executable, "-m", "nbmcp", "exec", "--output-dir", str(out), "--jobs", "2"]
    command += ["--allow-errors", "--kernel", "python3", *(str(inputs / n) for n in NOTEBOOKS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, env=os.environ | env)
    assert done.returncode == 0, done.stderr
    return inputs, out


def _stored_and_nbmcp(runs: tuple[Path, Path], name: str) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    inputs, out = runs
    return load(name, inputs), nbformat.read(out / name, as_version=4)


def _versions_hint(stored: nbformat.NotebookNode) -> str:
    """What to do when the kernel's packages are not those that made the stored run."""
    made_with, here = stored.metadata.nbclient_reference, versions()
    return "" if made_with == here else f" (stored run made with {dict(made_with)}, installed: {here}; {REGENERATE})"


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


def test_the_stored_runs_are_of_the_current_notebooks(tmp_path: Path) -> None:
    """A notebook changed, added or removed without storing nbclient's run again fails here."""
    stored = sorted(p.name for p in REFS.glob("*.ipynb"))
    assert stored == NOTEBOOKS, f"{REFS} does not hold a run of each notebook of {NBCLIENT_FILES}: {REGENERATE}"
    for name in NOTEBOOKS:
        ran, now = without_outputs(load(name, tmp_path)), without_outputs(cleaned(NBCLIENT_FILES / name))
        assert ran == now, f"{name} changed since nbclient's run of it was stored: {REGENERATE}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_outputs_match_nbclient(runs: tuple[Path, Path], name: str) -> None:
    expected, actual = _stored_and_nbmcp(runs, name)
    hint = _versions_hint(expected)
    if nbformat.validator.isvalid(expected):  # Output.ipynb's kernelspec lacks a name: both keep it
        nbformat.validate(actual)
    assert len(actual.cells) == len(expected.cells)
    for i, (want, got) in enumerate(zip(expected.cells, actual.cells, strict=True)):
        outputs = [normalize_output(o) for o in got.get("outputs", [])]
        assert outputs == [normalize_output(o) for o in want.get("outputs", [])], f"cell {i}{hint}"
        assert got.get("execution_count") == want.get("execution_count"), f"cell {i}"
    assert actual.metadata.language_info == expected.metadata.language_info, hint


@pytest.mark.parametrize("name", ["JupyterWidgets.ipynb", "Output.ipynb"])
def test_widget_state_matches_nbclient(runs: tuple[Path, Path], name: str) -> None:
    """metadata.widgets: the same models, and each shown widget with nbclient's state (Output captures too)."""
    expected, actual = _stored_and_nbmcp(runs, name)
    hint = _versions_hint(expected)
    want, got = expected.metadata.widgets[WIDGET_STATE], actual.metadata.widgets[WIDGET_STATE]
    assert (got["version_major"], got["version_minor"]) == (want["version_major"], want["version_minor"]) == (2, 0)
    assert sorted(m["model_name"] for m in got["state"].values()) == sorted(
        m["model_name"] for m in want["state"].values()
    ), hint
    shown = list(zip(_model_ids(expected), _model_ids(actual), strict=True))
    assert shown
    for want_id, got_id in shown:
        a, b = want["state"][want_id], got["state"][got_id]
        assert {k: v for k, v in a.items() if k != "state"} == {k: v for k, v in b.items() if k != "state"}, hint
        # Another model's id differs from run to run ("IPY_MODEL_..."): compared as a reference only.
        assert {k: _no_model_ids(v) for k, v in a["state"].items()} == {
            k: _no_model_ids(v) for k, v in b["state"].items()
        }, hint
    if name == "Output.ipynb":
        # What the Output widgets captured is in their state, not in the cells (nbclient's OutputWidget).
        captured = [got["state"][k]["state"]["outputs"] for k in _model_ids(actual)]
        assert [[o["text"] for o in c] for c in captured[5:]] == [["in inner\nalso in inner\n"], ["in outer\n"]]
        assert "in output" not in str([c.get("outputs") for c in actual.cells])
