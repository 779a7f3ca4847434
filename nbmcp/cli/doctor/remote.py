"""Checks of a Jupyter server: reachable, the token, the Contents and Kernels APIs, the notebook, a kernel run."""

from __future__ import annotations

import contextlib
import dataclasses
import time

import httpx2
import nbformat
from nbformat import NotebookNode

from ...config import Settings
from ...errors import NbmcpError
from ...jupyter.client import PASSWORD_OPTION, JupyterServer, api_error_message
from ...jupyter.explain import explain_api_answer
from ...kernels.remote import RemoteKernel
from .kernel import KERNEL_CHECK_TIMEOUT, run_kernel_check
from .report import Check, Verdict

__all__ = ["SERVER_CHECK_TIMEOUT", "check_hub", "check_remote"]

#: Seconds each request to a Jupyter server may take in the checks.
SERVER_CHECK_TIMEOUT = 10.0


def _server_fix(server: JupyterServer) -> str:
    return (
        f"start the Jupyter server, or correct the URL (--server-url, DOCUMENT_URL, RUNTIME_URL; now {server.url}), "
        "including any base path such as /user/NAME"
    )


def _check_server_access(server: JupyterServer, label: str, http: httpx2.Client) -> list[Check]:
    """Reachable, then the token accepted (checked only when reachable): one or two lines."""
    try:
        r = http.get(server.api_url())
    except httpx2.TransportError as exc:
        return [
            Check(
                f"{label} reachable",
                Verdict.FAIL,
                f"nothing answers at {server.url} ({type(exc).__name__})",
                _server_fix(server),
            )
        ]
    version = None
    with contextlib.suppress(ValueError, AttributeError):
        version = r.json().get("version")
    if r.status_code != 200 or version is None:
        return [
            Check(
                f"{label} reachable",
                Verdict.FAIL,
                explain_api_answer(server.url, r),
                _server_fix(server),
            )
        ]
    checks = [Check(f"{label} reachable", Verdict.PASS, f"{server.url}: Jupyter server {version}")]
    r = http.get(server.api_url("status"))
    if r.status_code == 404:  # a Kernel or Enterprise Gateway has no /api/status; its kernelspecs need the token
        r = http.get(server.api_url("kernelspecs"))
    if r.status_code in (401, 403):
        given = "refused the token" if server.token else "requires a token and none was given"
        checks.append(
            Check(
                f"{label} token",
                Verdict.FAIL,
                f"the server {given} (HTTP {r.status_code})",
                "give the token the server printed at start-up (`jupyter server list` shows it) in DOCUMENT_TOKEN "
                "and RUNTIME_TOKEN (or --server-token)",
            )
        )
    elif r.is_error:
        checks.append(
            Check(f"{label} token", Verdict.FAIL, f"GET /api/status: HTTP {r.status_code}: {api_error_message(r)}", "")
        )
    else:
        what = "accepted" if server.token else "not needed (the server has no token)"
        checks.append(Check(f"{label} token", Verdict.PASS, what))
    return checks


def _check_contents(
    server: JupyterServer, notebook: str, http: httpx2.Client
) -> tuple[list[Check], NotebookNode | None]:
    r = http.get(server.api_url("contents"), params={"content": "0"})
    if r.is_error:
        return [
            Check(
                "contents API",
                Verdict.FAIL,
                f"GET /api/contents: HTTP {r.status_code}: {api_error_message(r)}",
                "nbmcp needs a Jupyter server with the Contents API (jupyter_server or notebook)",
            )
        ], None
    checks = [Check("contents API", Verdict.PASS, "answers")]
    started = time.monotonic()
    r = http.get(server.api_url("contents", notebook), params={"type": "notebook", "content": "1"})
    if r.status_code == 404:
        folder = notebook.rpartition("/")[0]
        if folder and http.get(server.api_url("contents", folder), params={"content": "0"}).status_code != 200:
            checks.append(
                Check(
                    "notebook",
                    Verdict.FAIL,
                    f"{notebook} is not on the server, and neither is its folder {folder}",
                    "the path (PATH or DOCUMENT_ID) is relative to the folder the server was started in; "
                    "check it in JupyterLab's file browser",
                )
            )
        else:
            checks.append(Check("notebook", Verdict.PASS, f"{notebook} is not on the server yet; it would be created"))
        return checks, None
    if r.is_error:
        checks.append(
            Check(
                "notebook",
                Verdict.FAIL,
                f"GET /api/contents/{notebook}: HTTP {r.status_code}: {api_error_message(r)}",
                "check that the path names a notebook (.ipynb) and that the server can read it",
            )
        )
        return checks, None
    try:
        nb = nbformat.from_dict(r.json()["content"])
        nbformat.validate(nb)
    except Exception as exc:  # whatever the server sent, it is not a notebook nbmcp can use
        checks.append(Check("notebook", Verdict.FAIL, f"{notebook} is not a valid notebook: {exc}", "repair it"))
        return checks, None
    elapsed = time.monotonic() - started
    checks.append(
        Check(
            "notebook",
            Verdict.PASS,
            f"{notebook}: {len(nb.cells)} cells, read in {elapsed:.2f} s",
            seconds=elapsed,
        )
    )
    return checks, nb


def _check_kernels_api(settings: Settings, server: JupyterServer, http: httpx2.Client) -> Check:
    specs = http.get(server.api_url("kernelspecs"))
    kernels = http.get(server.api_url("kernels"))
    if specs.status_code == 404 or kernels.status_code == 404:
        return Check(
            "kernels API",
            Verdict.FAIL,
            f"{server.url} has no kernels API, so it cannot run code",
            "leave RUNTIME_URL unset to run code on a local kernel",
        )
    unlisted = kernels.status_code == 403 and not specs.is_error  # a gateway's default: no kernel listing
    if specs.is_error or (kernels.is_error and not unlisted):
        bad = specs if specs.is_error else kernels
        return Check("kernels API", Verdict.FAIL, f"HTTP {bad.status_code}: {api_error_message(bad)}", "")
    body = specs.json()
    names = sorted(body.get("kernelspecs", {}))
    running = [] if unlisted else kernels.json()
    detail = f"kernelspecs: {', '.join(names) or 'none'} (default {body.get('default')}); "
    detail += "running kernels not listed (a gateway?)" if unlisted else f"{len(running)} running"
    if unlisted and not settings.runtime_id and not settings.start_new_runtime:
        # No sessions there: nbmcp starts a kernel of its own on it, as with START_NEW_RUNTIME=true.
        detail += "; no sessions API, so nbmcp will start a kernel of its own there (deleted on exit)"
    if settings.runtime_id and not unlisted and not any(k.get("id") == settings.runtime_id for k in running):
        return Check(
            "kernels API",
            Verdict.FAIL,
            f"{detail}; no kernel has the id in RUNTIME_ID",
            "unset RUNTIME_ID to use the notebook's kernel, or set it to a running kernel's id (GET /api/kernels)",
        )
    return Check("kernels API", Verdict.PASS, detail)


def check_hub(settings: Settings) -> tuple[Check, Settings | None]:
    """--jupyterhub: the user's server through the hub's API (never started by a check), and the settings with
    its URL when it runs (None: the server checks cannot be made)."""
    from ...jupyter.hub import running_server_url

    assert settings.hub_url and settings.hub_user
    user = settings.hub_user
    try:
        url = running_server_url(settings.hub_url, user, settings.document_token)
    except NbmcpError as exc:
        return Check("hub", Verdict.FAIL, str(exc), "correct --jupyterhub, --user or the hub's token"), None
    if url is None:
        detail = f"{user}'s server on {settings.hub_url} is stopped (nbmcp starts it; a check does not)"
        return Check("hub", Verdict.WARN, detail), None
    url = url.rstrip("/")
    runtime = url if settings.runtime_url else None
    found = dataclasses.replace(settings, document_url=url, runtime_url=runtime)
    return Check("hub", Verdict.PASS, f"{user}'s server runs at {url}"), found


def check_remote(settings: Settings) -> list[Check]:
    """The document and runtime servers: access, their APIs, the notebook, and a run on a kernel there."""
    checks: list[Check] = []
    notebook = settings.path.as_posix()
    nb: NotebookNode | None = None
    servers: list[tuple[str, str | None, str]] = []
    if settings.document_url:
        servers.append((settings.document_url, settings.document_token, "document"))
    if settings.runtime_url:
        same = [s for s in servers if s[0].rstrip("/") == settings.runtime_url.rstrip("/")]
        if same and same[0][1] == settings.runtime_token:
            servers[0] = (same[0][0], same[0][1], "server")
        else:
            servers.append((settings.runtime_url, settings.runtime_token, "runtime"))
    runtime_ok = False
    for *_, role in servers:
        server = settings.runtime_server() if role == "runtime" else settings.document_server()
        label = "jupyter" if role == "server" else f"{role} server"
        try:
            headers = server.headers  # with a password: the login
        except NbmcpError as exc:
            fix = f"give the right password in {PASSWORD_OPTION}" if isinstance(exc, PermissionError) else None
            checks.append(Check(label, Verdict.FAIL, str(exc), fix or _server_fix(server)))
            continue
        with httpx2.Client(headers=headers, timeout=SERVER_CHECK_TIMEOUT) as http:
            access = _check_server_access(server, label, http)
            checks += access
            usable = access[-1].verdict is Verdict.PASS and len(access) == 2
            if role in ("document", "server"):
                if usable:
                    more, nb = _check_contents(server, notebook, http)
                    checks += more
                else:
                    checks.append(Check("notebook", Verdict.SKIP, "not checked: the server cannot be used"))
            if role in ("runtime", "server"):
                if usable:
                    api = _check_kernels_api(settings, server, http)
                    checks.append(api)
                    runtime_ok = api.verdict is Verdict.PASS
                else:
                    checks.append(Check("kernels API", Verdict.SKIP, "not checked: the server cannot be used"))
    if settings.runtime_url:
        if settings.read_only:
            checks.append(Check("kernel run", Verdict.SKIP, "--read-only: nbmcp runs no code"))
        elif runtime_ok:
            checks.append(_check_remote_run(settings, nb))
        else:
            checks.append(Check("kernel run", Verdict.SKIP, "not tried: the kernels API cannot be used"))
    return checks


def _check_remote_run(settings: Settings, nb: NotebookNode | None) -> Check:
    assert settings.runtime_url is not None
    name = settings.kernel or (nb.metadata.get("kernelspec", {}).get("name") if nb is not None else None)
    # A kernel of our own (deleted afterwards) unless RUNTIME_ID names one: the check must not run code
    # in the kernel a person has open in JupyterLab.
    kernel = RemoteKernel(
        settings.runtime_server(),
        settings.path.as_posix() if settings.document_url else settings.path.name,
        kernel_id=settings.runtime_id,
        start_new=settings.runtime_id is None,
        kernel_name=name,
        start_timeout=KERNEL_CHECK_TIMEOUT,
    )
    check = run_kernel_check(kernel, "remote")
    if check.verdict is Verdict.PASS:
        whose = (
            f"kernel {settings.runtime_id} (RUNTIME_ID)" if settings.runtime_id else "a new kernel, deleted afterwards"
        )
        check.detail = f"{whose}: {check.detail}"
    return check
