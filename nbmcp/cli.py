"""The `nbmcp` command. `cli(*args)` returns an exit code, so tests call it directly."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .config import (
    LOG_LEVELS,
    TRANSPORTS,
    Settings,
    _default_log_level,
    _default_timeout,
)
from .errors import NbmcpError
from .store import LocalStore

__all__ = ["cli", "main"]

logger = logging.getLogger("nbmcp")

DESCRIPTION = """\
nbmcp lets an AI assistant (Claude Desktop, VS Code, Cursor or any MCP client) read, edit, document
and run a Jupyter notebook. It edits the .ipynb file on disk directly (no JupyterLab needed) and runs
code on a local Jupyter kernel that starts in the background.

You normally do not run nbmcp by hand: your MCP client starts it and talks to it over stdin/stdout.
Put the command in the client's configuration, e.g. for Claude Desktop:

  {"mcpServers": {"notebook": {"command": "nbmcp", "args": ["/path/to/analysis.ipynb"]}}}

The notebook is created (empty, nbformat 4.5) if it does not exist.
"""

EPILOG = """\
environment variables:
  NBMCP_LOG_LEVEL   default for --log-level
  NBMCP_TIMEOUT     default for --timeout
  NBMCP_LOCK_DIR    where lock files live (default: Jupyter's runtime folder)

examples:
  nbmcp analysis.ipynb                     serve analysis.ipynb over stdio
  nbmcp exec analysis.ipynb                run all its cells headless, e.g. in CI (see nbmcp exec --help)
  nbmcp analysis.ipynb --kernel ir         run code with the installed kernel named "ir"
  nbmcp analysis.ipynb --python .venv/bin/python
                                           run code with that interpreter (it needs ipykernel)

Logs go to stderr; stdout carries only MCP messages. Docs: README.md in the nbmcp repository.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nbmcp",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", metavar="PATH", help="the notebook (.ipynb) to serve; created if missing")
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="stdio",
        help="how the MCP client talks to nbmcp (default: %(default)s)",
    )
    kernel = p.add_mutually_exclusive_group()
    kernel.add_argument(
        "--kernel",
        metavar="NAME",
        help="installed Jupyter kernel to run code with (see `jupyter kernelspec list`); default: the "
        "notebook's own kernelspec if installed, else a .venv beside the notebook, else this Python",
    )
    kernel.add_argument("--python", metavar="PATH", help="Python interpreter (with ipykernel) to run code with")
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=_default_timeout(),
        help="default time limit of an execution before the kernel is interrupted (default: %(default)g)",
    )
    p.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=str.upper,
        choices=LOG_LEVELS,
        default=_default_log_level(),
        help=f"stderr logging: {', '.join(LOG_LEVELS)} (default: %(default)s)",
    )
    p.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="do not watch the file for changes by others (each tool call still checks it before use)",
    )
    p.add_argument("--version", action="version", version=f"nbmcp {__version__}")
    return p


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nbmcp %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter that says nothing to a user at INFO.
    for noisy in ("mcp", "traitlets", "httpx", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        path=Path(args.path).expanduser().absolute(),
        transport=args.transport,
        kernel=args.kernel,
        python=args.python,
        timeout=args.timeout,
        log_level=args.log_level,
        watch=args.watch,
    )


def _check_path(settings: Settings) -> str | None:
    """A message if the notebook path cannot work, else None (checked before serving)."""
    path = settings.path
    if path.is_dir():
        return f"{path} is a folder; give the path of a notebook file (.ipynb)"
    if path.suffix != ".ipynb":
        return f"{path} does not end in .ipynb; nbmcp serves Jupyter notebooks"
    if not path.parent.is_dir():
        return f"cannot create {path}: folder {path.parent} does not exist"
    if path.exists():
        try:
            LocalStore(path).read()
        except NbmcpError as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot read {path}: {exc}"
    return None


def cli(*args: str) -> int:
    """Run nbmcp with command-line `args`; returns the exit code."""
    if args[:1] == ("exec",):
        # A subcommand, told apart before parsing so that `nbmcp PATH` works exactly as before
        # (a notebook path ends in .ipynb, so it is never "exec").
        from .exec_command import exec_cli

        return exec_cli(*args[1:])
    parser = _parser()
    ns = parser.parse_args(args)
    if ns.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    settings = settings_from_args(ns)
    _configure_logging(settings.log_level)
    problem = _check_path(settings)
    if problem:
        print(f"nbmcp: error: {problem}", file=sys.stderr)
        return 1
    if sys.stdin.isatty():
        print(
            f"nbmcp {__version__}: serving {settings.path} over stdio.\n"
            "It is waiting for an MCP client on stdin; a person typing here will not get far.\n"
            "Configure your client (Claude Desktop, VS Code, Cursor) to start this command instead:\n"
            f'  {{"command": "nbmcp", "args": ["{settings.path}"]}}\n'
            "See README.md for ready-to-copy configurations. Press Ctrl+C to stop.",
            file=sys.stderr,
        )
    from .server import run

    try:
        run(settings)
    except KeyboardInterrupt:
        return 130
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli(*sys.argv[1:]))


if __name__ == "__main__":
    main()
