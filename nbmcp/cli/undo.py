"""`nbmcp history PATH` and `nbmcp undo PATH [--steps N | --change ID]`: the undo journal from a terminal.

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
    when = change.time.replace("T", " ").rstrip("Z")
    line = f"{change.step:>3}  {change.id}  {when} UTC  {change.summary}"
    return line + (f"\n       ^ no longer applies: {change.stale}" if change.stale else "")


def history_cli(*args: str) -> int:
    """`nbmcp history PATH [--limit N] [--clear | --drop ID ... | --drop-stale]`; returns the exit code."""
    p = _journal_parser(
        "nbmcp history",
        "List the changes nbmcp made to a notebook, newest first (step 1), each with its id; "
        "`nbmcp undo PATH --steps N` takes back steps 1 to N, `nbmcp undo PATH --change ID` one change.",
    )
    p.add_argument(
        "--limit", metavar="N", type=int, default=HISTORY_LIMIT, help="list at most N (default: %(default)s)"
    )
    forget = p.add_mutually_exclusive_group()
    forget.add_argument(
        "--clear", action="store_true", help="forget every recorded change (the notebook is not touched)"
    )
    forget.add_argument(
        "--drop",
        metavar="ID",
        action="append",
        help="forget the change with this id, keeping the others (repeatable; the notebook is not touched)",
    )
    forget.add_argument(
        "--drop-stale",
        action="store_true",
        help="forget every change marked 'no longer applies' (e.g. after git checkout)",
    )
    ns = p.parse_args(args)
    session = _open(p, ns.path, ns.limit, "--limit")
    try:
        if ns.clear:
            n = anyio.run(session.clear_history)
            print(f"Forgot {n} recorded change(s) to {session.path}.")
            return 0
        changes = anyio.run(session.history)
        if ns.drop or ns.drop_stale:
            ids = ns.drop or [c.id for c in changes if c.stale]
            if not ids:
                print(f"No recorded change to {session.path} is stale; nothing forgotten.")
                return 0
            dropped = anyio.run(session.forget_changes, ids)
            print(f"Forgot {len(dropped)} change(s) to {session.path} (the notebook was not touched):")
            for change in dropped:
                print(_line(change))
            return 0
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
    if any(c.stale for c in changes):
        print(f"(`nbmcp history {session.path} --drop-stale` forgets the changes that no longer apply)")
    print(f"(journal: {Journal(session.path).path})")
    return 0


def undo_cli(*args: str) -> int:
    """`nbmcp undo PATH [--steps N | --change ID]`; returns the exit code (1: refused, nothing written)."""
    p = _journal_parser(
        "nbmcp undo",
        "Take back the last N changes nbmcp made to a notebook (newest first, in one write), or the one "
        "change --change names (like git revert). It refuses, writing nothing, if a cell it would restore "
        "was changed since by someone else.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--steps", metavar="N", type=int, default=1, help="how many changes (default: %(default)s)")
    which.add_argument(
        "--change", metavar="ID", help="take back only the change with this id (`nbmcp history` lists them)"
    )
    ns = p.parse_args(args)
    session = _open(p, ns.path, ns.steps, "--steps")
    try:
        result = anyio.run(session.undo, ns.steps, ns.change)
    except UndoConflictError as exc:
        print(f"nbmcp undo: {exc}", file=sys.stderr)
        if exc.change_id:
            print(
                f"(`nbmcp history {ns.path} --drop {exc.change_id}` forgets this change; "
                f"`nbmcp undo {ns.path} --change ID` takes back an older one.)",
                file=sys.stderr,
            )
        return 1
    except NbmcpError as exc:
        print(f"nbmcp undo: error: {exc}", file=sys.stderr)
        return 1
    print(f"Took back {len(result.undone)} change(s) to {session.path}:")
    for change in result.undone:
        print(_line(change))
    which_left = "other" if ns.change else "older"
    print(
        f"The notebook has {result.total_cells} cells; {result.remaining} {which_left} change(s) can still be undone."
    )
    return 0
