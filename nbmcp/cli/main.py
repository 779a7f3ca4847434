"""The `nbmcp` command. `cli(*args)` returns an exit code, so tests call it directly."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

# jsonschema (imported by nbformat) imports rfc3987_syntax when it is installed, as it is beside
# jupyter_server or jupyterlab, only to check the "iri" string formats, which nbformat's schemas never
# use; that import builds a grammar and takes over a second, which a client waits for before
# `initialize` is answered (issue 14). The other optional format checkers it imports (installed with
# jsonschema[format-nongpl] by jupyter_events) cost another 0.15 s together (isoduration pulls in
# arrow) for formats nbformat never checks either. The command's own process does without them; a
# process that already imported jsonschema (a test, a script calling cli()) is left as it is.
if "jsonschema" not in sys.modules:
    for _unused in (
        "rfc3987_syntax",
        "isoduration",
        "webcolors",
        "uri_template",
        "fqdn",
        "rfc3339_validator",
        "rfc3986_validator",
        "jsonpointer",
    ):
        sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]

from .. import __version__
from ..config import (
    LOG_LEVELS,
    TRANSPORTS,
    Settings,
    _default_log_level,
    _default_max_wait,
    _default_timeout,
    _default_token,
    settings_from_env,
)
from ..errors import NbmcpError, UsageError
from ..kernels.choice import check_kernel_options
from ..notebook.store import LocalStore
from ..server.render import MAX_IMAGE_BYTES, MAX_OUTPUT_CHARS, MIN_OUTPUT_CHARS
from ..server.tools import ALL_TOOLS, exposed_tools
from ..session.session import DEFAULT_MAX_WAIT

__all__ = ["cli", "main"]

logger = logging.getLogger("nbmcp")

DESCRIPTION = """\
nbmcp lets an AI assistant (Claude Desktop, VS Code, Cursor or any MCP client) read, edit, document
and run a Jupyter notebook. It edits the .ipynb file on disk directly (no JupyterLab needed) and runs
code on a local Jupyter kernel that starts in the background.

You normally do not run nbmcp by hand: your MCP client starts it and talks to it over stdin/stdout.
Put the command in the client's configuration, e.g. for Claude Desktop:

  {"mcpServers": {"notebook": {"command": "nbmcp", "args": ["/path/to/analysis.ipynb"]}}}

The notebook is created (empty, nbformat 4.5) if it does not exist. Given a folder (or no path),
nbmcp serves every notebook under it and the assistant chooses with list_notebooks/use_notebook.
"""

EPILOG = """\
environment variables:
  NBMCP_LOG_LEVEL   default for --log-level
  NBMCP_TIMEOUT     default for --timeout
  NBMCP_MAX_WAIT    default for --max-wait
  NBMCP_TOKEN       default for --token (preferred: it stays out of the process list)
  NBMCP_LOCK_DIR    where lock files live (default: Jupyter's runtime folder)
  NBMCP_STATE_DIR   where the undo journal lives (default: the per-user state folder)
  DOCUMENT_URL, DOCUMENT_TOKEN, DOCUMENT_ID
                    a notebook on a Jupyter server (URL, token, path relative to the server's root)
  RUNTIME_URL, RUNTIME_TOKEN, RUNTIME_ID, START_NEW_RUNTIME
                    run code on a Jupyter server's kernel (that kernel id; or a new kernel of our own)

examples:
  nbmcp analysis.ipynb                     serve analysis.ipynb over stdio
  nbmcp exec analysis.ipynb                run all its cells headless, e.g. in CI (see nbmcp exec --help)
  nbmcp doctor analysis.ipynb              check the set-up (kernel, lock folder, port, server) without serving
  nbmcp analysis.ipynb --kernel ir         run code with the installed kernel named "ir"
  nbmcp analysis.ipynb --python .venv/bin/python
                                           run code with that interpreter (it needs ipykernel)
  nbmcp ~/projects                         serve every notebook under ~/projects
  nbmcp analysis.ipynb --transport streamable-http
                                           serve over HTTP at http://127.0.0.1:4040/mcp
  nbmcp analysis.ipynb --read-only         let the assistant read the notebook, not change or run it
  nbmcp analysis.ipynb --tools read_notebook,read_cell,edit_cell_source
                                           expose only these tools
  nbmcp --server-url http://127.0.0.1:8888 work/analysis.ipynb
                                           a notebook and kernel on a running Jupyter server
                                           (token in DOCUMENT_TOKEN, or --server-token)
  nbmcp history analysis.ipynb             list the changes nbmcp made to it, newest first
  nbmcp undo analysis.ipynb --steps 2      take back the last two of them

Logs go to stderr; stdout carries only MCP messages. Docs: README.md in the nbmcp repository.
"""


def add_kernel_options(p: argparse.ArgumentParser) -> None:
    """--kernel NAME | --python PATH, shared by `nbmcp` and `nbmcp exec`."""
    kernel = p.add_mutually_exclusive_group()
    kernel.add_argument(
        "--kernel",
        metavar="NAME",
        help="installed Jupyter kernel to run code with (see `jupyter kernelspec list`); default: a specific "
        "kernelspec named in the notebook if installed, else the project's .venv/venv (from the notebook's folder up "
        "to the project root), else an activated VIRTUAL_ENV/CONDA_PREFIX, else nbmcp's own Python",
    )
    kernel.add_argument("--python", metavar="PATH", help="Python interpreter (with ipykernel) to run code with")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nbmcp",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        help="the notebook (.ipynb) to serve, created if missing; or a folder: serve every notebook under it "
        "(default: the current folder). With --server-url or DOCUMENT_URL: the notebook's path relative to the "
        "Jupyter server's root (default: DOCUMENT_ID)",
    )
    remote = p.add_argument_group("a notebook on a Jupyter server (or DOCUMENT_URL and the other seed variables)")
    remote.add_argument(
        "--server-url",
        metavar="URL",
        help="a Jupyter server holding the notebook and running its kernel, e.g. http://127.0.0.1:8888",
    )
    remote.add_argument(
        "--server-token",
        metavar="TOKEN",
        help="that server's token (prefer DOCUMENT_TOKEN: flags show in `ps`)",
    )
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="stdio",
        help="how the MCP client talks to nbmcp (default: %(default)s)",
    )
    http = p.add_argument_group("streamable HTTP (--transport streamable-http)")
    http.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, loopback)")
    http.add_argument("--port", type=int, default=4040, help="port to listen on (default: %(default)s)")
    http.add_argument(
        "--token",
        default=_default_token(),
        help="bearer token every MCP request must carry (default: $NBMCP_TOKEN); required off loopback",
    )
    http.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="extra Host name clients may use to reach this server (repeatable); loopback names are always allowed",
    )
    add_kernel_options(p)
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=_default_timeout(),
        help="default time limit of an execution before the kernel is interrupted (default: %(default)g)",
    )
    p.add_argument(
        "--max-wait",
        metavar="SECONDS",
        type=float,
        default=None,
        help="seconds an execution tool waits before answering with the outputs so far while the cell runs on "
        f"(wait_for_execution picks it up; default: $NBMCP_MAX_WAIT or {DEFAULT_MAX_WAIT:g})",
    )
    p.add_argument(
        "--tools",
        metavar="A,B,C",
        type=_tool_list,
        help="expose only these tools (comma-separated names; see README.md for the list)",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="expose only tools that change nothing; no kernel starts and no program from the notebook's folder runs",
    )
    p.add_argument(
        "--max-output-chars",
        metavar="N",
        type=int,
        default=MAX_OUTPUT_CHARS,
        help="characters of output text the assistant gets per answer; longer output is cut in the middle "
        "and read_cell_output returns the rest (default: %(default)d)",
    )
    p.add_argument(
        "--max-image-bytes",
        metavar="N",
        type=int,
        default=MAX_IMAGE_BYTES,
        help="largest image (PNG/JPEG bytes) sent to the assistant; larger ones are replaced by a note "
        "(default: %(default)d)",
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


def _tool_list(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in ALL_TOOLS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown tool(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(ALL_TOOLS)}"
        )
    return names


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nbmcp %(levelname)s %(name)s: %(message)s"))
    # stderr shows --log-level and above; nbmcp's own records are all made, because MCP clients may
    # ask for more of them (logging/setLevel) than stderr shows.
    handler.setLevel(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("nbmcp").setLevel(logging.DEBUG)
    # Third-party chatter that says nothing to a user at INFO.
    for noisy in ("mcp", "traitlets", "httpx", "httpx2", "httpcore2", "tornado", "asyncio", "filelock", "watchfiles"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def settings_from_args(args: argparse.Namespace) -> Settings:
    return settings_from_env(
        path=args.path,
        server_url=args.server_url,
        server_token=args.server_token,
        transport=args.transport,
        kernel=args.kernel,
        python=args.python,
        timeout=args.timeout,
        max_wait=args.max_wait,
        log_level=args.log_level,
        watch=args.watch,
        host=args.host,
        port=args.port,
        token=args.token,
        allowed_hosts=tuple(args.allowed_host),
        max_output_chars=args.max_output_chars,
        max_image_bytes=args.max_image_bytes,
        tools=args.tools,
        read_only=args.read_only,
    )


def _check_remote(settings: Settings) -> str | None:
    """A message if the Jupyter server holding the notebook cannot be used, else None."""
    from ..jupyter.client import JupyterServer
    from ..notebook.contents import ContentsStore

    assert settings.document_url is not None
    store = ContentsStore(JupyterServer(settings.document_url, settings.document_token), settings.path.as_posix())
    try:
        store.changed_on_disk()  # one GET: reachable, token accepted, a notebook (or nothing) there
    except NbmcpError as exc:
        return str(exc)
    finally:
        store.close()
    return None


def _check_path(settings: Settings) -> tuple[str | None, LocalStore | None]:
    """A message if the notebook path cannot work (checked before serving), and the store it read.

    The store is handed on to the server, so a large notebook is parsed once at start-up, not twice.
    """
    if settings.document_url:
        return _check_remote(settings), None
    path = settings.path
    if path.is_dir():
        return None, None  # a folder: every notebook under it is served, each checked when it is used
    if path.suffix != ".ipynb":
        return f"{path} does not end in .ipynb; nbmcp serves Jupyter notebooks", None
    if not path.parent.is_dir():
        return f"cannot create {path}: folder {path.parent} does not exist", None
    if not path.exists():
        return None, None
    store = LocalStore(path)
    try:
        store.read()
    except NbmcpError as exc:
        return str(exc), None
    except OSError as exc:
        return f"cannot read {path}: {exc}", None
    return None, store


def _check_kernel(settings: Settings) -> str | None:
    """A message if --kernel or --python cannot work (checked before serving, before any kernel starts)."""
    if settings.runtime_url:
        return None  # the kernel runs on a Jupyter server, which checks its own kernel names
    try:
        # Under --read-only nothing runs, not even `--python` to see whether it has ipykernel.
        check_kernel_options(kernel_name=settings.kernel, python=settings.python, probe=not settings.read_only)
    except UsageError as exc:
        return str(exc)
    return None


def _bind(settings: Settings) -> tuple[socket.socket | None, str | None]:
    """The HTTP listening socket, bound now so that a port in use stops us before a kernel starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        return None, f"cannot listen on {settings.host}:{settings.port}: {exc}"
    try:
        # As uvicorn does: a port left in TIME_WAIT by a previous run is reusable, one in use is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        return None, f"cannot listen on {settings.host}:{settings.port} ({reason}); choose another port with --port N"
    return sock, None


def _fail(message: str) -> int:
    """Start-up failures: one line on stderr and exit code 2, before anything is served or started."""
    print(f"nbmcp: error: {message}", file=sys.stderr)
    return 2


def cli(*args: str) -> int:
    """Run nbmcp with command-line `args`; returns the exit code."""
    if args[:1] == ("exec",):
        # A subcommand, told apart before parsing so that `nbmcp PATH` works exactly as before
        # (a notebook path ends in .ipynb, so it is never "exec").
        from .exec import exec_cli

        return exec_cli(*args[1:])
    if args[:1] == ("doctor",):
        # `nbmcp doctor [PATH] [the server's flags] [--json]`: checks a set-up without serving (issue 17).
        from .doctor import doctor_cli

        return doctor_cli(*args[1:])
    if args[:1] in (("history",), ("undo",)):
        # The undo journal (issue 15): sub-commands told apart like exec above.
        from .undo import history_cli, undo_cli

        return (history_cli if args[0] == "history" else undo_cli)(*args[1:])
    parser = _parser()
    ns = parser.parse_args(args)
    if ns.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    if ns.max_wait is None:
        try:
            ns.max_wait = _default_max_wait()
        except UsageError as exc:
            parser.error(str(exc))
    if ns.max_wait <= 0:
        parser.error("--max-wait must be a positive number of seconds")
    if not 0 <= ns.port <= 65535:
        parser.error(f"--port {ns.port}: valid ports are 0 to 65535")
    if ns.max_output_chars < MIN_OUTPUT_CHARS:
        parser.error(f"--max-output-chars must be at least {MIN_OUTPUT_CHARS}")
    if ns.max_image_bytes < 0:
        parser.error("--max-image-bytes must be 0 (no images) or more")
    try:
        exposed_tools(ns.tools, read_only=ns.read_only)
    except UsageError as exc:
        parser.error(str(exc))
    try:
        settings = settings_from_args(ns)
    except NbmcpError as exc:
        parser.error(str(exc))
    _configure_logging(settings.log_level)
    if ns.path is None and not settings.document_url and settings.path == Path(settings.path.anchor):
        # GUI clients often start servers in /; serving every notebook on the disk is never what was meant.
        return _fail(
            f"no PATH given and the current folder is {settings.path}; refusing to serve every notebook on the disk. "
            "Give a notebook or a folder, e.g. nbmcp ~/project/analysis.ipynb"
        )
    problem = _check_kernel(settings)
    if problem:
        return _fail(problem)
    if settings.transport == "streamable-http":
        from ..server.http import is_loopback

        if not is_loopback(settings.host) and not settings.token:
            print(
                f"nbmcp: error: --host {settings.host} is reachable from other machines; refusing to start "
                "without a bearer token (--token TOKEN or NBMCP_TOKEN). Use --host 127.0.0.1 for this machine only.",
                file=sys.stderr,
            )
            return 2
    problem, store = _check_path(settings)
    if problem:
        # Like every start-up error (bad flags too): exit code 2, one line, nothing served.
        print(f"nbmcp: error: {problem}", file=sys.stderr)
        return 2
    if sys.stdin.isatty() and settings.transport == "stdio":
        what = " (every notebook under it)" if settings.path.is_dir() else ""
        print(
            f"nbmcp {__version__}: serving {settings.path}{what} over stdio.\n"
            "It is waiting for an MCP client on stdin; a person typing here will not get far.\n"
            "Configure your client (Claude Desktop, VS Code, Cursor) to start this command instead:\n"
            f'  {{"command": "nbmcp", "args": ["{settings.path}"]}}\n'
            "See README.md for ready-to-copy configurations. Press Ctrl+C to stop.",
            file=sys.stderr,
        )
    sock = None
    if settings.transport == "streamable-http":
        sock, problem = _bind(settings)
        if problem:
            return _fail(problem)
    from ..server.app import run

    try:
        run(settings, store=store, sock=sock)
    except KeyboardInterrupt:
        return 130
    finally:
        if sock is not None:
            sock.close()
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli(*sys.argv[1:]))


if __name__ == "__main__":
    main()
