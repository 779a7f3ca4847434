"""Parameters as papermill does them (issue 16), compared with papermill itself (test extra only)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from click.testing import CliRunner
from papermill import cli as papermill_cli
from papermill.inspection import inspect_notebook
from papermill.iorw import NoDatesSafeLoader, load_notebook_node
from papermill.parameterize import parameterize_notebook
from papermill.translators import PythonTranslator

from nbmcp.ci.parameters import (
    INJECTED_TAG,
    declared_parameters,
    inject_parameters,
    load_yaml,
    merge_parameters,
    python_source,
    resolve_type,
    translate,
)
from nbmcp.cli.main import cli
from nbmcp.errors import UsageError

from .conftest import read_nb


@pytest.fixture(autouse=True)
def _no_black(monkeypatch: pytest.MonkeyPatch) -> None:
    # papermill reformats its injected source with Black when Black is importable; nbmcp writes
    # papermill's text without it (see nbmcp/ci/parameters.py). None in sys.modules makes the import fail.
    monkeypatch.setitem(sys.modules, "black", None)


VALUES: list[Any] = [
    0,
    21,
    -54321,
    10**30,
    1.5,
    -5432.1,
    1e-05,
    1e300,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "plain",
    "with \"double\" and 'single' quotes",
    "line\nbreak\ttab \\ backslash",
    "unicode é ü 日本",
    True,
    False,
    None,
    [],
    [1, "two", 3.0, None, True],
    {},
    {"a": 1, "b": [1, 2, {"c": "d"}], "e": {"f": None}, 'quo"te': "x"},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_each_value_translates_as_papermill_translates_it(value: Any) -> None:
    assert translate(value) == PythonTranslator.translate(value)


def test_the_injected_source_equals_papermills_codify() -> None:
    parameters = {f"p{i}": v for i, v in enumerate(VALUES)}
    source = python_source(parameters)
    assert source == PythonTranslator.codify(parameters)
    assert source.startswith("# Parameters\np0 = 0\np1 = 21\n")
    # And it is Python that gives the values back.
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    assert namespace["p4"] == 1.5 and namespace["p13"] == "with \"double\" and 'single' quotes"
    assert namespace["p14"] == "line\nbreak\ttab \\ backslash" and namespace["p15"] == "unicode é ü 日本"
    assert namespace["p22"] == VALUES[22]


@pytest.mark.parametrize(
    "text",
    ["21", "-3", "1.5", "1e3", "nan", "inf", "True", "False", "None", "true", "none", "0x10", "1_000", "abc", ""],
)
def test_p_values_are_read_as_papermill_reads_them(text: str) -> None:
    ours, theirs = resolve_type(text), papermill_cli._resolve_type(text)
    assert type(ours) is type(theirs)
    assert ours == theirs or (ours != ours and theirs != theirs)  # nan


def test_yaml_is_read_as_papermill_reads_it() -> None:
    text = "when: 2024-01-31\nn: 3\nx: 1.5\nflag: yes\nitems: [a, 1]\nnested: {k: null}\nquoted: '007'\n"
    assert load_yaml(text) == yaml.load(text, Loader=NoDatesSafeLoader)
    assert load_yaml(text)["when"] == "2024-01-31"  # a date stays a string, as in papermill
    assert load_yaml("") == {}


def _notebook(*cells: tuple[str, list[str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for source, tags in cells:
        cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.mark.parametrize(
    "cells, where",
    [
        ([("import os", []), ("alpha = 1", ["parameters"]), ("print(alpha)", [])], 2),
        ([("import os", []), ("print(alpha)", [])], 0),  # no parameters cell: at the top
        ([("alpha = 1", ["parameters"]), ("alpha = 5", [INJECTED_TAG]), ("print(alpha)", [])], 1),  # replaced
    ],
    ids=["after-parameters-cell", "top", "replaces-injected"],
)
def test_the_cell_goes_where_papermill_puts_it(tmp_path: Path, cells: list[tuple[str, list[str]]], where: int) -> None:
    parameters = {"alpha": 21, "name": "x", "ratios": [0.5, 1.5], "opts": {"a": True}}
    ours = _notebook(*cells)
    path = tmp_path / "work" / "nb.ipynb"
    nbformat.write(ours, path)
    # papermill's reader adds the metadata its parameterize step expects (tags on every cell).
    theirs = parameterize_notebook(load_notebook_node(str(path)), parameters, kernel_name="python3", language="python")
    assert inject_parameters(ours, parameters) == where
    assert [(c.source, c.metadata.get("tags", [])) for c in ours.cells] == [
        (c.source, c.metadata.get("tags", [])) for c in theirs.cells
    ]
    assert ours.cells[where].metadata["tags"] == [INJECTED_TAG]


def test_a_command_line_gives_papermills_injected_cell(tmp_path: Path) -> None:
    # papermill's own command line (--prepare-only: inject, do not run) against nbmcp's parsing of the
    # same options, given in an order that differs from the order papermill applies them in.
    source = tmp_path / "work" / "in.ipynb"
    nbformat.write(_notebook(("alpha = 1", ["parameters"]), ("print(alpha)", [])), source)
    params_file = tmp_path / "work" / "params.yaml"
    params_file.write_text("alpha: 1\nfrom_file: [1, 2]\nwhen: 2024-01-31\nname: file\n")
    options = [
        ("-p", "alpha", "21"),
        ("-y", "name: yaml\nratio: 0.25\nflag: true"),
        ("-r", "raw", "21"),
        ("-f", str(params_file)),
        ("-p", "name", "cli"),
        ("-p", "nothing", "None"),
    ]
    args = [part for option in options for part in option]
    out = tmp_path / "work" / "papermill.ipynb"
    result = CliRunner().invoke(papermill_cli.papermill, [str(source), str(out), "--prepare-only", *args])
    assert result.exit_code == 0, result.output
    theirs = read_nb(out)
    injected = [c for c in theirs.cells if INJECTED_TAG in c.metadata.get("tags", [])]

    parameters = merge_parameters(
        files=[str(params_file)],
        yaml_texts=["name: yaml\nratio: 0.25\nflag: true"],
        values=[("alpha", "21"), ("name", "cli"), ("nothing", "None")],
        raw_values=[("raw", "21")],
    )
    assert parameters == theirs.metadata.papermill.parameters
    assert python_source(parameters) == injected[0].source
    assert parameters["raw"] == "21" and parameters["alpha"] == 21 and parameters["name"] == "cli"


def test_values_starting_with_a_dash_and_papermills_spellings_give_papermills_injected_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # argparse reads "-inf" or "--y" as an option; papermill's click takes the next two words as they are.
    source = tmp_path / "work" / "in.ipynb"
    defaults = "x = 0.0\ny = 0.0\nz = ''\nw = 0\nv = ''\nu = 0"
    nbformat.write(_notebook((defaults, ["parameters"]), ("print(x, y, z, w, v, u)", [])), source)
    params_file = tmp_path / "work" / "params.yaml"
    params_file.write_text("u: -5\n")
    args = [
        *("-p", "x", "-inf"),
        *("-p", "y", "-1e-3"),
        *("-r", "z", "--y"),
        *("--parameters_yaml", "w: -2"),
        *("--parameters_raw", "v", "-p"),
        *("--parameters_file", str(params_file)),
    ]
    out = tmp_path / "work" / "papermill.ipynb"
    result = CliRunner().invoke(papermill_cli.papermill, [str(source), str(out), "--prepare-only", *args])
    assert result.exit_code == 0, result.output
    theirs = [c for c in read_nb(out).cells if INJECTED_TAG in c.metadata.get("tags", [])]

    ours_path = tmp_path / "work" / "ours.ipynb"
    assert cli("exec", str(source), "-o", str(ours_path), *args) == 0, capsys.readouterr().err
    ours = read_nb(ours_path)
    injected = [c for c in ours.cells if INJECTED_TAG in c.metadata.get("tags", [])]
    assert injected[0].source == theirs[0].source
    assert "x = float('-inf')" in injected[0].source and 'z = "--y"' in injected[0].source
    assert ours.cells[-1].outputs[0].text == "-inf -0.001 --y -2 -p -5\n"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"values": [("my-name", "1")]}, "'my-name'"),
        ({"yaml_texts": ["[1, 2]"]}, "must be a YAML mapping"),
        ({"yaml_texts": ["a: [1"]}, "not valid YAML"),
        ({"files": ["/nonexistent/params.yaml"]}, "cannot read the parameters file"),
    ],
)
def test_bad_parameters_say_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=r"parameter|YAML|-f") as exc:
        merge_parameters(**kwargs)
    assert message in str(exc.value)


def test_only_python_notebooks_get_parameters() -> None:
    nb = _notebook(("x <- 1", ["parameters"]))
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    with pytest.raises(UsageError, match="only be injected into Python notebooks; this one's language is R"):
        inject_parameters(nb, {"x": 2})
    assert len(nb.cells) == 1


@pytest.mark.parametrize(
    "source",
    [
        "alpha = 1\nregion = 'eu'  # a comment\nn: int = 3\n",
        "a, b = 1, 2\nif True:\n    hidden = 1\nratio=0.5\n",
        "%matplotlib inline\nalpha = 1\nbeta: str = 'x'\n",  # not Python: read line by line
        "",
    ],
)
def test_the_declared_parameters_are_the_names_papermill_infers(tmp_path: Path, source: str) -> None:
    nb = _notebook((source, ["parameters"]), ("print(1)", []))
    nbformat.write(nb, tmp_path / "work" / "nb.ipynb")
    theirs = set(inspect_notebook(str(tmp_path / "work" / "nb.ipynb")))
    ours = declared_parameters(nb)
    assert ours is not None and theirs <= ours, (ours, theirs)
    if "," not in source:
        assert ours == theirs
    assert declared_parameters(_notebook(("alpha = 1", []))) is None  # no cell tagged parameters


def test_an_unknown_parameter_warns_as_papermill_does_and_strict_makes_it_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 24: `-p regoin us` ran silently with the default region.
    path = tmp_path / "work" / "report.ipynb"
    nbformat.write(_notebook(("region = 'eu'", ["parameters"]), ("print(region)", [])), path)
    assert cli("exec", str(path), "-p", "regoin", "us", "-p", "region", "us", "--strict-parameters") == 2
    err = capsys.readouterr().err
    assert "--strict-parameters" in err and "does not define parameter regoin" in err and "region " not in err
    assert not any(INJECTED_TAG in c.metadata.get("tags", []) for c in read_nb(path).cells)  # nothing ran
    assert cli("exec", str(path), "-p", "regoin", "us", "--timeout", "60") == 0
    err = capsys.readouterr().err
    assert "warning: Passed unknown parameter: regoin" in err
    assert read_nb(path).cells[-1].outputs[0].text == "eu\n"  # papermill too runs on, with the default
    assert cli("exec", str(path), "-p", "region", "us", "--strict-parameters", "--timeout", "60") == 0
    assert "unknown parameter" not in capsys.readouterr().err
    assert read_nb(path).cells[-1].outputs[0].text == "us\n"
