"""`nbmcp view PATH`: serve a live, read-only view of a notebook (or a folder's notebooks) in the browser."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import webbrowser
from pathlib import Path

from .options import token_refusal

__all__ = ["view_cli"]

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    from ..view.serve import DEFAULT_VIEW_PORT

    p = argparse.ArgumentParser(
        prog="nbmcp view",
        description="Serve a live, read-only view of a notebook in the browser: it follows every change to "
        "the file, whoever makes it. Prints the URL (with its token) on stderr; Ctrl+C stops it.",
    )
    p.add_argument("path", metavar="PATH", nargs="?", default=".", help="a notebook, or a folder of notebooks")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_VIEW_PORT, help=f"port (default {DEFAULT_VIEW_PORT}; 0: any)")
    p.add_argument(
        "--token",
        default=os.environ.get("NBMCP_TOKEN"),
        help="the token the URL carries (default $NBMCP_TOKEN, else a random one); required off loopback",
    )
    p.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME", help="an extra Host name (repeatable)"
    )
    p.add_argument("--open", action="store_true", help="open the view in the default browser")
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default), ERROR")
    return p


def view_cli(*args: str) -> int:
    """Run `nbmcp view` with `args`; returns the exit code (0 after Ctrl+C)."""
    from ..view.app import ViewServer, new_token
    from ..view.serve import bind, serve_view, url_host

    parser = _parser()
    ns = parser.parse_args(args)
    logging.basicConfig(level=ns.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    path = Path(ns.path).expanduser().absolute()
    if not path.exists():
        print(f"nbmcp view: error: {path} does not exist", file=sys.stderr)
        return 2
    refusal = token_refusal(ns.host, ns.token)
    if refusal:
        print(f"nbmcp view: error: {refusal}", file=sys.stderr)
        return 2
    if not 0 <= ns.port <= 65535:
        parser.error(f"--port {ns.port}: valid ports are 0 to 65535")
    try:
        sock = bind(ns.host, ns.port)
    except OSError as exc:
        print(
            f"nbmcp view: error: cannot listen on {ns.host}:{ns.port} ({exc.strerror or exc}); choose --port N",
            file=sys.stderr,
        )
        return 2
    view = ViewServer(path, token=ns.token or new_token(), host=ns.host, extra_hosts=tuple(ns.allowed_host))
    url = view.url(url_host(ns.host, sock))
    print(f"nbmcp view: {path} at {url}\nPress Ctrl+C to stop.", file=sys.stderr, flush=True)
    if ns.open:
        webbrowser.open(url)
    try:
        asyncio.run(serve_view(view, sock))
    except KeyboardInterrupt:
        pass  # Ctrl+C is how it stops
    finally:
        sock.close()
    return 0
