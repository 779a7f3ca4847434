"""A JUnit XML report of notebook runs (`nbmcp exec --junit-xml FILE`, issue 16).

One `<testcase>` per notebook: `classname` is its folder (dotted, relative to the current folder, as
pytest names a test module's package), `name` its file name, `time` its run's seconds. A notebook whose
cell raised or timed out has a `<failure>`; one whose kernel could not start or died, or that is not a
readable notebook, has an `<error>`. Either element's `message` names the cell (index and id) and the
exception, and its text is the traceback without ANSI colours.

The document is valid for both schemas CI systems read: the strict Ant schema (`testsuite` with
`properties`, `system-out`, `system-err`, `id`, `package`, `hostname`, `timestamp` and no `skipped`
attribute; `failure` and `error` with `message` and `type`) and Jenkins' looser junit-10 schema that
GitHub, GitLab and Jenkins report plug-ins follow.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from ..kernels.outputs import strip_ansi
from .batch import NotebookResult

__all__ = ["SUITE_NAME", "junit_xml", "write_junit_xml"]

SUITE_NAME = "nbmcp exec"
# Characters XML 1.0 cannot carry at all (ElementTree would write them and produce a broken file):
# C0 controls other than tab, newline and carriage return, surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", strip_ansi(text))


def classname(path: Path, root: Path) -> str:
    """The notebook's folder as a dotted name: `reports/weekly/a.ipynb` -> `reports.weekly`."""
    folder = path.absolute().parent
    try:
        parts = folder.relative_to(root.absolute()).parts
    except ValueError:
        parts = folder.parts[1:]  # outside the root: its absolute path, without the leading "/"
    if not parts:
        parts = (root.absolute().name or "root",)  # a notebook in the root itself: the root's name
    return ".".join(parts)


def _failure(result: NotebookResult) -> ET.Element | None:
    status = result.status
    if status == "passed":
        return None
    if result.problem is not None:
        element = ET.Element(
            "error", message=_clean(str(result.problem)).splitlines()[0], type=type(result.problem).__name__
        )
        element.text = _clean(str(result.problem))
        return element
    failed = result.failed
    assert failed is not None
    ref = failed.cell
    where = f"cell {ref.index} (id {ref.id})" if ref.id else f"cell {ref.index}"
    errors = [o for o in failed.result.outputs if o.get("output_type") == "error"]
    if status == "error" and errors:
        kind = str(errors[-1].get("ename", "Exception"))
        message = f"{where} raised {kind}: {errors[-1].get('evalue', '')}"
    elif status == "timeout":
        kind, message = "CellTimeoutError", f"{where} timed out"
    else:
        kind, message = "DeadKernelError", f"{where} killed the kernel"
    tag = "failure" if status in ("error", "timeout") else "error"
    element = ET.Element(tag, message=_clean(message).splitlines()[0] if message.strip() else where, type=kind)
    element.text = _clean(f"{where}\n{failed.error_text()}")
    return element


def junit_xml(results: Sequence[NotebookResult], *, root: Path | None = None, started: datetime | None = None) -> bytes:
    """The JUnit XML document (UTF-8 bytes) for these results; `root` names the classnames (default: cwd)."""
    root = root or Path.cwd()
    started = started or datetime.now(timezone.utc)
    failures = sum(1 for r in results if r.status in ("error", "timeout"))
    errors = sum(1 for r in results if r.status not in ("passed", "error", "timeout"))
    total_time = f"{sum(r.elapsed for r in results):.3f}"
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": str(errors), "time": total_time}
    suites = ET.Element("testsuites")  # no attributes: the Ant schema allows none here
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": SUITE_NAME,
            "package": "notebooks",
            "id": "0",
            # The Ant schema's timestamp has no time zone: UTC, said here since the file cannot say it.
            "timestamp": started.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": socket.gethostname() or "localhost",
            **counts,
        },
    )
    ET.SubElement(suite, "properties")
    for result in results:
        path = result.job.input
        case = ET.SubElement(
            suite,
            "testcase",
            name=_clean(path.name),
            classname=_clean(classname(path, root)),
            time=f"{result.elapsed:.3f}",
        )
        failure = _failure(result)
        if failure is not None:
            case.append(failure)
    ET.SubElement(suite, "system-out")
    ET.SubElement(suite, "system-err")
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit_xml(path: Path, results: Sequence[NotebookResult], *, started: datetime | None = None) -> None:
    """Write the report to `path` (its folder is created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(results, started=started))
