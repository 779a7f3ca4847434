"""Checks of this machine: the notebook file or folder, the lock folder, and for HTTP the port and the token rule."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
import time

from nbformat import NotebookNode

from ...config import Settings
from ...errors import NbmcpError
from ...notebook.store import LocalStore, lock_dir
from ...web import is_loopback
from .report import Check, Verdict

__all__ = ["check_http", "check_lock_dir", "check_notebook"]


def check_notebook(settings: Settings) -> tuple[Check, NotebookNode | None]:
    """The notebook (or folder) line, and the notebook when it was read (its kernelspec names the kernel)."""
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


def check_lock_dir() -> Check:
    """Whether nbmcp can create lock files in its lock folder."""
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


def check_http(settings: Settings) -> list[Check]:
    """The port (free to listen on) and the access rule (loopback, or a bearer token) of --transport streamable-http."""
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
