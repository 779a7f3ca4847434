"""The `nbmcp` command. `cli(*args)` returns an exit code, so tests call it directly."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
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

from typing import TYPE_CHECKING

from .. import __version__
from ..errors import NbmcpError, UsageError
from ..server import collector

# The settings' defaults come from every layer (nbformat, the kernels, the session): they are imported
# in the functions that need them, so that they load after `main` held garbage collection off.
if TYPE_CHECKING:
    from ..config import Settings
    from ..notebook.store import LocalStore

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
  NBMCP_STRUCTURED_OUTPUT
                    default for --structured-output (true or false)
  NBMCP_TOKEN       default for --token (preferred: it stays out of the process list)
  NBMCP_LOCK_DIR    where lock files live (default: Jupyter's runtime folder)
  NBMCP_STATE_DIR   where the undo journal lives (default: the per-user state folder)
  DOCUMENT_URL, DOCUMENT_TOKEN, DOCUMENT_ID
                    a notebook on a Jupyter server (URL, token, path relative to the server's root)
  RUNTIME_URL, RUNTIME_TOKEN, RUNTIME_ID, START_NEW_RUNTIME
                    run code on a Jupyter server's kernel (that kernel id; or a new kernel of our own)
  DOCUMENT_PASSWORD, RUNTIME_PASSWORD
                    those servers' passwords, when they have no token (default for --server-password)
  JUPYTER_GATEWAY_AUTH_TOKEN
                    default for --gateway-token
  JUPYTERHUB_URL, JUPYTERHUB_USER, JUPYTERHUB_API_TOKEN
                    defaults for --jupyterhub, --user and (with the hub) --server-token

examples:
  nbmcp analysis.ipynb                     serve analysis.ipynb over stdio
  nbmcp exec analysis.ipynb                run all its cells headless, e.g. in CI (see nbmcp exec --help)
  nbmcp doctor analysis.ipynb              check the set-up (kernel, lock folder, port, server) without serving
  nbmcp view analysis.ipynb --open         watch it change live in the browser (see nbmcp view --help)
  nbmcp analysis.ipynb --view              serve it over stdio, and its live view (URL on stderr)
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
  nbmcp --jupyterhub https://hub.example.org --user ada work/analysis.ipynb
                                           the same on ada's server on a JupyterHub, started if stopped
                                           (the hub's API token in JUPYTERHUB_API_TOKEN)
  nbmcp analysis.ipynb --gateway http://gateway:8888 --kernel-env KERNEL_NAMESPACE=team
                                           the notebook here, its kernel on a Kernel/Enterprise Gateway
  nbmcp history analysis.ipynb             list the changes nbmcp made to it, newest first
  nbmcp undo analysis.ipynb --steps 2      take back the last two of them

Logs go to stderr; stdout carries only MCP messages. Docs: README.md in the nbmcp repository.
"""


def _parser() -> argparse.ArgumentParser:
    from .options import add_server_arguments, command_parser

    p = command_parser("nbmcp", DESCRIPTION, EPILOG)
    add_server_arguments(p)
    return p


def _check_servers(settings: Settings) -> str | None:
    """A message unless every Jupyter server configured answers ``GET /api`` as one (issue 25).

    A hub's root, a stopped user server, a JupyterLab page or a URL without the server's base path each
    get a one-line explanation here, before anything is served.
    """
    if not (settings.document_url or settings.runtime_url or settings.gateway_url):
        return None  # a local notebook and kernel: httpx and tornado are not even imported
    from ..jupyter.client import JupyterServer, probe
    from ..kernels.gateway import GATEWAY_TOKEN_OPTION

    servers = []
    if settings.document_url:
        servers.append(settings.document_server())
    if settings.runtime_url:
        servers.append(settings.runtime_server())
    if settings.gateway_url:
        gateway = settings.gateway_url, settings.gateway_token
        servers.append(JupyterServer(*gateway, url_option="--gateway", token_option=GATEWAY_TOKEN_OPTION))
    for server in servers:
        try:
            with server.client() as http:
                probe(server, http)
        except NbmcpError as exc:
            return str(exc)
    return None


def _hub_server(settings: Settings) -> tuple[Settings, str | None]:
    """--jupyterhub: the settings with the user's server, found (and started) through the hub's API; or a message."""
    if not settings.hub_url:
        return settings, None
    from ..jupyter.hub import user_server_url

    assert settings.hub_user
    try:
        url = user_server_url(settings.hub_url, settings.hub_user, settings.document_token).rstrip("/")
    except NbmcpError as exc:
        return settings, str(exc)
    runtime_url = url if settings.runtime_url else None  # None: kernels from --gateway
    return dataclasses.replace(settings, document_url=url, runtime_url=runtime_url), None


def _checked(settings: Settings) -> tuple[Settings, str | None]:
    """The settings (with the hub user's server, --jupyterhub) and the first problem found before serving."""
    settings, problem = _hub_server(settings)
    return settings, problem or _check_kernel(settings) or _check_view(settings) or _check_servers(settings)


def _check_remote(settings: Settings) -> str | None:
    """A message if the Jupyter server holding the notebook cannot be used, else None."""
    from ..notebook.contents import ContentsStore

    store = ContentsStore(settings.document_server(), settings.path.as_posix())
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
    from ..notebook.store import LocalStore

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
    if settings.runtime_url or settings.gateway_url:
        return None  # the kernel runs on a Jupyter server or gateway, which checks its own kernel names
    from ..kernels.choice import check_kernel_options

    try:
        # Under --read-only nothing runs, not even `--python` to see whether it has ipykernel.
        check_kernel_options(kernel_name=settings.kernel, python=settings.python, probe=not settings.read_only)
    except UsageError as exc:
        return str(exc)
    return None


def _check_view(settings: Settings) -> str | None:
    """--view: a local notebook, a valid port."""
    if settings.view and settings.document_url:
        return "--view shows a local notebook file; a notebook on a Jupyter server has JupyterLab's own view"
    if not 0 <= settings.view_port <= 65535:
        return f"--view-port {settings.view_port}: valid ports are 0 to 65535"
    return None


def _bind(settings: Settings) -> tuple[socket.socket | None, str | None]:
    """The listening socket, bound now so that a port in use stops us before a kernel starts.

    Over HTTP the MCP transport's (the live view shares it); over stdio with --view the view's own.
    """
    http = settings.transport == "streamable-http"
    port, flag = (settings.port, "--port") if http else (settings.view_port, "--view-port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(settings.host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        return None, f"cannot listen on {settings.host}:{port}: {exc}"
    try:
        # As uvicorn does: a port left in TIME_WAIT by a previous run is reusable, one in use is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        return None, f"cannot listen on {settings.host}:{port} ({reason}); choose another port with {flag} N"
    return sock, None


def _bare_name_in_root(given: str | None, settings: Settings) -> bool:
    """Whether `given` is a bare file name (no folder in it) that would create a notebook in the root folder."""
    if given is None or settings.document_url or os.sep in given or "/" in given or given.startswith("~"):
        return False
    return Path.cwd() == Path(Path.cwd().anchor) and not settings.path.exists()


def _fail(message: str) -> int:
    """Start-up failures: one line on stderr and exit code 2, before anything is served or started."""
    print(f"nbmcp: error: {message}", file=sys.stderr)
    return 2


#: The first arguments that name a subcommand rather than a notebook to serve.
SUBCOMMANDS = (("exec",), ("view",), ("doctor",), ("history",), ("undo",))


def cli(*args: str) -> int:
    """Run nbmcp with command-line `args`; returns the exit code."""
    if args[:1] in SUBCOMMANDS:
        collector.release()  # `main` held it off for a server's start; a subcommand runs as usual
    if args[:1] == ("exec",):
        # A subcommand, told apart before parsing so that `nbmcp PATH` works exactly as before
        # (a notebook path ends in .ipynb, so it is never "exec").
        from .exec import exec_cli

        return exec_cli(*args[1:])
    if args[:1] == ("view",):  # a live view of a notebook in a browser, without MCP (issue 22)
        from .view import view_cli

        return view_cli(*args[1:])
    if args[:1] == ("doctor",):
        # `nbmcp doctor [PATH] [the server's flags] [--json]`: checks a set-up without serving (issue 17).
        from .doctor import doctor_cli

        return doctor_cli(*args[1:])
    if args[:1] in (("history",), ("undo",)):
        # The undo journal (issue 15): sub-commands told apart like exec above.
        from .undo import history_cli, undo_cli

        return (history_cli if args[0] == "history" else undo_cli)(*args[1:])
    from ..config import default_max_wait
    from ..server.render import MIN_OUTPUT_CHARS
    from .options import configure_logging, settings_from_args, token_refusal

    parser = _parser()
    ns = parser.parse_args(args)
    if ns.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    if ns.max_wait is None:
        try:
            ns.max_wait = default_max_wait()
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
    # The MCP library (a second of imports) only when serving: `nbmcp exec`, `--help`, `--version` and
    # `doctor` never load it (issue 26).
    from ..server.tools import exposed_tools

    try:
        exposed_tools(ns.tools, read_only=ns.read_only)
    except UsageError as exc:
        parser.error(str(exc))
    try:
        settings = settings_from_args(ns)
    except NbmcpError as exc:
        parser.error(str(exc))
    configure_logging(settings.log_level)
    if ns.path is None and not settings.document_url and settings.path == Path(settings.path.anchor):
        # GUI clients often start servers in /; serving every notebook on the disk is never what was meant.
        return _fail(
            f"no PATH given and the current folder is {settings.path}; refusing to serve every notebook on the disk. "
            "Give a notebook or a folder, e.g. nbmcp ~/project/analysis.ipynb"
        )
    if _bare_name_in_root(ns.path, settings):
        # `nbmcp analysis.ipynb` started by a GUI client in / would create /analysis.ipynb (issue 24).
        return _fail(
            f"{ns.path} does not exist in {Path.cwd()} (the current folder, where GUI clients often start "
            "servers); refusing to create a notebook there. Give its full path, e.g. nbmcp ~/project/analysis.ipynb"
        )
    settings, problem = _checked(settings)
    if problem:
        return _fail(problem)
    listens = settings.transport == "streamable-http" or settings.view
    # Only a server that listens is asked (the web layer it loads, uvicorn's, costs a stdio start 7 ms).
    refusal = token_refusal(settings.host, settings.token) if listens else None
    if refusal:
        return _fail(refusal)
    problem, store = _check_path(settings)
    if problem:  # like every start-up error (bad flags too): exit code 2, one line, nothing served
        return _fail(problem)
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
    return _serve(settings, store)


def _serve(settings: Settings, store: LocalStore | None) -> int:
    """Bind the port (HTTP, --view), then serve until the client leaves or a signal arrives."""
    sock = None
    if settings.transport == "streamable-http" or settings.view:
        sock, problem = _bind(settings)
        if problem:
            return _fail(problem)
    from ..server.app import run

    global _served
    try:
        run(settings, store=store, sock=sock)
    except KeyboardInterrupt:
        return 130
    finally:
        if sock is not None:
            sock.close()
    _served = True
    return 0


#: Set once the server has shut down in order (its kernels stopped): `main` then ends the process at once.
_served = False


def _end_served_process(code: int) -> None:
    """End the process of a server that has shut down in order, without the interpreter's finalization.

    By then the kernels are stopped and their files removed; what is left is Python tearing down its
    modules, which took 0.3 to 0.8 s here, longer than some clients wait (Claude Code sends SIGTERM
    100 ms after SIGINT). Log records and stdout are flushed, and threads still finishing work (a
    replaced file being deleted) are waited for first.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    current = threading.current_thread()
    deadline = time.monotonic() + THREAD_JOIN_SECONDS
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    os._exit(code)


#: How long `_end_served_process` waits for the threads still at work.
THREAD_JOIN_SECONDS = 5.0


def main() -> None:
    """Console-script entry point."""
    # Garbage collection is held off until the client has the server's tools (nbmcp.server.collector).
    collector.hold()
    try:
        code = cli(*sys.argv[1:])
    except BrokenPipeError:
        # The reader left (`nbmcp doctor --json | head -1`): end quietly, as `cat` does. stdout points at
        # the null device, so the interpreter's own last flush finds no closed pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, what a shell reports for a command ended by a closed pipe
    if _served:
        _end_served_process(code)
    stopped = code in (128 + signal.SIGINT, 128 + signal.SIGTERM)
    if stopped and sys.argv[1:2] == ["exec"] and hasattr(signal, "SIGKILL"):
        # `nbmcp exec` stopped by a signal, kernels shut down and outputs saved: end by that signal, as
        # papermill (or any program that does not catch it) does, so a parent sees how the run ended
        # (a shell shows 130 or 143; Python's subprocess, -2 or -15).
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(code - 128, signal.SIG_DFL)
        os.kill(os.getpid(), code - 128)
    sys.exit(code)


if __name__ == "__main__":
    main()
