"""`nbmcp doctor`: check a set-up without serving anything, one verdict per line with the fix.

It takes the server's own flags, so the command that fails to serve can be checked by inserting
``doctor``: the notebook (or folder), the kernel that would run and a real start of it running ``1+1``,
the lock folder, for HTTP the port and the host/token rule, for a Jupyter server its reachability,
the token, the Contents and Kernels APIs and the notebook. Exit 0 when nothing failed, 1 otherwise.

No secret is ever printed: tokens are only sent (in the ``Authorization`` header), and every line is
scrubbed of them before it is shown, in case a library echoed one back.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import nbformat
from nbformat import NotebookNode

from .. import __version__
from ..config import Settings
from ..errors import NbmcpError
from ..jupyter.client import JupyterServer, api_error_message
from ..kernels.base import ExecutionResult, Kernel
from ..kernels.choice import KernelChoice, choose_kernel, install_command
from ..kernels.local import LocalKernel
from ..kernels.remote import RemoteKernel
from ..notebook.store import LocalStore, lock_dir
from ..server.http import is_loopback

__all__ = ["KERNEL_CHECK_TIMEOUT", "Check", "Verdict", "doctor_cli", "kernel_choice", "run_checks"]

logger = logging.getLogger(__name__)

#: Seconds `1+1` may take on a started kernel before the check fails (a cold start is timed apart).
KERNEL_CHECK_TIMEOUT = 60.0
#: Seconds the interpreter gets to answer `import ipykernel`.
IMPORT_CHECK_TIMEOUT = 60.0
#: Seconds each request to a Jupyter server may take in the checks.
SERVER_CHECK_TIMEOUT = 10.0


class Verdict(str, enum.Enum):
    """The outcome of one check."""

    PASS = "pass"
    """Works as nbmcp needs it."""
    WARN = "warn"
    """Works, but probably not as the user means (e.g. the kernel is nbmcp's own Python)."""
    FAIL = "fail"
    """nbmcp would not start or not work; the check carries the fix."""
    SKIP = "skip"
    """Not checked: not needed with these flags, or an earlier failure makes it meaningless."""


@dataclass
class Check:
    """One line of the checklist."""

    name: str
    verdict: Verdict
    detail: str
    fix: str = ""
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "detail": self.detail,
            "fix": self.fix,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
        }


# -- the kernel nbmcp would choose ------------------------------------------------------------------


def kernel_choice(settings: Settings, notebook_kernel: str | None, notebook_dir: Path) -> KernelChoice:
    """The local kernel nbmcp would run for these settings (the one place doctor asks `choose_kernel`)."""
    return choose_kernel(
        kernel_name=settings.kernel,
        python=settings.python,
        notebook_kernel=notebook_kernel,
        notebook_dir=notebook_dir,
    )


def _is_own_python(choice: KernelChoice) -> bool:
    """True when the kernel runs on nbmcp's own interpreter without the user asking for it.

    Also through the generic ``python3`` kernelspec named in the notebook's metadata, which resolves to
    the interpreter nbmcp runs on. Paths are compared unresolved: every virtual environment's python is
    a symlink to the same base interpreter.
    """
    if choice.reason in ("--python", "--kernel"):
        return False
    return choice.reason == "default" or os.path.abspath(choice.argv0) == os.path.abspath(sys.executable)


def _ipykernel_python(choice: KernelChoice) -> str | None:
    """The interpreter that must import ipykernel for this kernel to start, if it is an ipykernel."""
    argv = list(choice.spec.argv) if choice.spec is not None else []
    if any(a.startswith("ipykernel") for a in argv[1:4]):
        return choice.argv0
    return None


# -- checks ----------------------------------------------------------------------------------------


def _check_local_notebook(settings: Settings) -> tuple[Check, NotebookNode | None]:
    path = settings.path
    name = "notebook"
    if path.is_dir():
        if not settings.read_only and not os.access(path, os.W_OK):
            return Check(
                name,
                Verdict.FAIL,
                f"folder {path} is not writable",
                f"make it writable (chmod u+w {path}), or add --read-only",
            ), None
        return Check(name, Verdict.PASS, f"folder {path}: every notebook under it is served"), None
    if path.suffix != ".ipynb":
        return Check(
            name,
            Verdict.FAIL,
            f"{path} does not end in .ipynb",
            "give a notebook path ending in .ipynb, or a folder of notebooks",
        ), None
    if not path.exists():
        if not path.parent.is_dir():
            return Check(
                name,
                Verdict.FAIL,
                f"{path} does not exist and neither does its folder {path.parent}",
                f"create the folder (mkdir -p {path.parent}) or fix the path",
            ), None
        if not os.access(path.parent, os.W_OK):
            return Check(
                name,
                Verdict.FAIL,
                f"{path} does not exist and its folder is not writable, so it cannot be created",
                f"make {path.parent} writable, or point nbmcp at an existing notebook",
            ), None
        return Check(name, Verdict.PASS, f"{path} does not exist yet; it would be created (empty, nbformat 4.5)"), None
    started = time.monotonic()
    try:
        nb = LocalStore(path).read()
    except (NbmcpError, OSError) as exc:
        return Check(
            name,
            Verdict.FAIL,
            str(exc),
            "repair the file (e.g. `git checkout -- FILE`, or open it in JupyterLab), "
            "or point nbmcp at another notebook",
        ), None
    elapsed = time.monotonic() - started
    detail = f"{path}: {len(nb.cells)} cells, nbformat {nb.nbformat}.{nb.nbformat_minor}, parsed in {elapsed:.2f} s"
    if not settings.read_only and not os.access(path, os.W_OK):
        return Check(
            name, Verdict.FAIL, f"{detail}; but the file is not writable", f"chmod u+w {path}, or add --read-only"
        ), nb
    return Check(name, Verdict.PASS, detail, seconds=elapsed), nb


def _check_lock_dir() -> Check:
    folder = lock_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".nbmcp-doctor-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return Check(
            "lock folder",
            Verdict.FAIL,
            f"cannot write in {folder}: {exc.strerror or exc}",
            "set NBMCP_LOCK_DIR to a folder you can write (e.g. export NBMCP_LOCK_DIR=$HOME/.cache/nbmcp-locks), "
            f"or fix the permissions of {folder}",
        )
    return Check("lock folder", Verdict.PASS, f"{folder} is writable")


def _check_ipykernel(python: str) -> Check:
    name = "ipykernel"
    try:
        proc = subprocess.run(
            [python, "-c", "import ipykernel"],
            capture_output=True,
            text=True,
            timeout=IMPORT_CHECK_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name, Verdict.FAIL, f"cannot run {python}: {exc}", "point --python at a working interpreter")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
        return Check(
            name,
            Verdict.FAIL,
            f"{python} cannot import ipykernel ({last}), so no kernel can start on it",
            f"install it into that environment: `{python} -m pip install ipykernel` "
            f"(or `uv pip install --python {python} ipykernel`); "
            "or choose another interpreter with --python or --kernel",
        )
    return Check(name, Verdict.PASS, f"{python} has ipykernel")


def _run_check(kernel: Kernel, where: str) -> Check:
    """Start `kernel`, run 1+1 on it, shut it down; the timings go into the line."""

    async def go() -> tuple[float, ExecutionResult]:
        started = time.monotonic()
        try:
            await kernel.ensure_started()
            start_time = time.monotonic() - started
            result = await kernel.execute("1+1", timeout=KERNEL_CHECK_TIMEOUT, store_history=False)
            return start_time, result
        finally:
            await kernel.shutdown()

    name = "kernel run"
    try:
        start_time, result = asyncio.run(go())
    except NbmcpError as exc:
        return Check(name, Verdict.FAIL, str(exc), _start_fix(where))
    except Exception as exc:  # any failure to start is what this check reports
        return Check(name, Verdict.FAIL, f"could not start the kernel: {type(exc).__name__}: {exc}", _start_fix(where))
    answer = next(
        (o.get("data", {}).get("text/plain") for o in result.outputs if o.get("output_type") == "execute_result"),
        None,
    )
    if result.status != "ok" or answer != "2":
        return Check(
            name,
            Verdict.FAIL,
            f"the kernel started in {start_time:.2f} s but 1+1 gave status {result.status!r}, "
            f"answer {answer!r} {result.note}".strip(),
            _start_fix(where),
        )
    return Check(
        name,
        Verdict.PASS,
        f"started in {start_time:.2f} s; ran 1+1 = 2 in {result.elapsed:.2f} s",
        seconds=start_time + result.elapsed,
    )


def _start_fix(where: str) -> str:
    if where == "remote":
        return "check the Jupyter server's log (it starts the kernel); `jupyter kernelspec list` on that machine"
    return (
        "run the kernel by hand to see its error (`jupyter kernelspec list`, or `PYTHON -m ipykernel_launcher`); "
        "choose another with --kernel NAME or --python PATH"
    )


def _check_local_kernel(settings: Settings, nb: NotebookNode | None, notebook_dir: Path) -> list[Check]:
    metadata_kernel = nb.metadata.get("kernelspec", {}).get("name") if nb is not None else None
    try:
        choice = kernel_choice(settings, metadata_kernel, notebook_dir)
    except NbmcpError as exc:
        if settings.python and "has no ipykernel" in str(exc):
            # --python names an interpreter without ipykernel: the start-up check's message has the fix.
            given = str(Path(settings.python).expanduser())
            return [
                Check("kernel", Verdict.FAIL, f"--python {settings.python}", "see the ipykernel line"),
                Check(
                    "ipykernel",
                    Verdict.FAIL,
                    f"{given} cannot import ipykernel",
                    f"install it into that environment: `{install_command(given)}`",
                ),
                Check("kernel run", Verdict.SKIP, "not tried: the interpreter has no ipykernel"),
            ]
        return [Check("kernel", Verdict.FAIL, str(exc), "fix --kernel/--python (see `jupyter kernelspec list`)")]
    line = Check("kernel", Verdict.PASS, choice.describe())
    if _is_own_python(choice):
        line.verdict = Verdict.WARN
        line.detail += (
            ": the Python nbmcp itself runs on, so code sees only the packages installed there, not your project's"
        )
        line.fix = (
            "to use your project's packages: a .venv beside the notebook with ipykernel, "
            "--python /path/to/project/.venv/bin/python, or --kernel NAME"
        )
    checks = [line]
    python = _ipykernel_python(choice)
    if python is not None:
        ipykernel = _check_ipykernel(python)
        checks.append(ipykernel)
        if ipykernel.verdict is Verdict.FAIL:
            checks.append(Check("kernel run", Verdict.SKIP, "not tried: the interpreter has no ipykernel"))
            return checks
    checks.append(_run_check(LocalKernel(choice, notebook_dir), "local"))
    return checks


def _bind_error(host: str, port: int) -> OSError | None:
    """The error binding (host, port) gives, or None if a server could listen there.

    Binds what uvicorn binds (through asyncio's create_server): every address the host resolves to
    (``localhost`` is 127.0.0.1 and ::1), with SO_REUSEADDR, so a port in TIME_WAIT counts as free.
    """
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:  # a name that does not resolve
        return exc
    for family, kind, proto, _, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio does
            try:
                s.bind(address)
            except OSError as exc:  # in use, or not an address of this machine
                return exc
    return None


def _free_port(host: str) -> int | None:
    with contextlib.suppress(OSError), socket.socket() as s:
        s.bind((host if not host.startswith("[") else "127.0.0.1", 0))
        return int(s.getsockname()[1])
    return None


def _check_http(settings: Settings) -> list[Check]:
    host, port = settings.host, settings.port
    checks: list[Check] = []
    problem = _bind_error(host, port)
    if problem is None:
        checks.append(Check("port", Verdict.PASS, f"{host}:{port} is free"))
    elif getattr(problem, "errno", None) == errno.EADDRINUSE:
        spare = _free_port(host)
        checks.append(
            Check(
                "port",
                Verdict.FAIL,
                f"{host}:{port} is already in use by another program",
                f"stop that program (`ss -ltnp 'sport = :{port}'` or `lsof -i :{port}` names it; an older nbmcp?) "
                f"or choose another port" + (f", e.g. --port {spare}" if spare else ""),
            )
        )
    else:
        checks.append(
            Check(
                "port",
                Verdict.FAIL,
                f"cannot listen on {host}:{port}: {getattr(problem, 'strerror', None) or problem}",
                "use an address of this machine with --host (127.0.0.1 for this machine only)",
            )
        )
    if is_loopback(host):
        detail = f"{host} is loopback: only this machine can connect"
        checks.append(
            Check("access", Verdict.PASS, detail + ("; a bearer token is required" if settings.token else ""))
        )
    elif settings.token:
        checks.append(Check("access", Verdict.PASS, f"{host} is reachable from other machines; a bearer token is set"))
    else:
        checks.append(
            Check(
                "access",
                Verdict.FAIL,
                f"{host} is reachable from other machines and no bearer token is set: nbmcp refuses to start",
                "set a token in NBMCP_TOKEN (e.g. export NBMCP_TOKEN=$(python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')), or use --host 127.0.0.1",
            )
        )
    return checks


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
                f"{server.url} answers, but not as a Jupyter server (GET /api: HTTP {r.status_code})",
                _server_fix(server),
            )
        ]
    checks = [Check(f"{label} reachable", Verdict.PASS, f"{server.url}: Jupyter server {version}")]
    r = http.get(server.api_url("status"))
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
    if specs.is_error or kernels.is_error:
        bad = specs if specs.is_error else kernels
        return Check("kernels API", Verdict.FAIL, f"HTTP {bad.status_code}: {api_error_message(bad)}", "")
    body = specs.json()
    names = sorted(body.get("kernelspecs", {}))
    running = kernels.json()
    detail = f"kernelspecs: {', '.join(names) or 'none'} (default {body.get('default')}); {len(running)} running"
    if settings.runtime_id and not any(k.get("id") == settings.runtime_id for k in running):
        return Check(
            "kernels API",
            Verdict.FAIL,
            f"{detail}; no kernel has the id in RUNTIME_ID",
            "unset RUNTIME_ID to use the notebook's kernel, or set it to a running kernel's id (GET /api/kernels)",
        )
    return Check("kernels API", Verdict.PASS, detail)


def _check_remote(settings: Settings) -> list[Check]:
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
    for url, token, role in servers:
        server = JupyterServer(url, token)
        label = "jupyter" if role == "server" else f"{role} server"
        with httpx2.Client(headers=server.headers, timeout=SERVER_CHECK_TIMEOUT) as http:
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
        JupyterServer(settings.runtime_url, settings.runtime_token),
        settings.path.as_posix() if settings.document_url else settings.path.name,
        kernel_id=settings.runtime_id,
        start_new=settings.runtime_id is None,
        kernel_name=name,
        start_timeout=KERNEL_CHECK_TIMEOUT,
    )
    check = _run_check(kernel, "remote")
    if check.verdict is Verdict.PASS:
        whose = (
            f"kernel {settings.runtime_id} (RUNTIME_ID)" if settings.runtime_id else "a new kernel, deleted afterwards"
        )
        check.detail = f"{whose}: {check.detail}"
    return check


def run_checks(settings: Settings) -> list[Check]:
    """Every check that applies to `settings`, in the order a first run meets them."""
    checks: list[Check] = []
    nb: NotebookNode | None = None
    if settings.document_url or settings.runtime_url:
        checks += _check_remote(settings)
    if not settings.document_url:
        line, nb = _check_local_notebook(settings)
        checks.append(line)
        checks.append(_check_lock_dir())
    if not settings.runtime_url:
        if settings.read_only:
            checks.append(Check("kernel", Verdict.SKIP, "--read-only: nbmcp runs no code, so it starts no kernel"))
        else:
            # A remote notebook with a local kernel runs in the folder nbmcp was started in (as the server does).
            if settings.document_url:
                folder = Path.cwd()
            else:
                folder = settings.path if settings.path.is_dir() else settings.path.parent
            checks += _check_local_kernel(settings, nb, folder)
    if settings.transport == "streamable-http":
        checks += _check_http(settings)
    return checks


# -- output ----------------------------------------------------------------------------------------

_MARK = {Verdict.PASS: " ok ", Verdict.WARN: "warn", Verdict.FAIL: "FAIL", Verdict.SKIP: "skip"}


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def render_text(settings: Settings, checks: list[Check]) -> str:
    where = settings.path if not settings.document_url else f"{settings.path} on {settings.document_url}"
    lines = [f"nbmcp doctor {__version__}: {where} ({settings.transport})"]
    width = max(len(c.name) for c in checks)
    for c in checks:
        lines.append(f"[{_MARK[c.verdict]}] {c.name:<{width}}  {c.detail}")
        if c.fix and c.verdict in (Verdict.FAIL, Verdict.WARN):
            lines.append(f"       {'':<{width}}  fix: {c.fix}")
    failed = sum(c.verdict is Verdict.FAIL for c in checks)
    lines.append(
        f"{failed} of {len(checks)} checks failed." if failed else f"All {len(checks)} checks passed (or were skipped)."
    )
    return "\n".join(lines)


def render_json(settings: Settings, checks: list[Check]) -> str:
    report = {
        "version": __version__,
        "path": str(settings.path),
        "transport": settings.transport,
        "ok": not any(c.verdict is Verdict.FAIL for c in checks),
        "checks": [c.as_dict() for c in checks],
    }
    return json.dumps(report, indent=1)


def doctor_cli(*args: str) -> int:
    """`nbmcp doctor [PATH] [the server's flags] [--json]`; returns the exit code (0: nothing failed)."""
    from .main import _configure_logging, _parser, settings_from_args

    parser = _parser()
    parser.prog = "nbmcp doctor"
    parser.description = (
        "Check, without serving, what `nbmcp` with the same PATH and flags depends on: the notebook, the kernel "
        "(started once to run 1+1, timed), the lock folder, for HTTP the port and the host/token rule, for a Jupyter "
        "server its address, token, APIs and notebook. One line per check with the fix for each failure; exit 0 "
        "when nothing failed, 1 otherwise. Tokens are never printed."
    )
    parser.epilog = "example: nbmcp doctor analysis.ipynb --transport streamable-http"
    parser.add_argument("--json", action="store_true", help="print the report as JSON (for scripts)")
    ns = parser.parse_args(args)
    if not 0 <= ns.port <= 65535:
        parser.error(f"--port {ns.port}: valid ports are 0 to 65535")
    secrets = [ns.token, ns.server_token, os.environ.get("DOCUMENT_TOKEN"), os.environ.get("RUNTIME_TOKEN")]
    try:
        settings = settings_from_args(ns)
    except NbmcpError as exc:
        settings = Settings(path=Path(ns.path or ".").absolute(), transport=ns.transport)
        checks = [Check("configuration", Verdict.FAIL, str(exc), "fix the flags or environment variables named")]
    else:
        # The checklist is the report; the libraries' own log lines would only repeat it.
        _configure_logging("DEBUG" if settings.log_level == "DEBUG" else "CRITICAL")
        checks = run_checks(settings)
    out = render_json(settings, checks) if ns.json else render_text(settings, checks)
    print(_scrub(out, secrets))
    sys.stdout.flush()
    return 1 if any(c.verdict is Verdict.FAIL for c in checks) else 0
