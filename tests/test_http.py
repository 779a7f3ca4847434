"""Streamable HTTP against a real `nbmcp` server process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from nbmcp.server.http import MAX_REQUEST_BODY_BYTES
from nbmcp.web import MAX_CONNECTIONS, REQUEST_TIMEOUT, is_loopback

from .conftest import child_pids, isolated_env, read_nb, text_of

TOKEN = "s3cret-token-for-tests-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, path: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.path = path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = path.parent.parent / f"server-{self.port}.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "nbmcp", str(path)),
                *("--transport", "streamable-http", "--port", str(self.port), "--log-level", "DEBUG"),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
        )
        # Generous: on a loaded 2-core machine importing nbmcp alone has taken 30 s.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"server exited: {self.log()}")
            try:
                if httpx2.get(f"{self.url}/api/healthz", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                time.sleep(0.1)
        self.stop()  # leave no process behind (its ResourceWarning would fail a later test)
        raise AssertionError(f"server did not start: {self.log()}")

    def log(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("server ignored SIGTERM") from None
        self._stderr.close()
        return self.proc.returncode


def _shared(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("http-server")
    (base / "work").mkdir()
    s = ServerProcess(base / "work" / "notebook.ipynb", *extra, env=isolated_env(base))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module's tests of the HTTP front (hosts, origins, limits, timeouts): each starts a kernel."""
    yield from _shared(tmp_path_factory)


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with --token for the module's tests (they add no cell to its notebook)."""
    yield from _shared(tmp_path_factory, "--token", TOKEN)


def post_initialize(url: str, **headers: str) -> httpx2.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    return httpx2.post(f"{url}/mcp", json=body, headers={**base, **headers}, timeout=10)


@pytest.mark.anyio
async def test_tool_calls_over_streamable_http(server: ServerProcess) -> None:
    async with Client(f"{server.url}/mcp") as client:
        r = await client.call_tool("append_execute_code_cell", {"cell_source": "print('over http'); 2 ** 10"})
        assert not r.is_error and "over http" in text_of(r) and "1024" in text_of(r)
    assert read_nb(server.path).cells[-1].outputs[-1].data["text/plain"] == "1024"


@pytest.mark.anyio
async def test_legacy_handshake_client_over_streamable_http(server: ServerProcess) -> None:
    async with Client(f"{server.url}/mcp", mode="legacy") as client:
        r = await client.call_tool("append_markdown_cell", {"cell_source": "# legacy"})
        assert not r.is_error


def test_healthz_reports_status_version_and_notebook_without_secrets(token_server: ServerProcess) -> None:
    # Without the token: only the status (issue 13: the paths were anyone's to read).
    r = httpx2.get(f"{token_server.url}/api/healthz", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx2.get(f"{token_server.url}/api/healthz", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.json() == {"status": "ok"}
    r = httpx2.get(f"{token_server.url}/api/healthz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["version"]
    (notebook,) = body["notebooks"]
    assert notebook["path"].endswith("notebook.ipynb") and notebook["cells"] == 0
    assert notebook["kernel"] in {"starting", "idle"}
    assert TOKEN not in r.text


def test_bad_host_header_gets_421(server: ServerProcess) -> None:
    assert post_initialize(server.url, Host="evil.example").status_code == 421
    assert post_initialize(server.url, Host=f"127.0.0.1:{server.port}").status_code == 200


def test_healthz_gets_the_host_and_origin_checks(server: ServerProcess) -> None:
    # A DNS-rebinding page reaches us under its own name: it must not read the folder and notebook paths.
    r = httpx2.get(f"{server.url}/api/healthz", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 421 and "notebook" not in r.text
    r = httpx2.get(f"{server.url}/api/healthz", headers={"Origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 403 and "notebook" not in r.text
    r = httpx2.get(f"{server.url}/api/healthz", headers={"Origin": f"http://localhost:{server.port}"}, timeout=10)
    assert r.status_code == 200 and r.json()["notebooks"]


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_an_incomplete_request_is_timed_out(server: ServerProcess) -> None:
    address = ("127.0.0.1", server.port)
    with socket.create_connection(address) as headers, socket.create_connection(address) as body:
        # Both at once, so the test waits one REQUEST_TIMEOUT, not two.
        headers.sendall(b"GET /api/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the headers never end
        # A body announced but never sent is a stalled request too.
        body.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        assert _closed_by_server(headers, REQUEST_TIMEOUT + 10), "the half-open connection was kept"
        assert time.monotonic() - started >= REQUEST_TIMEOUT - 1
        assert _closed_by_server(body, 10)


def test_connections_beyond_the_cap_are_closed_at_once_and_the_server_recovers(server: ServerProcess) -> None:
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_CONNECTIONS + 20)]
    try:
        # The newest ones are over the cap: closed as soon as accepted, not held until a timeout.
        assert sum(_closed_by_server(s, 2.0) for s in socks[-10:]) == 10
        assert not _closed_by_server(socks[0], 0.1)
    finally:
        for s in socks:
            s.close()
    assert httpx2.get(f"{server.url}/api/healthz", timeout=10).status_code == 200


def test_bad_origin_gets_403(server: ServerProcess) -> None:
    assert post_initialize(server.url, Origin="http://evil.example").status_code == 403
    assert post_initialize(server.url, Origin=f"http://localhost:{server.port}").status_code == 200


def test_token_is_required_on_every_mcp_request_and_never_logged(token_server: ServerProcess) -> None:
    url = token_server.url
    assert post_initialize(url).status_code == 401
    assert post_initialize(url, Authorization="Bearer wrong-token").status_code == 401
    assert post_initialize(url, Authorization=f"Basic {TOKEN}").status_code == 401
    ok = post_initialize(url, Authorization=f"Bearer {TOKEN}")
    assert ok.status_code == 200
    assert TOKEN not in token_server.log()


@pytest.mark.anyio
async def test_official_client_with_the_token(token_server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{token_server.url}/mcp", http_client=http)) as client,
    ):
        r = await client.call_tool("get_notebook_info", {})
        assert not r.is_error
    assert TOKEN not in token_server.log()


def test_oversized_request_body_gets_413(server: ServerProcess) -> None:
    big = b"x" * (MAX_REQUEST_BODY_BYTES + 1)
    r = httpx2.post(
        f"{server.url}/mcp",
        content=big,
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
        timeout=30,
    )
    assert r.status_code == 413


def test_non_loopback_bind_refuses_to_start_without_a_token(nb_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NBMCP_TOKEN"}
    proc = subprocess.run(
        [sys.executable, "-m", "nbmcp", str(nb_path), "--transport", "streamable-http", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 2
    assert "refusing to start without a bearer token" in proc.stderr
    assert not nb_path.exists()  # it stopped before touching anything


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.com")


@pytest.mark.anyio
async def test_sigterm_shuts_the_kernel_down(nb_path: Path) -> None:
    s = ServerProcess(nb_path)
    try:
        async with Client(f"{s.url}/mcp") as client:
            r = await client.call_tool("append_execute_code_cell", {"cell_source": "import os; os.getpid()"})
            kernel_pid = int(text_of(r).split()[-1])
        assert kernel_pid in child_pids(s.proc.pid)
    finally:
        code = s.stop()
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM), s.log()
    assert "Application shutdown complete" in s.log()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{kernel_pid}"):
        time.sleep(0.1)
    status = Path(f"/proc/{kernel_pid}/status")
    assert not status.exists() or "zombie" in status.read_text(), "the kernel outlived the server"
