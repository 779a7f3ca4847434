"""The command-line options `nbmcp`, `nbmcp exec` and `nbmcp doctor` share, and the logging they set up.

`nbmcp` and `nbmcp doctor` take the same flags (doctor checks the set-up those flags describe), so both
build them with `add_server_arguments`; `nbmcp exec` shares the kernel, timeout and log-level options.
Defaults that come from environment variables are read when a parser is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import NoReturn

from .. import __version__
from ..config import (
    LOG_LEVELS,
    TRANSPORTS,
    Settings,
    default_log_level,
    default_structured_output,
    default_timeout,
    default_token,
    settings_from_env,
)
from ..server.render import MAX_IMAGE_BYTES, MAX_OUTPUT_CHARS
from ..session.executions import DEFAULT_MAX_WAIT

__all__ = [
    "CommandParser",
    "add_kernel_options",
    "add_log_level_option",
    "add_server_arguments",
    "add_timeout_option",
    "command_parser",
    "configure_logging",
    "settings_from_args",
    "token_refusal",
]


class CommandParser(argparse.ArgumentParser):
    """argparse, but an error is the one useful line and where help is, not the usage block before it.

    A mistyped flag printed nine lines of usage above the line that says what was wrong (issue 24).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nsee {self.prog} --help\n")


def command_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A parser for one of nbmcp's commands; `description` and `epilog` are printed as written."""
    return CommandParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_kernel_options(p: argparse.ArgumentParser, *aliases: str) -> None:
    """--kernel NAME | --python PATH, shared by `nbmcp`, `nbmcp exec` and `nbmcp doctor`; `aliases` of --kernel."""
    kernel = p.add_mutually_exclusive_group()
    kernel.add_argument(
        "--kernel",
        *aliases,
        metavar="NAME",
        help="installed Jupyter kernel to run code with (see `jupyter kernelspec list`); default: a specific "
        "kernelspec named in the notebook if installed, else the project's .venv/venv (from the notebook's folder up "
        "to the project root), else an activated VIRTUAL_ENV/CONDA_PREFIX, else nbmcp's own Python",
    )
    kernel.add_argument("--python", metavar="PATH", help="Python interpreter (with ipykernel) to run code with")


def add_timeout_option(p: argparse.ArgumentParser, help_text: str) -> None:
    """--timeout SECONDS, defaulting to $NBMCP_TIMEOUT or DEFAULT_TIMEOUT; `help_text` may name %(default)g."""
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=default_timeout(), help=help_text)


def add_log_level_option(p: argparse.ArgumentParser, default: str, what: str) -> None:
    """--log-level LEVEL (any case); its help is `what`, the valid levels and the default."""
    p.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        help=f"{what}: {', '.join(LOG_LEVELS)} (default: %(default)s)",
    )


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """PATH and every flag of `nbmcp`, in the order its --help lists them (`nbmcp doctor` takes them too)."""
    p.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        help="the notebook (.ipynb) to serve, created if missing; or a folder: serve every notebook under it "
        "(default: the current folder). With --server-url or DOCUMENT_URL: the notebook's path relative to the "
        "Jupyter server's root (default: DOCUMENT_ID)",
    )
    _add_remote_options(p)
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="stdio",
        help="how the MCP client talks to nbmcp (default: %(default)s)",
    )
    _add_http_options(p)
    add_kernel_options(p)
    add_timeout_option(p, "default time limit of an execution before the kernel is interrupted (default: %(default)g)")
    p.add_argument(
        "--max-wait",
        metavar="SECONDS",
        type=float,
        default=None,
        help="seconds an execution tool waits before answering with the outputs so far while the cell runs on "
        f"(wait_for_execution picks it up; default: $NBMCP_MAX_WAIT or {DEFAULT_MAX_WAIT:g})",
    )
    _add_assistant_options(p)
    add_log_level_option(p, default_log_level(), "stderr logging")
    p.add_argument(
        "--view",
        action="store_true",
        help="also serve a live, read-only view of the notebook for a person's browser (URL with its token on "
        "stderr and in get_notebook_info): on --view-port over stdio, at /view/ over streamable-http",
    )
    p.add_argument(
        "--view-port", type=int, default=0, metavar="N", help="the live view's port over stdio (default: a free one)"
    )
    p.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="do not watch the file for changes by others (each tool call still checks it before use)",
    )
    p.add_argument("--version", action="version", version=f"nbmcp {__version__}")


def _add_remote_options(p: argparse.ArgumentParser) -> None:
    remote = p.add_argument_group("a notebook on a Jupyter server (or DOCUMENT_URL and the other seed variables)")
    remote.add_argument(
        "--server-url",
        metavar="URL",
        help="a Jupyter server holding the notebook and running its kernel, e.g. http://127.0.0.1:8888",
    )
    remote.add_argument(
        "--server-token",
        metavar="TOKEN",
        help="that server's token (prefer DOCUMENT_TOKEN: flags show in `ps`); with --jupyterhub the hub's API token "
        "(default: $JUPYTERHUB_API_TOKEN)",
    )
    remote.add_argument(
        "--server-password",
        metavar="PASSWORD",
        help="that server's password, when it has no token: nbmcp logs in with its login form (prefer "
        "DOCUMENT_PASSWORD: flags show in `ps`)",
    )
    remote.add_argument(
        "--jupyterhub",
        metavar="URL",
        help="a JupyterHub (default: $JUPYTERHUB_URL): use --user's server there, started if it is stopped",
    )
    remote.add_argument("--user", metavar="NAME", help="the hub user whose server to use (default: $JUPYTERHUB_USER)")
    gateway = p.add_argument_group("kernels from a Kernel or Enterprise Gateway (the notebook stays where it is)")
    gateway.add_argument(
        "--gateway",
        metavar="URL",
        help="run code on kernels of this gateway (its /api/kernels only); each kernel nbmcp starts there is "
        "deleted when nbmcp stops",
    )
    gateway.add_argument(
        "--gateway-token",
        metavar="TOKEN",
        help="the gateway's token (default: $JUPYTER_GATEWAY_AUTH_TOKEN, as jupyter_server's gateway client reads it)",
    )
    gateway.add_argument(
        "--kernel-env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a variable for the gateway's kernel, in its start request's env (repeatable; gateways pass on "
        "KERNEL_* names; KERNEL_USERNAME and KERNEL_WORKING_DIR default to you and the notebook's folder)",
    )


def _add_http_options(p: argparse.ArgumentParser) -> None:
    http = p.add_argument_group("streamable HTTP (--transport streamable-http)")
    http.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, loopback)")
    http.add_argument("--port", type=int, default=4040, help="port to listen on (default: %(default)s)")
    http.add_argument(
        "--token",
        default=default_token(),
        help="bearer token every MCP request must carry (default: $NBMCP_TOKEN); required off loopback",
    )
    http.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="extra Host name clients may use to reach this server (repeatable); loopback names are always allowed",
    )


def _add_assistant_options(p: argparse.ArgumentParser) -> None:
    """What the assistant may call (--tools, --read-only) and how much of an output it gets."""
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
        "--structured-output",
        action="store_true",
        default=None,
        help="tools also list an outputSchema and answer with structuredContent (the same text plus fields such as "
        "cell_id and status), for programs; off by default because clients show the model plain content best "
        "(default: $NBMCP_STRUCTURED_OUTPUT or off)",
    )


def _tool_list(value: str) -> tuple[str, ...]:
    from ..server.tools import ALL_TOOLS  # the MCP library: only once --tools is given (issue 26)

    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in ALL_TOOLS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown tool(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(ALL_TOOLS)}"
        )
    return names


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings the arguments of `add_server_arguments` (and the environment) describe."""
    settings = settings_from_env(
        path=args.path,
        server_url=args.server_url,
        server_token=args.server_token,
        gateway_url=args.gateway,
        gateway_token=args.gateway_token,
        kernel_env=args.kernel_env,
        server_password=args.server_password,
        jupyterhub=args.jupyterhub,
        hub_user=args.user,
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
        structured_output=args.structured_output or default_structured_output(),
    )
    return dataclasses.replace(settings, view=args.view, view_port=args.view_port)


def configure_logging(level: str) -> None:
    """Log to stderr at `level` and above (stdout belongs to MCP); nbmcp's own records are all made."""
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


def token_refusal(host: str, token: str | None) -> str | None:
    """Why nbmcp will not listen on `host` (reachable from other machines) without a token, or None."""
    from ..web import is_loopback

    if is_loopback(host) or token:
        return None
    return (
        f"--host {host} is reachable from other machines; refusing to start without a bearer token "
        "(--token TOKEN or NBMCP_TOKEN). Use --host 127.0.0.1 for this machine only."
    )
