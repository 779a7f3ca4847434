"""Settings: one object built from CLI flags and environment variables, in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .kernels.base import DEFAULT_TIMEOUT
from .server.render import MAX_IMAGE_BYTES, MAX_OUTPUT_CHARS
from .session.executions import DEFAULT_MAX_WAIT

if TYPE_CHECKING:
    from .jupyter.client import JupyterServer

__all__ = [
    "DEFAULT_DOCUMENT_ID",
    "LOG_LEVELS",
    "SECRET_VARS",
    "SEED_ENV_VARS",
    "TRANSPORTS",
    "Settings",
    "default_log_level",
    "default_max_wait",
    "default_structured_output",
    "default_timeout",
    "default_token",
    "settings_from_env",
]

TRANSPORTS = ("stdio", "streamable-http")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def default_log_level() -> str:
    """--log-level's default: $NBMCP_LOG_LEVEL, else INFO."""
    return os.environ.get("NBMCP_LOG_LEVEL", "INFO").upper()


def default_token() -> str | None:
    """--token's default: $NBMCP_TOKEN (an empty one counts as unset)."""
    return os.environ.get("NBMCP_TOKEN") or None


def default_timeout() -> float:
    """--timeout's default: $NBMCP_TIMEOUT, else DEFAULT_TIMEOUT."""
    return float(os.environ.get("NBMCP_TIMEOUT", DEFAULT_TIMEOUT))


def default_max_wait() -> float:
    """--max-wait's default: $NBMCP_MAX_WAIT, else DEFAULT_MAX_WAIT; UsageError if it is not a number."""
    value = os.environ.get("NBMCP_MAX_WAIT") or str(DEFAULT_MAX_WAIT)
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"NBMCP_MAX_WAIT={value!r} is not a number of seconds") from None


def default_structured_output() -> bool:
    """--structured-output's default: $NBMCP_STRUCTURED_OUTPUT (true/false), else off; UsageError if not a boolean."""
    return _flag("NBMCP_STRUCTURED_OUTPUT", os.environ.get("NBMCP_STRUCTURED_OUTPUT", ""))


@dataclass(frozen=True)
class Settings:
    """Everything a run of nbmcp is configured with."""

    path: Path
    transport: str = "stdio"
    kernel: str | None = None
    python: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_wait: float = DEFAULT_MAX_WAIT
    """Seconds an execution tool waits before answering with the outputs so far while the code runs
    on (--max-wait); wait_for_execution picks it up."""
    log_level: str = "INFO"
    max_output_chars: int = MAX_OUTPUT_CHARS
    """Characters of output text the model gets per answer (--max-output-chars)."""
    max_image_bytes: int = MAX_IMAGE_BYTES
    """Largest image returned as image content (--max-image-bytes); larger ones become a note."""
    structured_output: bool = False
    """Tools list an outputSchema and answer with structuredContent beside the same text (--structured-output).
    Off by default: measured clients show the model either escaped JSON or only the structured view, without
    its images (issue 23), so plain content serves every model best."""
    host: str = "127.0.0.1"
    port: int = 4040
    token: str | None = field(default=None, repr=False)
    """Bearer token required on every MCP request over HTTP (never logged: repr=False)."""
    allowed_hosts: tuple[str, ...] = ()
    view: bool = False
    """Serve the live view beside MCP (--view): on its own port over stdio, at /view/ over HTTP (issue 22)."""
    view_port: int = 0
    """The live view's port over stdio (--view-port; 0: a free port, logged with the URL)."""
    view_url: str | None = field(default=None, repr=False)
    """The live view's address with its token, once it is served (get_notebook_info tells it)."""
    watch: bool = True
    """Watch the file for changes made by others and tell clients (off: changes are still seen at
    the next tool call, because every call checks the file)."""
    tools: tuple[str, ...] | None = None
    """Only these tools are listed (--tools); None lists all."""
    read_only: bool = False
    """List only tools that change nothing (--read-only); the others refuse when called. No kernel starts."""
    kernel_at_open: bool = True
    """Start the kernel in the background as soon as a notebook is opened, so that the first execution
    does not wait for it. Off (no flag; for programs that embed the server and mostly edit), the kernel
    starts at the first call that needs it."""
    #: A Jupyter server holding the notebook (then `path` is relative to its root), else a local file.
    document_url: str | None = None
    document_token: str | None = field(default=None, repr=False)
    #: A Jupyter server running the code, else a local kernel.
    runtime_url: str | None = None
    runtime_token: str | None = field(default=None, repr=False)
    #: Passwords for servers without a token (--server-password): nbmcp logs in through the login form.
    document_password: str | None = field(default=None, repr=False)
    runtime_password: str | None = field(default=None, repr=False)
    #: Use this running kernel on the runtime server.
    runtime_id: str | None = None
    #: Start a kernel of our own on the runtime server instead of the notebook's session kernel.
    start_new_runtime: bool = False
    #: A Kernel or Enterprise Gateway running the code (its kernels API only), else per runtime_url.
    gateway_url: str | None = None
    gateway_token: str | None = field(default=None, repr=False)
    #: Variables for the gateway's kernel (--kernel-env), sent in its start request's ``env``.
    kernel_env: tuple[tuple[str, str], ...] = ()
    #: A JupyterHub whose user `hub_user`'s server holds the notebook and runs its kernel (--jupyterhub):
    #: document_url and runtime_url are that server's, once the hub has told (and started) it.
    hub_url: str | None = None
    hub_user: str | None = None

    def document_server(self) -> JupyterServer:
        """The Jupyter server holding the notebook (document_url must be set), with its token or password."""
        return self._server(self.document_url, self.document_token, self.document_password)

    def runtime_server(self) -> JupyterServer:
        """The Jupyter server running the code (runtime_url must be set), with its token or password."""
        return self._server(self.runtime_url, self.runtime_token, self.runtime_password)

    def _server(self, url: str | None, token: str | None, password: str | None) -> JupyterServer:
        from .jupyter.client import JupyterServer  # httpx only for a remote notebook or kernel

        assert url is not None
        if self.hub_url and self.hub_user:
            from .jupyter.hub import HUB_TOKEN_OPTION, restarter

            restart = restarter(self.hub_url, self.hub_user, token)
            return JupyterServer(url, token, password, token_option=HUB_TOKEN_OPTION, restart=restart)
        return JupyterServer(url, token, password)


#: The seed deployment's environment variables, read by `settings_from_env`.
SEED_ENV_VARS = (
    "DOCUMENT_URL",
    "DOCUMENT_TOKEN",
    "DOCUMENT_ID",
    "RUNTIME_URL",
    "RUNTIME_TOKEN",
    "RUNTIME_ID",
    "START_NEW_RUNTIME",
)
#: Environment variables holding a Jupyter server's or hub's secret: never printed (doctor scrubs them).
SECRET_VARS = ("DOCUMENT_TOKEN", "RUNTIME_TOKEN", "DOCUMENT_PASSWORD", "RUNTIME_PASSWORD", "JUPYTERHUB_API_TOKEN")
#: The notebook used when DOCUMENT_URL is set without DOCUMENT_ID or PATH (the seed's default).
DEFAULT_DOCUMENT_ID = "notebook.ipynb"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _flag(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UsageError(f"{name}={value!r} is not a boolean; use true or false")


def settings_from_env(
    env: Mapping[str, str] | None = None,
    *,
    path: str | None = None,
    server_url: str | None = None,
    server_token: str | None = None,
    gateway_url: str | None = None,
    gateway_token: str | None = None,
    kernel_env: Sequence[str] = (),
    jupyterhub: str | None = None,
    hub_user: str | None = None,
    server_password: str | None = None,
    **options: Any,
) -> Settings:
    """Settings from the seed's environment variables, with command-line values taking precedence.

    `server_url`/`server_token` (``--server-url``/``--server-token``) put both the notebook and the kernel on that
    server; DOCUMENT_URL/DOCUMENT_TOKEN/DOCUMENT_ID and RUNTIME_URL/RUNTIME_TOKEN/RUNTIME_ID/
    START_NEW_RUNTIME set them separately (a remote notebook with a local kernel is fine). `gateway_url`
    (``--gateway``) runs code on a gateway's kernels instead, with `kernel_env` (``NAME=VALUE`` strings) in
    their environment. `server_password` (``--server-password``; DOCUMENT_PASSWORD/RUNTIME_PASSWORD) logs into
    a server without a token. `jupyterhub`/`hub_user` (``--jupyterhub``/``--user``, or JUPYTERHUB_URL/
    JUPYTERHUB_USER, with the token from JUPYTERHUB_API_TOKEN) put both on that hub user's server. Empty
    variables count as unset. `options` are the other `Settings` fields.
    """
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        return env.get(name) or None

    hub_url, hub_user = _hub_target(
        jupyterhub or get("JUPYTERHUB_URL"), hub_user or get("JUPYTERHUB_USER"), bool(hub_user)
    )
    if hub_url:
        if server_url or get("DOCUMENT_URL") or get("RUNTIME_URL"):
            raise UsageError(
                "--jupyterhub (or JUPYTERHUB_URL) and --server-url, DOCUMENT_URL or RUNTIME_URL all say where the "
                "notebook is; give only one"
            )
        # Where the hub puts a user's server unless told otherwise; the hub's own answer replaces it at start-up.
        server_url = f"{hub_url}/user/{hub_user}"
        server_token = server_token or get("JUPYTERHUB_API_TOKEN")

    document_url = server_url or get("DOCUMENT_URL")
    document_token = server_token or get("DOCUMENT_TOKEN")
    runtime_url = server_url or get("RUNTIME_URL")
    runtime_token = server_token or get("RUNTIME_TOKEN")
    if runtime_url and not runtime_token and document_url and runtime_url.rstrip("/") == document_url.rstrip("/"):
        runtime_token = document_token  # one server, one token
    if gateway_url and get("RUNTIME_URL"):
        raise UsageError("--gateway and RUNTIME_URL both say where code runs; unset RUNTIME_URL to use the gateway")
    if gateway_url:  # --server-url then holds the notebook only
        runtime_url = runtime_token = None
    document_password = server_password or get("DOCUMENT_PASSWORD")
    runtime_password = server_password or get("RUNTIME_PASSWORD")
    if runtime_url and not runtime_password and document_url and runtime_url.rstrip("/") == document_url.rstrip("/"):
        runtime_password = document_password
    if (document_password or runtime_password) and not (document_url or runtime_url):
        raise UsageError(
            "--server-password (DOCUMENT_PASSWORD, RUNTIME_PASSWORD) is for a Jupyter server: give its URL too "
            "(--server-url, DOCUMENT_URL or RUNTIME_URL)"
        )
    if not document_url and document_token:
        raise UsageError("DOCUMENT_TOKEN (or --server-token) is set but DOCUMENT_URL (or --server-url) is not")
    if not runtime_url and (get("RUNTIME_ID") or get("RUNTIME_TOKEN")):
        raise UsageError("RUNTIME_ID or RUNTIME_TOKEN is set but RUNTIME_URL is not; set RUNTIME_URL to the server")
    if runtime_url and options.get("python"):
        raise UsageError("--python chooses a local interpreter; with a remote kernel use --kernel NAME instead")
    if gateway_url and options.get("python"):
        raise UsageError("--python chooses a local interpreter; with --gateway use --kernel NAME instead")
    if kernel_env and not gateway_url:
        raise UsageError("--kernel-env sets variables for a gateway's kernel; it needs --gateway URL")
    notebook = path or (get("DOCUMENT_ID") if document_url else None)
    if document_url:
        notebook_path = Path((notebook or DEFAULT_DOCUMENT_ID).lstrip("/"))
        if notebook_path.suffix != ".ipynb":
            raise UsageError(f"{notebook_path} does not end in .ipynb; on a Jupyter server nbmcp serves one notebook")
    else:
        # A notebook, or a folder of notebooks (the current one by default).
        notebook_path = Path(notebook or ".").expanduser().absolute()
    return Settings(
        path=notebook_path,
        document_url=document_url,
        document_token=document_token,
        runtime_url=runtime_url,
        runtime_token=runtime_token,
        document_password=document_password if document_url else None,
        runtime_password=runtime_password if runtime_url else None,
        runtime_id=get("RUNTIME_ID") if runtime_url else None,
        start_new_runtime=_flag("START_NEW_RUNTIME", env.get("START_NEW_RUNTIME", "")),
        gateway_url=gateway_url,
        gateway_token=(gateway_token or get("JUPYTER_GATEWAY_AUTH_TOKEN")) if gateway_url else None,
        kernel_env=tuple(_name_value(item) for item in kernel_env),
        hub_url=hub_url,
        hub_user=hub_user,
        **options,
    )


def _hub_target(url: str | None, user: str | None, user_given: bool) -> tuple[str | None, str | None]:
    """(the hub's base URL, the user) from --jupyterhub and --user (or their variables); (None, None) without a hub."""
    if not url:
        if user_given:
            raise UsageError("--user NAME names a JupyterHub user; give the hub too: --jupyterhub URL")
        return None, None
    from .jupyter.hub import hub_base

    if not user:
        raise UsageError("--jupyterhub needs the hub user whose server to use: --user NAME (or JUPYTERHUB_USER)")
    return hub_base(url), user


def _name_value(item: str) -> tuple[str, str]:
    """``NAME=VALUE`` (a --kernel-env) as a pair; UsageError for anything else."""
    name, sep, value = item.partition("=")
    if not sep or not name.isidentifier():
        raise UsageError(f"--kernel-env {item!r}: expected NAME=VALUE with a variable name, e.g. KERNEL_NAMESPACE=team")
    return name, value
