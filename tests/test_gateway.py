"""Kernels from a real Kernel Gateway on loopback, with its default settings (issue 25): no sessions API,
no kernel listing. The notebook stays local; each kernel nbmcp starts there is deleted when it is done."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import nbformat
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from nbmcp.cli.doctor import doctor_cli
from nbmcp.cli.main import cli
from nbmcp.config import settings_from_env
from nbmcp.errors import KernelStartError, ServerAuthError, UsageError
from nbmcp.jupyter.client import JupyterServer
from nbmcp.kernels.gateway import GatewayKernel
from nbmcp.server.app import build_server

from .conftest import text_of
from .test_remote import TOKEN, _free_port
from .test_remote_reconnect import Relay

pytestmark = pytest.mark.anyio

ENV_CELL = "import os, json\nprint(json.dumps({k: v for k, v in os.environ.items() if k.startswith('KERNEL_')}))"


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen[bytes]

    def kernel_exists(self, kernel_id: str, token: str = "") -> bool:
        """GET /api/kernels/<id> (the listing is forbidden on a gateway's default settings)."""
        headers = {"Authorization": f"token {token}"} if token else {}
        return httpx2.get(f"{self.url}/api/kernels/{kernel_id}", headers=headers, timeout=10).status_code == 200

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def launch_gateway(home: Path, *options: str) -> Gateway:
    """A real `jupyter kernelgateway` on a free loopback port (its default settings plus `options`)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONTRACEMALLOC"}
    env |= {"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    with open(home / f"gateway-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel_gateway", "--ip=127.0.0.1", f"--port={port}", *options],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=home,
        )
    gw = Gateway(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx2.TransportError):
            if httpx2.get(f"{gw.url}/api", timeout=5).status_code in (200, 401):  # 401: it has a token
                return gw
        if proc.poll() is not None or time.monotonic() > deadline:
            gw.stop()
            raise RuntimeError(f"the kernel gateway did not start: {(home / f'gateway-{port}.log').read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = launch_gateway(tmp_path_factory.mktemp("gateway-home"))
    try:
        # The subject: a gateway's defaults refuse the sessions API and the kernel listing.
        assert httpx2.get(f"{gw.url}/api/sessions").status_code == 403
        assert httpx2.get(f"{gw.url}/api/kernels").status_code == 403
        yield gw
    finally:
        gw.stop()


def kernel_id_of(info: dict[str, object]) -> str:
    interpreter = str(info["kernel"]["interpreter"])  # type: ignore[index]
    return interpreter.split()[1]  # "kernel <id> on the gateway <url>"


async def test_a_local_notebook_runs_on_gateway_kernels_twice_in_a_row_and_none_is_left(
    gateway: Gateway, tmp_path: Path
) -> None:
    nb = tmp_path / "project" / "analysis.ipynb"
    nb.parent.mkdir()
    options = {
        "gateway_url": gateway.url,
        "kernel_env": ["KERNEL_NAMESPACE=team"],
        "timeout": 60,
        "structured_output": True,
    }
    for run in (1, 2):
        async with Client(build_server(settings_from_env({}, path=str(nb), **options))) as c:
            r = await c.call_tool("append_execute_code_cell", {"cell_source": ENV_CELL})
            assert not r.is_error, text_of(r)
            info = (await c.call_tool("get_notebook_info", {})).structured_content
            assert info is not None and info["kernel"]["chosen_by"] == "--gateway"
            kernel_id = kernel_id_of(info)
            assert gateway.kernel_exists(kernel_id)
        env = json.loads(text_of(r).strip().splitlines()[-1])
        assert env["KERNEL_WORKING_DIR"] == str(nb.parent), env
        assert env["KERNEL_USERNAME"] == getpass.getuser() and env["KERNEL_NAMESPACE"] == "team", env
        assert not gateway.kernel_exists(kernel_id), f"run {run} left kernel {kernel_id} on the gateway"
    # The notebook stayed here, with both runs' cells.
    assert [c.source for c in nbformat.read(nb, as_version=4).cells] == [ENV_CELL, ENV_CELL]


async def test_two_projects_with_notebooks_of_the_same_name_each_get_their_own_kernel(
    gateway: Gateway, tmp_path: Path
) -> None:
    # Sessions matched on the file name once sent the second project to the first one's session (HTTP 500).
    options = {"gateway_url": gateway.url, "timeout": 60, "structured_output": True}
    notebooks = [tmp_path / project / "analysis.ipynb" for project in ("sales", "churn")]
    for nb in notebooks:
        nb.parent.mkdir()
    async with (
        Client(build_server(settings_from_env({}, path=str(notebooks[0]), **options))) as a,
        Client(build_server(settings_from_env({}, path=str(notebooks[1]), **options))) as b,
    ):
        answers = [await c.call_tool("append_execute_code_cell", {"cell_source": ENV_CELL}) for c in (a, b)]
        infos = [(await c.call_tool("get_notebook_info", {})).structured_content for c in (a, b)]
    dirs = [json.loads(text_of(r).strip().splitlines()[-1])["KERNEL_WORKING_DIR"] for r in answers]
    assert dirs == [str(nb.parent) for nb in notebooks]
    kernels = [kernel_id_of(info) for info in infos if info is not None]
    assert len(set(kernels)) == 2 and not any(gateway.kernel_exists(k) for k in kernels)


@pytest.mark.timeout(120)
async def test_the_kernel_is_deleted_when_the_nbmcp_process_exits(gateway: Gateway, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONTRACEMALLOC"}
    nb = tmp_path / "exit.ipynb"
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "nbmcp", str(nb), "--gateway", gateway.url, "--structured-output"], env=env
    )
    with open(tmp_path / "stderr.log", "w") as err:
        async with Client(stdio_client(params, errlog=err)) as c:
            r = await c.call_tool("execute_code", {"code": "print('on the gateway')"})
            assert "on the gateway" in text_of(r), text_of(r)
            info = (await c.call_tool("get_notebook_info", {})).structured_content
            assert info is not None
            kernel_id = kernel_id_of(info)
    assert not gateway.kernel_exists(kernel_id), (tmp_path / "stderr.log").read_text()


async def test_a_failed_start_leaves_no_kernel_on_the_gateway(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbmcp")
    # Too short a wait for the kernel to answer: the start fails after the gateway created the kernel.
    kernel = GatewayKernel(JupyterServer(gateway.url), "a.ipynb", env={}, start_timeout=0.001)
    with pytest.raises(KernelStartError, match="did not answer"):
        await kernel.ensure_started()
    await kernel.shutdown()
    deleted = [r.args[0] for r in caplog.records if r.getMessage().startswith("deleted kernel")]
    assert len(deleted) == 1 and not gateway.kernel_exists(str(deleted[0]))


def test_doctor_checks_a_gateway_with_a_gateways_endpoints(
    gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert doctor_cli(str(tmp_path / "a.ipynb"), "--gateway", gateway.url) == 0
    out = capsys.readouterr().out
    assert "[ ok ] gateway reachable" in out and "[ ok ] kernel run" in out and "deleted afterwards" in out, out
    assert "/api/status" not in out and "FAIL" not in out, out


def test_gateway_options_are_checked(gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="--kernel-env 'KERNEL_X': expected NAME=VALUE"):
        settings_from_env({}, gateway_url=gateway.url, kernel_env=["KERNEL_X"])
    with pytest.raises(UsageError, match="needs --gateway"):
        settings_from_env({}, kernel_env=["KERNEL_X=1"])
    with pytest.raises(UsageError, match="unset RUNTIME_URL"):
        settings_from_env({"RUNTIME_URL": "http://h:1"}, gateway_url=gateway.url)
    # --server-url keeps the notebook on a Jupyter server; code runs on the gateway.
    s = settings_from_env({}, path="a.ipynb", server_url="http://h:1", gateway_url=gateway.url)
    assert s.document_url == "http://h:1" and s.runtime_url is None
    # Not a gateway at that address: one line and exit 2 before serving.
    assert cli(str(tmp_path / "a.ipynb"), "--gateway", f"{gateway.url}/lab") == 2
    assert f"give {gateway.url}" in capsys.readouterr().err


async def test_a_gateway_token_is_used_and_a_refused_one_names_its_option(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("", "nbmcp", "httpx2", "httpcore2", "tornado", "mcp"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    gw = launch_gateway(tmp_path, f"--KernelGatewayApp.auth_token={TOKEN}")
    try:
        nb = str(tmp_path / "token.ipynb")
        right = settings_from_env({"JUPYTER_GATEWAY_AUTH_TOKEN": TOKEN}, path=nb, gateway_url=gw.url, timeout=60)
        async with Client(build_server(right)) as c:
            r = await c.call_tool("execute_code", {"code": "print('with the token')"})
            assert not r.is_error and "with the token" in text_of(r), text_of(r)
        wrong = settings_from_env({}, path=nb, gateway_url=gw.url, gateway_token="wrong-token")
        async with Client(build_server(wrong)) as c:
            r = await c.call_tool("execute_code", {"code": "1"})
        assert r.is_error and "refused the token" in text_of(r) and "--gateway-token" in text_of(r), text_of(r)
        assert "wrong-token" not in text_of(r)
        # Before serving, and in doctor: the same option named, the token never printed.
        assert cli(nb, "--gateway", gw.url, "--gateway-token", "wrong-token") == 2
        err = capsys.readouterr().err
        assert "--gateway-token" in err and "wrong-token" not in err, err
        assert doctor_cli(nb, "--gateway", gw.url, "--gateway-token", "wrong-token") == 1
        out = capsys.readouterr().out
        assert "[FAIL] gateway token" in out and "wrong-token" not in out, out
        kernel = GatewayKernel(JupyterServer(gw.url, "wrong-token"), "a.ipynb", env={})
        with pytest.raises(ServerAuthError):
            await kernel.ensure_started()
        await kernel.shutdown()
    finally:
        gw.stop()
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert "api/kernels" in logged and TOKEN not in logged and "wrong-token" not in logged


async def test_the_seed_variables_with_a_gateway_use_its_kernels_api_alone(gateway: Gateway, tmp_path: Path) -> None:
    nb = str(tmp_path / "seed.ipynb")
    env = {"RUNTIME_URL": gateway.url, "START_NEW_RUNTIME": "true"}
    async with Client(build_server(settings_from_env(env, path=nb, timeout=60, structured_output=True))) as c:
        r = await c.call_tool("execute_code", {"code": "print(6 * 7)"})
        assert not r.is_error and "42" in text_of(r), text_of(r)
        info = (await c.call_tool("get_notebook_info", {})).structured_content
        assert info is not None
        kernel_id = kernel_id_of(info)
    assert not gateway.kernel_exists(kernel_id)
    # Without START_NEW_RUNTIME: the gateway refuses the sessions API, which tells nbmcp what it is.
    settings = settings_from_env({"RUNTIME_URL": gateway.url}, path=nb, timeout=60, structured_output=True)
    async with Client(build_server(settings)) as c:
        r = await c.call_tool("execute_code", {"code": "print(6 * 7)"})
        assert not r.is_error and "42" in text_of(r), text_of(r)
        info = (await c.call_tool("get_notebook_info", {})).structured_content
        assert info is not None
        kernel_id = kernel_id_of(info)
        assert gateway.kernel_exists(kernel_id)
    assert not gateway.kernel_exists(kernel_id)


def test_doctor_checks_the_seed_variables_pointing_at_a_gateway(
    gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_URL", gateway.url)
    assert doctor_cli(str(tmp_path / "a.ipynb")) == 0
    out = capsys.readouterr().out
    assert "[ ok ] kernels API" in out and "a kernel of its own there" in out and "/api/status" not in out, out
    monkeypatch.setenv("START_NEW_RUNTIME", "true")
    assert doctor_cli(str(tmp_path / "a.ipynb")) == 0
    out = capsys.readouterr().out
    assert "[ ok ] runtime server token" in out and "[ ok ] kernel run" in out, out


async def test_a_dropped_gateway_websocket_reconnects_to_the_same_kernel(gateway: Gateway, tmp_path: Path) -> None:
    relay = Relay(int(gateway.url.rsplit(":", 1)[1]))
    try:
        settings = settings_from_env(
            {}, path=str(tmp_path / "drop.ipynb"), gateway_url=f"http://127.0.0.1:{relay.port}"
        )
        async with Client(build_server(settings)) as c:
            r = await c.call_tool("execute_code", {"code": "x = 41"})
            assert not r.is_error, text_of(r)
            relay.cut()
            r = await c.call_tool("execute_code", {"code": "print(x + 1)"})
            assert not r.is_error and "42" in text_of(r) and "gone" not in text_of(r), text_of(r)
    finally:
        relay.close()
