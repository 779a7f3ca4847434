"""Shared fixtures: a temporary notebook folder, a lock folder of its own, an in-memory MCP client."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from mcp import Client

from nbmcp.config import Settings
from nbmcp.server.app import build_server

FILES = Path(__file__).parent / "files"
SITE = Path(__file__).parent / "site"
# Every Python the tests start (servers a module shares included) runs tests/site/sitecustomize.py, which
# skips an import that costs each about a second of CPU; tox.ini sets the same for pytest and its workers.
if str(SITE) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
# Benchmarks run with `tox -e bench` (python -m tests.bench.run), never with the tests; tests/clients drives
# real agent clients installed from npm by hand (see its README), never with the tests either.
collect_ignore = ["bench", "clients"]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (the default in tox.ini): two workers per core.

    Much of the suite waits rather than computes: for a kernel to start, a timeout to expire, a
    server to stop. With one worker per core the cores sat idle for about 40 % of a run.
    """
    return 2 * (os.cpu_count() or 1)


#: The modules that take a worker longest (about 15 to 60 s each on 2 cores, most of it spent on real
#: servers, kernels and subprocesses), slowest first. They are handed out first (tox.ini turns off xdist's
#: own order, by number of tests, which sent them last): a run then ends with short modules on every
#: worker, not with one long module alone while the other workers idle.
SLOW_MODULES = (
    "test_consistency",
    "test_exec_verdicts",
    "test_remote_reconnect",
    "test_http",
    "test_long_running",
    "test_hub",
    "test_remote",
    "test_tools",
    "test_examples",
    "test_faults",
    "test_stdio",
    "test_gateway",
    "test_exec_process",
    "test_answers",
    "test_view",
    "test_remote_faults",
    "test_doctor",
    "test_view_app",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_MODULES)}
    # A stable sort: each module's tests keep their order.
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture
def anyio_backend() -> str:
    # jupyter_client's async API is asyncio-based.
    return "asyncio"


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep lock files out of the user's runtime folder, and undo journals out of their state folder.
    monkeypatch.setenv("NBMCP_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
    monkeypatch.setenv("NBMCP_STATE_DIR", str(tmp_path_factory.mktemp("state")))


#: Where IPython and Jupyter write per-user files: pointed into the test's temporary folder, for nbmcp,
#: its kernels and every subprocess, so that the suite writes nothing to $HOME (issue 24: it left IPython
#: history sessions in ~/.ipython and ~/.local/share/jupyter/nbsignatures.db).
USER_DIR_VARS = {
    "IPYTHONDIR": "ipython",
    "JUPYTER_DATA_DIR": "jupyter-data",
    "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
    "JUPYTER_CONFIG_DIR": "jupyter-config",
    "MPLCONFIGDIR": "matplotlib",
}


def isolated_env(base: Path) -> dict[str, str]:
    """os.environ with the per-user folders and nbmcp's lock and state folders under `base`.

    For a process a module's tests share: it starts before the per-test fixtures point them into a test's folder.
    """
    env = {var: str(base / name) for var, name in USER_DIR_VARS.items()}
    return os.environ | env | {"NBMCP_LOCK_DIR": str(base / "locks"), "NBMCP_STATE_DIR": str(base / "state")}


@pytest.fixture(autouse=True)
def _user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path_factory.mktemp("user")
    for var, name in USER_DIR_VARS.items():
        monkeypatch.setenv(var, str(base / name))


@pytest.fixture
def nb_path(tmp_path: Path) -> Path:
    """Path of a notebook that does not exist yet, in an empty folder."""
    return tmp_path / "work" / "notebook.ipynb"


@pytest.fixture(autouse=True)
def _work_dir(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()


def copy_golden(name: str, dest: Path) -> Path:
    """Copy a committed notebook from tests/files so a test never modifies it."""
    shutil.copy(FILES / name, dest)
    return dest


def read_nb(path: Path) -> nbformat.NotebookNode:
    """Read a notebook back from disk and validate it (every mutating test does this)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def text_of(result: Any) -> str:
    """All text content of a tool result, joined."""
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


@pytest.fixture
async def client(nb_path: Path) -> AsyncIterator[Client]:
    server = build_server(Settings(path=nb_path, timeout=60, kernel_at_open=False))
    async with Client(server) as c:
        yield c


@pytest.fixture
async def structured_client(nb_path: Path) -> AsyncIterator[Client]:
    """`client` with --structured-output: for tests that read an answer's fields (cell_id, status, ...)."""
    server = build_server(Settings(path=nb_path, timeout=60, structured_output=True, kernel_at_open=False))
    async with Client(server) as c:
        yield c


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # cli() configures the root logger for a real run; keep that from leaking into later tests.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def make_venv(env: Path, *, ipykernel: bool) -> Path:
    """A real virtual environment (no pip, no network); with ipykernel through a .pth to the test env's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=60)
    python = env / "bin" / "python"
    if ipykernel:
        give_ipykernel(python)
    return python


def give_ipykernel(python: Path) -> None:
    """Make ipykernel importable in `python`'s environment, offline: a .pth to the test env's packages."""
    Path(site_packages(python), "nbmcp_test_shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def site_packages(python: Path) -> Path:
    """The site-packages folder of the environment `python` belongs to."""
    return Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    )


def child_pids(pid: int) -> set[int]:
    """The ids of the processes whose parent is `pid` (read from /proc: Linux only)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


def process_exists(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, ended but not yet reaped, does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status
