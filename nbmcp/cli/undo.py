"""`nbmcp history PATH` and `nbmcp undo PATH [--steps N]`: the undo journal from a terminal (issue 15).

They read and change the journal every nbmcp process on the notebook shares, under the notebook's
lock, so they work while an MCP server has the notebook open (the server sees the undo as a change
on disk). No kernel is started.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

from ..errors import NbmcpError, UndoConflictError
from ..notebook.journal import MAX_JOURNAL_BYTES, MAX_JOURNAL_ENTRIES, STATE_DIR_ENV, Journal
from ..session.results import Change
from ..session.session import NotebookSession
from .options import command_parser

__all__ = ["history_cli", "undo_cli"]

#: Changes `nbmcp history` lists unless --limit says otherwise.
HISTORY_LIMIT = 20

JOURNAL_NOTE = f"""\
The journal of each notebook lives in nbmcp's state folder (${STATE_DIR_ENV}, default: the per-user
state folder, e.g. ~/.local/state/nbmcp on Linux), never beside the notebook. It keeps the last
{MAX_JOURNAL_ENTRIES} changes and at most {MAX_JOURNAL_BYTES // (1024 * 1024)} MiB per notebook. Outputs written by
running cells are not recorded, and undo keeps them.
"""


def _journal_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of `nbmcp history` or `nbmcp undo`, with its PATH argument."""
    p = command_parser(prog, description, JOURNAL_NOTE)
    p.add_argument("path", metavar="PATH", help="the notebook (.ipynb)")
    return p


def _open(parser: argparse.ArgumentParser, value: str, count: int, flag: str) -> NotebookSession:
    """The session on the notebook `value` names; a usage error if `count` (given by `flag`) is below 1."""
    if count < 1:
        parser.error(f"{flag} must be at least 1")
    path = Path(value)
    if path.suffix != ".ipynb":
        parser.error(f"{value} does not end in .ipynb; give the notebook's path")
    if not path.is_file():
        parser.error(f"{value}: no such notebook")
    return NotebookSession(path)


def _line(change: Change) -> str:
    return f"{change.step:>3}  {change.time.replace('T', ' ').rstrip('Z')} UTC  {change.summary}"


def history_cli(*args: str) -> int:
    """`nbmcp history PATH [--limit N] [--clear]`; returns the exit code."""
    p = _journal_parser(
        "nbmcp history",
        "List the changes nbmcp made to a notebook, newest first (step 1); "
        "`nbmcp undo PATH --steps N` takes back steps 1 to N.",
    )
    p.add_argument(
        "--limit", metavar="N", type=int, default=HISTORY_LIMIT, help="list at most N (default: %(default)s)"
    )
    p.add_argument("--clear", action="store_true", help="forget every recorded change (the notebook is not touched)")
    ns = p.parse_args(args)
    session = _open(p, ns.path, ns.limit, "--limit")
    try:
        if ns.clear:
            n = anyio.run(session.clear_history)
            print(f"Forgot {n} recorded change(s) to {session.path}.")
            return 0
        changes = anyio.run(session.history)
    except NbmcpError as exc:
        print(f"nbmcp history: error: {exc}", file=sys.stderr)
        return 1
    if not changes:
        print(f"No recorded change to {session.path}.")
        return 0
    print(f"{len(changes)} recorded change(s) to {session.path}, newest first:")
    for change in changes[: ns.limit]:
        print(_line(change))
    if len(changes) > ns.limit:
        print(f"... and {len(changes) - ns.limit} older (--limit {len(changes)} lists them all)")
    print(f"(journal: {Journal(session.path).path})")
    return 0


def undo_cli(*args: str) -> int:
    """`nbmcp undo PATH [--steps N]`; returns the exit code (1: refused, nothing written)."""
    p = _journal_parser(
        "nbmcp undo",
        "Take back the last N changes nbmcp made to a notebook (newest first, in one write). "
        "It refuses, writing nothing, if a cell it would restore was changed since by someone else.",
    )
    p.add_argument("--steps", metavar="N", type=int, default=1, help="how many changes (default: %(default)s)")
    ns = p.parse_args(args)
    session = _open(p, ns.path, ns.steps, "--steps")
    try:
        result = anyio.run(session.undo, ns.steps)
    except UndoConflictError as exc:
        print(f"nbmcp undo: {exc}", file=sys.stderr)
        print(f"(`nbmcp history {ns.path} --clear` forgets the recorded changes.)", file=sys.stderr)
        return 1
    except NbmcpError as exc:
        print(f"nbmcp undo: error: {exc}", file=sys.stderr)
        return 1
    print(f"Took back {len(result.undone)} change(s) to {session.path}:")
    for change in result.undone:
        print(_line(change))
    print(f"The notebook has {result.total_cells} cells; {result.remaining} older change(s) can still be undone.")
    return 0
