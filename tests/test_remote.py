"""A real `jupyter server` on loopback: the Contents-API store, the remote kernel, the seed's env vars."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import nbformat
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from nbmcp.cli.main import cli
from nbmcp.config import DEFAULT_DOCUMENT_ID, settings_from_env
from nbmcp.errors import (
    KernelStartError,
    NoKernelsApiError,
    NotebookNotFoundError,
    NotebookWriteError,
    ServerAuthError,
    ServerUnreachableError,
    UsageError,
)
from nbmcp.jupyter import client as remote
from nbmcp.jupyter.client import JupyterServer
from nbmcp.kernels import channels as remote_kernel
from nbmcp.kernels.remote import RemoteKernel
from nbmcp.notebook.contents import CONFLICT_RETRIES, RECHECK_AFTER, ContentsStore
from nbmcp.server.app import build_server, make_session

from .conftest import text_of

pytestmark = pytest.mark.anyio

TOKEN = "tok-3f9a1c7e5b2d4c6a8e0f"  # distinctive, so a leak into any log line is found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Jupyter:
    url: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def http(self, token: str = TOKEN) -> httpx2.Client:
        return httpx2.Client(base_url=self.url, headers={"Authorization": f"token {token}"}, timeout=30)

    def env(self, notebook: str, *, runtime: bool = True, **extra: str) -> dict[str, str]:
        env = {"DOCUMENT_URL": self.url, "DOCUMENT_TOKEN": TOKEN, "DOCUMENT_ID": notebook}
        if runtime:
            env |= {"RUNTIME_URL": self.url, "RUNTIME_TOKEN": TOKEN}
        return env | extra

    def read(self, notebook: str) -> nbformat.NotebookNode:
        nb = nbformat.read(self.root / notebook, as_version=4)
        nbformat.validate(nb)
        return nb

    def stop(self) -> None:
        """Stop the server as a person would (SIGTERM: it shuts its kernels down); waits for it to exit."""
        with contextlib.suppress(Exception), self.http() as http:
            for k in http.get("/api/kernels", timeout=5).json():
                http.delete(f"/api/kernels/{k['id']}", timeout=5)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def launch_jupyter(root: Path, home: Path, port: int | None = None, *options: str, base_url: str = "/") -> Jupyter:
    """A real Jupyter server with a token on a loopback port (a free one by default), once it answers.

    `base_url`: the server's own URL prefix (``--ServerApp.base_url``, as JupyterHub gives each user server).
    """
    port = port or _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONTRACEMALLOC"}  # it slows the server down
    # Keep the server's config, runtime files and cookie secret out of the user's Jupyter folders.
    env |= {"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    log = home / f"server-{port}-{time.monotonic_ns()}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                f"--IdentityProvider.token={TOKEN}",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={root}",
                f"--ServerApp.base_url={base_url}",
                "--ServerApp.allow_root=True",
                # The server's own throttle (1 MB/s of output by default) would hide the big-output test's
                # subject, nbmcp's websocket message limit.
                "--ServerApp.iopub_data_rate_limit=1e12",
                "--no-browser",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=home,
        )
    server = Jupyter(f"http://127.0.0.1:{port}{base_url.rstrip('/')}", root, proc, log)
    try:
        deadline = time.monotonic() + 60
        with server.http() as http:
            while True:
                with contextlib.suppress(httpx2.TransportError):
                    if http.get(server.url + "/api/status").status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter server did not start: {log.read_text()}")
                time.sleep(0.1)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    """A real Jupyter server with a token on a free loopback port, stopped at the end of the module."""
    server = launch_jupyter(tmp_path_factory.mktemp("server-root"), tmp_path_factory.mktemp("jupyter-home"))
    try:
        yield server
    finally:
        server.stop()


_names = iter(range(10_000))


@pytest.fixture
def notebook(jupyter: Jupyter) -> str:
    """A fresh notebook name on the server (tests share the server, never a notebook)."""
    return f"nb{next(_names)}.ipynb"


@pytest.fixture
async def client(jupyter: Jupyter, notebook: str) -> AsyncIterator[Client]:
    server = build_server(settings_from_env(jupyter.env(notebook), timeout=60, structured_output=True))
    async with Client(server) as c:
        yield c


async def call(client: Client, tool: str, **args: object) -> Any:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    return result


def put_external(jupyter: Jupyter, notebook: str, source: str) -> None:
    """Another client (JupyterLab, say) appends a cell and saves through the Contents API."""
    with jupyter.http() as http:
        nb = http.get(f"/api/contents/{notebook}", params={"type": "notebook"}).json()["content"]
        nb["cells"].append(nbformat.v4.new_markdown_cell(source))
        r = http.put(f"/api/contents/{notebook}", json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code in (200, 201), r.text


# -- configuration ----------------------------------------------------------------------------------


def test_seed_env_vars_configure_a_remote_notebook_and_kernel() -> None:
    env = {
        "DOCUMENT_URL": "http://127.0.0.1:8888/",
        "DOCUMENT_TOKEN": "doc-secret",
        "DOCUMENT_ID": "work/a.ipynb",
        "RUNTIME_URL": "http://127.0.0.1:8888",
        "RUNTIME_TOKEN": "run-secret",
        "RUNTIME_ID": "k1",
        "START_NEW_RUNTIME": "false",
    }
    s = settings_from_env(env)
    assert s.path == Path("work/a.ipynb") and not s.path.is_absolute()
    assert (s.document_url, s.document_token, s.runtime_token, s.runtime_id) == (
        "http://127.0.0.1:8888/",
        "doc-secret",
        "run-secret",
        "k1",
    )
    assert "secret" not in repr(s)
    # One server and one token: RUNTIME_TOKEN defaults to DOCUMENT_TOKEN.
    s = settings_from_env({"DOCUMENT_URL": "http://h:1", "DOCUMENT_TOKEN": "t", "RUNTIME_URL": "http://h:1/"})
    assert s.runtime_token == "t" and s.path == Path(DEFAULT_DOCUMENT_ID)
    # A remote notebook with a local kernel.
    s = settings_from_env({"DOCUMENT_URL": "http://h:1", "START_NEW_RUNTIME": "TRUE"})
    assert s.runtime_url is None and s.start_new_runtime
    # The flags win over the environment and cover both sides.
    s = settings_from_env(
        {"DOCUMENT_URL": "http://env:1"}, path="x.ipynb", server_url="http://flag:2", server_token="T"
    )
    assert (s.document_url, s.runtime_url, s.runtime_token, s.path) == (
        "http://flag:2",
        "http://flag:2",
        "T",
        Path("x.ipynb"),
    )
    # Without any of them, a local notebook (or folder) as before.
    assert settings_from_env({}, path="local.ipynb").path.is_absolute()
    assert settings_from_env({}).path == Path.cwd()


@pytest.mark.parametrize(
    "env, problem",
    [
        ({"DOCUMENT_URL": "http://h:1", "START_NEW_RUNTIME": "maybe"}, "not a boolean"),
        ({"DOCUMENT_URL": "http://h:1", "RUNTIME_ID": "k"}, "RUNTIME_URL is not"),
        ({"DOCUMENT_TOKEN": "t"}, "DOCUMENT_URL"),
        ({"DOCUMENT_URL": "http://h:1", "DOCUMENT_ID": "folder"}, "does not end in .ipynb"),
    ],
)
def test_inconsistent_configuration_is_refused(env: dict[str, str], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        settings_from_env(env)


@pytest.mark.parametrize("url", ["localhost:8888", "http://h:1/?token=abc", "http://user:pw@h:1"])
def test_server_urls_with_a_token_or_without_a_scheme_are_refused(url: str) -> None:
    with pytest.raises(UsageError) as info:
        JupyterServer(url, "secret")
    assert "secret" not in str(info.value)


def test_the_token_is_sent_only_in_the_authorization_header() -> None:
    server = JupyterServer("http://h:1/base/", "sekrit")
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(404, json={"message": "nope"})

    store = ContentsStore(
        server, "a b.ipynb", client=httpx2.Client(transport=httpx2.MockTransport(handler), headers=server.headers)
    )
    assert store.changed_on_disk()
    assert str(seen[0].url) == "http://h:1/base/api/contents/a%20b.ipynb?type=notebook&content=0&hash=1"
    assert seen[0].headers["Authorization"] == "token sekrit"
    assert "sekrit" not in repr(server) and "sekrit" not in store.path


# -- every seed tool, configured only by the seed's environment variables ----------------------------


async def test_every_seed_tool_works_on_a_remote_notebook_and_kernel(
    client: Client, jupyter: Jupyter, notebook: str
) -> None:
    await call(client, "append_markdown_cell", cell_source="# Title")
    await call(client, "insert_markdown_cell", cell_index=0, cell_source="first")
    r = await call(client, "append_execute_code_cell", cell_source="x = 6 * 7\nx")
    assert "42" in text_of(r)
    r = await call(client, "insert_execute_code_cell", cell_index=0, cell_source="print('hello from the server')")
    assert "hello from the server" in text_of(r)
    r = await call(client, "overwrite_cell_source", cell_index=0, cell_source="print(x + 1)")
    assert "+print(x + 1)" in text_of(r)
    r = await call(client, "execute_cell_simple_timeout", cell_index=0, timeout_seconds=30)
    assert "43" in text_of(r)
    r = await call(client, "execute_cell_streaming", cell_index=3, timeout_seconds=30, progress_interval=1)
    assert "42" in text_of(r)
    r = await call(client, "execute_cell_with_progress", cell_index=0, timeout_seconds=30)
    assert "43" in text_of(r)
    r = await call(client, "read_cell", cell_index=0)
    assert "print(x + 1)" in text_of(r) and "43" in text_of(r)
    r = await call(client, "delete_cell", cell_index=1)
    assert "first" in text_of(r)
    r = await call(client, "read_all_cells")
    assert "# Title" in text_of(r) and "first" not in text_of(r)
    info = (await call(client, "get_notebook_info")).structured_content
    assert info["total_cells"] == 3 and info["cell_types"]["code"] == 2
    assert info["path"] == f"{jupyter.url}/api/contents/{notebook}"
    assert info["kernel"]["state"] == "idle" and jupyter.url in info["kernel"]["interpreter"]
    # Every change is in the file on the server, written by the server.
    nb = jupyter.read(notebook)
    assert [c.source for c in nb.cells] == ["print(x + 1)", "# Title", "x = 6 * 7\nx"]
    assert nb.cells[0].outputs[0].text == "43\n" and nb.cells[2].execution_count is not None


async def test_code_runs_on_the_servers_kernel(client: Client, jupyter: Jupyter, notebook: str) -> None:
    cell = (
        "import os\nopen('ran-here.txt', 'w').write(str(os.getppid()))\nprint(os.getpid(), os.getppid(), os.getcwd())"
    )
    r = await call(client, "append_execute_code_cell", cell_source=cell)
    _pid, ppid, cwd = text_of(r).splitlines()[-1].split()
    # The kernel is a child of the jupyter server process and runs in the server's root folder:
    # a local kernel would be a child of this test process and write beside the test's cwd.
    assert int(ppid) == jupyter.proc.pid != os.getpid()
    assert Path(cwd) == jupyter.root
    assert (jupyter.root / "ran-here.txt").read_text() == ppid
    # JupyterLab shows the kernel attached to the notebook: the server has a session for it.
    with jupyter.http() as http:
        sessions = [s for s in http.get("/api/sessions").json() if s["path"] == notebook]
    assert len(sessions) == 1 and sessions[0]["kernel"]["execution_state"] in ("idle", "busy")


async def test_a_document_on_the_server_with_a_local_kernel(jupyter: Jupyter, notebook: str) -> None:
    server = build_server(settings_from_env(jupyter.env(notebook, runtime=False), timeout=60))
    async with Client(server) as c:
        r = await call(c, "append_execute_code_cell", cell_source="import os; print(os.getppid())")
    assert int(text_of(r).splitlines()[-1]) == os.getpid()  # our own child process
    assert jupyter.read(notebook).cells[0].outputs[0].text.strip() == str(os.getpid())


# -- consistency ------------------------------------------------------------------------------------


async def test_a_put_by_another_client_between_two_tool_calls_is_not_overwritten(
    client: Client, jupyter: Jupyter, notebook: str
) -> None:
    await call(client, "append_markdown_cell", cell_source="ours 1")
    put_external(jupyter, notebook, "theirs")
    await call(client, "append_markdown_cell", cell_source="ours 2")
    r = await call(client, "read_cell", cell_index=1)
    assert "theirs" in text_of(r)  # reads see the other client's save too
    assert [c.source for c in jupyter.read(notebook).cells] == ["ours 1", "theirs", "ours 2"]


def test_a_save_during_an_edit_is_kept_and_the_edit_applied_again(jupyter: Jupyter, notebook: str) -> None:
    store = ContentsStore(JupyterServer(jupyter.url, TOKEN), notebook)
    store.create_if_missing()
    calls = 0

    def apply(nb: nbformat.NotebookNode) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            put_external(jupyter, notebook, "saved meanwhile")  # lands between our read and our PUT
            time.sleep(RECHECK_AFTER)  # a change slow to apply (a quick one is not checked twice)
        nb.cells.append(nbformat.v4.new_markdown_cell("ours"))
        return len(nb.cells)

    assert store.edit(apply) == 2
    assert calls == 2
    assert [c.source for c in jupyter.read(notebook).cells] == ["saved meanwhile", "ours"]
    assert not store.changed_on_disk()
    put_external(jupyter, notebook, "later")
    assert store.changed_on_disk()
    store.close()


def test_an_edit_that_keeps_losing_the_race_gives_up_after_conflict_retries(jupyter: Jupyter, notebook: str) -> None:
    store = ContentsStore(JupyterServer(jupyter.url, TOKEN), notebook)
    store.create_if_missing()
    calls = 0

    def apply(nb: nbformat.NotebookNode) -> None:
        nonlocal calls
        calls += 1
        put_external(jupyter, notebook, f"theirs {calls}")
        time.sleep(RECHECK_AFTER)

    with pytest.raises(NotebookWriteError, match="kept changing"):
        store.edit(apply)
    assert calls == CONFLICT_RETRIES + 1
    assert "ours" not in str(jupyter.read(notebook).cells)
    store.close()


# -- the remote kernel ------------------------------------------------------------------------------


async def test_timeout_interrupts_the_remote_kernel_and_it_stays_usable(
    client: Client, jupyter: Jupyter, notebook: str
) -> None:
    await call(client, "append_execute_code_cell", cell_source="y = 10\nslow = 0")
    await call(client, "append_execute_code_cell", cell_source="import time\nprint('start')\ntime.sleep(slow)")
    await call(client, "append_execute_code_cell", cell_source="slow = 30")
    started = time.monotonic()
    r = await call(client, "execute_cell_simple_timeout", cell_index=1, timeout_seconds=1)
    assert time.monotonic() - started < 10
    assert "timed out" in text_of(r) and "start" in text_of(r)
    r = await call(client, "append_execute_code_cell", cell_source="y")
    assert "10" in text_of(r)  # same kernel, state intact
    assert "KeyboardInterrupt" in str(jupyter.read(notebook).cells[1].outputs)


async def test_a_dead_remote_kernel_is_reported_and_used_again_next_time(client: Client) -> None:
    started = time.monotonic()
    r = await call(client, "append_execute_code_cell", cell_source="import os; os._exit(1)")
    assert "kernel died" in text_of(r)
    assert time.monotonic() - started < 20  # noticed, never a hang
    r = await call(client, "append_execute_code_cell", cell_source="print('alive again')")
    assert "alive again" in text_of(r)


async def test_big_outputs_fit_in_a_websocket_message(client: Client, jupyter: Jupyter, notebook: str) -> None:
    # Above tornado's default limit of 10 MiB per message, below MAX_MESSAGE_BYTES.
    size = 11 * 1024 * 1024
    assert size < remote_kernel.MAX_MESSAGE_BYTES
    cell = f"print(('x' * 1023 + '\\n') * {size // 1024}, end='')"
    r = await call(client, "append_execute_code_cell", cell_source=cell)
    assert "characters" in text_of(r)  # the model sees a cut version
    assert len(jupyter.read(notebook).cells[0].outputs[0].text) == size  # the file keeps it whole


async def test_start_new_runtime_starts_a_kernel_of_its_own_and_shuts_it_down(jupyter: Jupyter, notebook: str) -> None:
    with jupyter.http() as http:
        before = {k["id"] for k in http.get("/api/kernels").json()}
    # In a sub-folder: the new kernel must run there (as JupyterLab's do), not in the server's own folder.
    (jupyter.root / "sub").mkdir(exist_ok=True)
    notebook = f"sub/{notebook}"
    session = make_session(settings_from_env(jupyter.env(notebook, START_NEW_RUNTIME="true")))
    await session.open()
    ref = await session.insert_cell(-1, "code", "import os\nprint(os.getcwd())")
    execution = await session.execute_cell(ref.index, timeout=60)
    assert execution.result.status == "ok"
    assert Path(execution.result.outputs[0]["text"].strip()).resolve() == (jupyter.root / "sub").resolve()
    kernel = session.kernel
    assert isinstance(kernel, RemoteKernel) and kernel.kernel_id not in before
    await session.close()
    with jupyter.http() as http:
        assert kernel.kernel_id not in {k["id"] for k in http.get("/api/kernels").json()}


async def test_runtime_id_runs_code_on_that_kernel(jupyter: Jupyter, notebook: str) -> None:
    with jupyter.http() as http:
        kernel_id = http.post("/api/kernels", json={}).json()["id"]
    try:
        session = make_session(settings_from_env(jupyter.env(notebook, RUNTIME_ID=kernel_id)))
        await session.open()
        ref = await session.insert_cell(-1, "code", "marker = 'set'")
        assert (await session.execute_cell(ref.index, timeout=60)).result.status == "ok"
        assert session.kernel_choice is not None and kernel_id in session.kernel_choice.argv0
        await session.close()
        with jupyter.http() as http:  # not ours to shut down
            assert kernel_id in {k["id"] for k in http.get("/api/kernels").json()}
        missing = make_session(settings_from_env(jupyter.env(notebook, RUNTIME_ID="no-such-kernel")))
        await missing.open()
        assert missing.kernel is not None
        with pytest.raises(KernelStartError, match="no kernel with id no-such-kernel"):
            await missing.kernel.ensure_started()
        await missing.close()
    finally:
        with jupyter.http() as http:
            http.delete(f"/api/kernels/{kernel_id}")


# -- errors a user can act on -----------------------------------------------------------------------


async def test_a_wrong_token_is_a_clear_error(
    jupyter: Jupyter, notebook: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = jupyter.env(notebook) | {"DOCUMENT_TOKEN": "wrong-token", "RUNTIME_TOKEN": "wrong-token"}
    server = build_server(settings_from_env(env))
    async with Client(server) as c:
        r = await c.call_tool("read_all_cells", {})
    assert r.is_error and "refused the token (HTTP 403)" in text_of(r) and "DOCUMENT_TOKEN" in text_of(r)
    # The server's token option, never nbmcp's own HTTP bearer token (--token).
    assert "--server-token" in text_of(r) and "--token" not in text_of(r)
    assert "wrong-token" not in text_of(r)
    with pytest.raises(ServerAuthError):
        await RemoteKernel(JupyterServer(jupyter.url, "wrong-token"), notebook).ensure_started()
    # Before serving, the command line says so and exits.
    for name, value in env.items():
        os.environ[name] = value
    try:
        assert cli() == 2  # a start-up error, like bad flags
    finally:
        for name in env:
            del os.environ[name]
    err = capsys.readouterr().err
    assert "refused the token" in err and "wrong-token" not in err


def test_an_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ServerUnreachableError, match=f"cannot reach the Jupyter server at {url}"):
        ContentsStore(JupyterServer(url, TOKEN), "a.ipynb").read()
    assert cli("--server-url", url, "--server-token", TOKEN, "a.ipynb") == 2
    err = capsys.readouterr().err
    assert "cannot reach" in err and TOKEN not in err


def test_a_server_that_never_answers_fails_after_the_http_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "HTTP_TIMEOUT", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ServerUnreachableError, match="Timeout"):
            ContentsStore(JupyterServer(url), "a.ipynb").read()
        assert time.monotonic() - started < 5


async def test_a_notebook_in_a_missing_folder_is_not_found(jupyter: Jupyter) -> None:
    store = ContentsStore(JupyterServer(jupyter.url, TOKEN), "no/such/folder/a.ipynb")
    with pytest.raises(NotebookNotFoundError, match="'no/such/folder' does not exist"):
        store.create_if_missing()
    with pytest.raises(NotebookNotFoundError, match="relative to the folder the server was started in"):
        store.read()
    store.close()
    server = build_server(settings_from_env(jupyter.env("no/such/folder/a.ipynb")))
    async with Client(server) as c:
        r = await c.call_tool("get_notebook_info", {})
    assert r.is_error and "not found on the Jupyter server" in text_of(r)


class _FilesOnly(BaseHTTPRequestHandler):
    """A server that answers like Jupyter but has no kernels or sessions API."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message": "Not Found"}')

    def log_message(self, *args: object) -> None:
        pass


async def test_a_server_without_the_kernels_api_is_a_clear_error() -> None:
    # A real Jupyter server always has the kernels API; this stand-in is the one that does not.
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FilesOnly)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        kernel = RemoteKernel(JupyterServer(f"http://127.0.0.1:{httpd.server_address[1]}", TOKEN), "a.ipynb")
        with pytest.raises(NoKernelsApiError, match="has no kernels API"):
            await kernel.ensure_started()
        assert kernel.error is not None and "RUNTIME_URL" in kernel.error
        await kernel.shutdown()
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- the token stays out of logs --------------------------------------------------------------------


async def test_the_token_never_appears_in_log_output(
    jupyter: Jupyter, notebook: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("", "nbmcp", "httpx2", "httpcore2", "tornado", "mcp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    server = build_server(settings_from_env(jupyter.env(notebook), log_level="DEBUG"))
    async with Client(server) as c:
        await call(c, "append_execute_code_cell", cell_source="print('logged run')")
        await call(c, "get_notebook_info")
    bad = jupyter.env(notebook) | {"DOCUMENT_TOKEN": TOKEN + "x", "RUNTIME_TOKEN": TOKEN + "x"}
    async with Client(build_server(settings_from_env(bad))) as c:
        assert (await c.call_tool("read_all_cells", {})).is_error
    text = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert "api/contents" in text and "api/kernels" in text  # the requests were logged, at DEBUG
    assert TOKEN not in text


@pytest.mark.timeout(120)
async def test_seed_env_vars_over_a_real_stdio_subprocess(jupyter: Jupyter, notebook: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONTRACEMALLOC"} | jupyter.env(notebook)
    env |= {"NBMCP_LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1", "NBMCP_STRUCTURED_OUTPUT": "1"}
    errlog = jupyter.root.parent / f"{notebook}.stderr"
    with open(errlog, "w") as err:
        params = StdioServerParameters(command=sys.executable, args=["-m", "nbmcp"], env=env)
        async with Client(stdio_client(params, errlog=err)) as c:
            r = await call(c, "append_execute_code_cell", cell_source="import os; os.getppid()")
            assert str(jupyter.proc.pid) in text_of(r)
            info = (await call(c, "get_notebook_info")).structured_content
            assert info["path"].endswith(notebook)
    assert jupyter.read(notebook).cells[0].execution_count == 1
    logs = errlog.read_text()
    assert "kernel" in logs and TOKEN not in logs
