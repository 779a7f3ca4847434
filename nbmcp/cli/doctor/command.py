"""`nbmcp doctor`: the command, and the checks that apply to a set of settings, in order."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nbformat import NotebookNode

from ...config import SECRET_VARS, Settings
from ...errors import NbmcpError
from ..options import add_server_arguments, command_parser, configure_logging, settings_from_args
from .gateway import check_gateway
from .kernel import check_local_kernel
from .local import check_http, check_lock_dir, check_notebook
from .remote import check_hub, check_remote
from .report import Check, Verdict, render_json, render_text, scrub
from .view import check_view

__all__ = ["doctor_cli", "run_checks"]

DESCRIPTION = (
    "Check, without serving, what `nbmcp` with the same PATH and flags depends on: the notebook, the kernel "
    "(started once to run 1+1, timed), the lock folder, for HTTP the port and the host/token rule, for a Jupyter "
    "server its address, token, APIs and notebook. One line per check with the fix for each failure; exit 0 "
    "when nothing failed, 1 otherwise. Tokens are never printed."
)
EPILOG = "example: nbmcp doctor analysis.ipynb --transport streamable-http"


def run_checks(settings: Settings) -> list[Check]:
    """Every check that applies to `settings`, in the order a first run meets them."""
    checks: list[Check] = []
    nb: NotebookNode | None = None
    if settings.hub_url:
        hub, found = check_hub(settings)
        checks.append(hub)
        if found is None:
            return [*checks, Check("jupyter", Verdict.SKIP, "not checked: the hub gave no running server")]
        settings = found
    if settings.document_url or settings.runtime_url:
        checks += check_remote(settings)
    if settings.gateway_url:
        checks += check_gateway(settings)
    if not settings.document_url:
        line, nb = check_notebook(settings)
        checks.append(line)
        checks.append(check_lock_dir())
    if not settings.runtime_url and not settings.gateway_url:
        if settings.read_only:
            checks.append(Check("kernel", Verdict.SKIP, "--read-only: nbmcp runs no code, so it starts no kernel"))
        else:
            # A remote notebook with a local kernel runs in the folder nbmcp was started in (as the server does).
            if settings.document_url:
                folder = Path.cwd()
            else:
                folder = settings.path if settings.path.is_dir() else settings.path.parent
            checks += check_local_kernel(settings, nb, folder)
    if settings.transport == "streamable-http":
        checks += check_http(settings)
    checks.append(check_view(settings))
    return checks


def doctor_cli(*args: str) -> int:
    """`nbmcp doctor [PATH] [the server's flags] [--json]`; returns the exit code (0: nothing failed)."""
    parser = command_parser("nbmcp doctor", DESCRIPTION, EPILOG)
    add_server_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON (for scripts)")
    ns = parser.parse_args(args)
    if not 0 <= ns.port <= 65535:
        parser.error(f"--port {ns.port}: valid ports are 0 to 65535")
    secrets = [ns.token, ns.server_token, ns.server_password, ns.gateway_token]
    secrets += [os.environ.get(name) for name in (*SECRET_VARS, "JUPYTER_GATEWAY_AUTH_TOKEN")]
    try:
        settings = settings_from_args(ns)
    except NbmcpError as exc:
        settings = Settings(path=Path(ns.path or ".").absolute(), transport=ns.transport)
        checks = [Check("configuration", Verdict.FAIL, str(exc), "fix the flags or environment variables named")]
    else:
        # The checklist is the report; the libraries' own log lines would only repeat it.
        configure_logging("DEBUG" if settings.log_level == "DEBUG" else "CRITICAL")
        checks = run_checks(settings)
    out = render_json(settings, checks) if ns.json else render_text(settings, checks)
    print(scrub(out, secrets))
    sys.stdout.flush()
    return 1 if any(c.verdict is Verdict.FAIL for c in checks) else 0
