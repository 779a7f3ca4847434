"""Notebook parameters the way papermill does them (issue 16): parsing, Python source, injection.

papermill is the tool people parameterize notebooks with, so `nbmcp exec -p/-r/-y/-f` follows its
rules exactly rather than inventing new ones: the same value parsing (`papermill/cli.py`:
`_resolve_type`, YAML without timestamps), the same injected source (`papermill/translators.py`:
`PythonTranslator.codify`) and the same placement (`papermill/parameterize.py`:
`parameterize_notebook`). A notebook parameterized by either tool looks the same, and tests compare
the two. Two deliberate differences: papermill reformats the injected source with Black when Black
happens to be installed, which makes its output depend on the machine; nbmcp always writes the
unformatted text (papermill's own text without Black). And only Python kernels are translated.
"""

from __future__ import annotations

import ast
import base64
import binascii
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nbformat
import yaml
from nbformat import NotebookNode

from ..errors import UsageError

__all__ = [
    "INJECTED_TAG",
    "PARAMETERS_TAG",
    "check_names",
    "declared_parameters",
    "inject_parameters",
    "load_yaml",
    "merge_parameters",
    "python_source",
    "read_parameters_file",
    "resolve_type",
    "translate",
    "unknown_parameters",
]

#: The tag of the cell holding the notebook's default parameters (papermill's convention).
PARAMETERS_TAG = "parameters"
#: The tag of the cell nbmcp (or papermill) inserts with the given values.
INJECTED_TAG = "injected-parameters"
#: The first line of the injected cell, as papermill writes it.
COMMENT = "Parameters"


def resolve_type(value: str) -> Any:
    """A `-p NAME VALUE` value as papermill reads it: True, False, None, an int, a float, else the string."""
    if value == "True":
        return True
    if value == "False":
        return False
    if value == "None":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)  # papermill's rule: "nan", "inf" and "1e3" are floats too
    except ValueError:
        return value


class NoDatesSafeLoader(yaml.SafeLoader):
    """papermill's loader: YAML 1.1 safe types, but a date stays a string (2024-01-31 -> "2024-01-31")."""


NoDatesSafeLoader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str, *, origin: str = "-y") -> dict[str, Any]:
    """Parameters from a YAML (or JSON) mapping, parsed as papermill parses `-y` and `-f`."""
    try:
        data = yaml.load(text, Loader=NoDatesSafeLoader)
    except yaml.YAMLError as exc:
        raise UsageError(f"{origin}: not valid YAML: {exc}") from exc
    if data is None:
        return {}  # papermill: an empty document adds nothing
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise UsageError(
            f"{origin}: parameters must be a YAML mapping of names to values (like `alpha: 0.5`), "
            f"not a {type(data).__name__}"
        )
    return data


def read_parameters_file(path: Path | str) -> dict[str, Any]:
    """Parameters from a YAML or JSON file (`-f`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-f {path}: cannot read the parameters file: {exc.strerror or exc}") from exc
    return load_yaml(text, origin=f"-f {path}")


def merge_parameters(
    *,
    base64_texts: Iterable[str] = (),
    files: Iterable[str] = (),
    yaml_texts: Iterable[str] = (),
    values: Iterable[tuple[str, str]] = (),
    raw_values: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """All parameters of one command line, later sources overriding earlier ones in papermill's order.

    papermill applies its options by kind, whatever their order on the command line: base64-encoded
    YAML (-b), files (-f), then YAML strings (-y), then -p values (typed), then -r values (raw strings).
    """
    merged: dict[str, Any] = {}
    for encoded in base64_texts:
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"-b {encoded[:40]!r}: not base64-encoded UTF-8 YAML ({exc})") from None
        merged.update(load_yaml(text, origin="-b"))
    for path in files:
        merged.update(read_parameters_file(path))
    for text in yaml_texts:
        merged.update(load_yaml(text))
    for name, value in values:
        merged[name] = resolve_type(value)
    for name, value in raw_values:
        merged[name] = value
    check_names(merged)
    return merged


def check_names(parameters: Mapping[str, Any]) -> None:
    """Refuse a name that cannot be assigned in Python (papermill would inject a SyntaxError)."""
    bad = [name for name in parameters if not (isinstance(name, str) and name.isidentifier())]
    if bad:
        raise UsageError(
            f"parameter name(s) {', '.join(map(repr, bad))}: a name must be a Python identifier (letters, digits, _)"
        )


#: A line that assigns a name, as papermill's PythonTranslator.inspect reads a parameters cell.
_ASSIGNMENT = re.compile(r"^(?P<target>\w[\w_]*)\s*(:\s*[^=]+)?=(?!=)")


def declared_parameters(nb: NotebookNode) -> set[str] | None:
    """The names the cell tagged `parameters` assigns; None when no cell has that tag.

    The names papermill reads (a `name = value` line, indented or not), and those Python sees assigned
    at the cell's top level (`a, b = 1, 2`, which papermill misses): a name either knows is not unknown.
    """
    at = _first_tagged(nb, PARAMETERS_TAG)
    if at < 0:
        return None
    source = nb.cells[at].get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    names = {m["target"] for m in (_ASSIGNMENT.match(line.strip()) for line in source.splitlines()) if m}
    try:
        tree = ast.parse(source)
    except SyntaxError:  # an IPython magic in it: papermill's reading alone
        return names
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def unknown_parameters(nb: NotebookNode, parameters: Iterable[str]) -> list[str]:
    """The given names that the notebook's parameters cell does not define (papermill warns of each)."""
    declared = declared_parameters(nb) or set()
    return [name for name in parameters if name not in declared]


# -- papermill's PythonTranslator, method for method ------------------------------------------------


def _escaped_str(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("unicode_escape").decode("utf-8").replace('"', r"\"")
    return f'"{value}"'


def _float(value: float) -> str:
    if math.isfinite(value):
        return f"{value}"
    if math.isnan(value):
        return "float('nan')"
    return "float('-inf')" if value < 0 else "float('inf')"


def translate(value: Any) -> str:
    """A Python expression for a JSON/YAML value, exactly as papermill's PythonTranslator.translate."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return _escaped_str(value)
    if isinstance(value, bool):  # before int: bool is an int
        return f"{value}"
    if isinstance(value, int):
        return f"{value}"
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_escaped_str(k)}: {translate(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(translate(v) for v in value) + "]"
    return _escaped_str(value)  # papermill's last resort: the value's str(), quoted


def python_source(parameters: Mapping[str, Any], comment: str = COMMENT) -> str:
    """The injected cell's source: a comment line, then `name = value` per parameter (papermill's codify)."""
    lines = [f"# {comment}".strip()] + [f"{name} = {translate(value)}" for name, value in parameters.items()]
    return "".join(line + "\n" for line in lines)


def _first_tagged(nb: NotebookNode, tag: str) -> int:
    for i, cell in enumerate(nb.cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return i
    return -1


def inject_parameters(nb: NotebookNode, parameters: Mapping[str, Any]) -> int:
    """Insert the injected-parameters cell into `nb` (in place) where papermill puts it; returns its index.

    An existing injected-parameters cell (from an earlier run) is replaced; otherwise the new cell goes
    right after the first cell tagged `parameters`, or at the top when there is none. Non-Python
    kernels are refused: their translation is not implemented.
    """
    check_names(parameters)
    language = nb.metadata.get("kernelspec", {}).get("language") or nb.metadata.get("language_info", {}).get("name")
    if language not in (None, "python"):
        raise UsageError(f"parameters can only be injected into Python notebooks; this one's language is {language}")
    cell = nbformat.v4.new_code_cell(source=python_source(parameters))
    cell.metadata["tags"] = [INJECTED_TAG]
    injected, declared = _first_tagged(nb, INJECTED_TAG), _first_tagged(nb, PARAMETERS_TAG)
    if injected >= 0:
        if "id" in nb.cells[injected]:
            cell["id"] = nb.cells[injected]["id"]  # the same cell, new values: a smaller diff
        nb.cells[injected] = cell
        return injected
    at = declared + 1 if declared >= 0 else 0
    nb.cells.insert(at, cell)
    return at
