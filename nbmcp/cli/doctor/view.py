"""The live view's line of the checklist: where a person can watch the notebook (issue 22)."""

from __future__ import annotations

from ...config import Settings
from ...view.app import VIEW_PATH
from ...view.serve import DEFAULT_VIEW_PORT
from ...web import is_loopback
from .report import Check, Verdict

__all__ = ["check_view"]

_TOKEN_HINT = "<token>"


def check_view(settings: Settings) -> Check:
    """Where the live view would be served with these flags, or how to get one."""
    if settings.document_url:
        return Check("live view", Verdict.SKIP, "the notebook is on a Jupyter server: JupyterLab there shows it")
    token = "the --token" if settings.token else "a random token"
    if not settings.view:
        return Check(
            "live view",
            Verdict.SKIP,
            "not served with these flags; a person can watch the notebook change live in a browser with --view "
            f"(the URL is logged and given by get_notebook_info), or `nbmcp view PATH` "
            f"(http://127.0.0.1:{DEFAULT_VIEW_PORT}{VIEW_PATH}/?token={_TOKEN_HINT})",
        )
    if not is_loopback(settings.host) and not settings.token:
        return Check(
            "live view",
            Verdict.FAIL,
            f"--view on {settings.host} (reachable from other machines) needs a token: nbmcp refuses to start",
            "set --token TOKEN (or NBMCP_TOKEN), or use --host 127.0.0.1",
        )
    if settings.transport == "streamable-http":
        where = f"http://{settings.host}:{settings.port}{VIEW_PATH}/?token={_TOKEN_HINT}, on the MCP port"
    else:
        port = settings.view_port or "<a free port>"
        where = f"http://{settings.host}:{port}{VIEW_PATH}/?token={_TOKEN_HINT}, beside MCP over stdio"
    return Check(
        "live view",
        Verdict.PASS,
        f"served at {where} with {token}; the exact URL is logged on stderr at start and given by get_notebook_info",
    )
