"""A real JupyterHub on loopback (issue 25): DummyAuthenticator, SimpleLocalProcessSpawner, user servers that are
jupyter_server (jupyterhub.singleuser), and configurable-http-proxy from npm (tests/hub_proxy, `npm ci` in .ci/run).

nbmcp finds a user's server through the hub's API with a token holding only the scopes the README names,
starts it when it is stopped, and keeps working when the server is stopped and started again mid-session.
"""

from __future__ import annotations

import contextlib
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
from nbmcp.errors import HubError, UsageError
from nbmcp.jupyter.hub import HUB_SCOPES, user_server_url

from .conftest import text_of
from .test_remote import _free_port
from .test_remote_reconnect import LOST, run

pytestmark = pytest.mark.anyio

PROXY_DIR = Path(__file__).parent / "hub_proxy"
PROXY = PROXY_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
ADMIN_TOKEN = "hub-admin-7c1e9d3f5a2b4e6c"  # a service's token: it makes the users' tokens
CONFIG = """
import sys
c = get_config()
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {{"alice", "bob", "carol", "dave"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {home!r} + "/{{username}}"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--ServerApp.allow_root=True"]
c.JupyterHub.db_url = "sqlite:///" + {home!r} + "/hub.sqlite"
c.JupyterHub.cookie_secret_file = {home!r} + "/cookie_secret"
c.JupyterHub.pid_file = {home!r} + "/hub.pid"
c.JupyterHub.services = [{{"name": "admin", "api_token": {admin!r}}}]
c.JupyterHub.load_roles = [
    {{"name": "admin-svc", "scopes": ["admin:users", "tokens", "admin:servers"], "services": ["admin"]}}
]
"""


@dataclass
class Hub:
    url: str
    home: Path
    proc: subprocess.Popen[bytes]

    def api(self, method: str, path: str, **kwargs: object) -> httpx2.Response:
        headers = {"Authorization": f"token {ADMIN_TOKEN}"}
        return httpx2.request(method, f"{self.url}/hub/api/{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def token(self, user: str, scopes: str) -> str:
        """A new API token of `user` holding exactly `scopes` (NAME: the user)."""
        wanted = [s.strip().replace("NAME", user) for s in scopes.replace(" (to start it)", "").split(",")]
        r = self.api("POST", f"users/{user}/tokens", json={"scopes": wanted})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def running(self, user: str) -> bool:
        server = self.api("GET", f"users/{user}").json()["servers"].get("")
        return bool(server and server["ready"])

    def stop_server(self, user: str) -> None:
        self.api("DELETE", f"users/{user}/server")
        self.wait(user, running=False)

    def start_server(self, user: str) -> None:
        self.api("POST", f"users/{user}/server")
        self.wait(user, running=True)

    def wait(self, user: str, *, running: bool) -> None:
        deadline = time.monotonic() + 60
        while self.running(user) != running:
            assert time.monotonic() < deadline, (self.home / "hub.log").read_text()[-3000:]
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()  # the hub stops the proxy it started; user servers stop with it (cleanup_servers)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    if not PROXY.exists():  # .ci/run does this beforehand; npm's cache goes beside node_modules, not into ~/.npm
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--cache", str(PROXY_DIR / ".npm-cache")],
            cwd=PROXY_DIR,
            check=True,
            capture_output=True,
            timeout=600,
        )
    home = tmp_path_factory.mktemp("hub")
    for user in ("alice", "bob", "carol", "dave"):
        (home / user).mkdir()
    port = _free_port()
    config = CONFIG.format(
        port=port, hub_port=_free_port(), proxy_port=_free_port(), proxy=str(PROXY), home=str(home), admin=ADMIN_TOKEN
    )
    (home / "config.py").write_text(config)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONTRACEMALLOC"}
    env |= {"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    with open(home / "hub.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(home / "config.py")],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=home,
        )
    h = Hub(f"http://127.0.0.1:{port}", home, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx2.TransportError):
                if h.api("GET", "users/alice").status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterHub did not start: {(home / 'hub.log').read_text()}")
            time.sleep(0.2)
        yield h
    finally:
        h.stop()


@pytest.mark.timeout(240)
async def test_a_stopped_user_server_is_started_then_edited_and_run_through_and_survives_a_restart(
    hub: Hub, tmp_path: Path
) -> None:
    assert not hub.running("alice")
    token = hub.token("alice", HUB_SCOPES)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONTRACEMALLOC"}
    env |= {"JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_USER": "alice"}
    args = ["-m", "nbmcp", "--jupyterhub", hub.url, "work.ipynb", "--structured-output"]
    errlog = tmp_path / "stderr.log"
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(tmp_path))
    with open(errlog, "w") as err:
        async with Client(stdio_client(params, errlog=err)) as c:
            assert hub.running("alice")  # nbmcp started it
            r = await c.call_tool(
                "insert_cell", {"cell_index": 0, "cell_type": "markdown", "cell_source": "# On the hub"}
            )
            assert not r.is_error, text_of(r)
            out = await run(c, "import os\nx = 41\nprint(os.getcwd())")
            assert out.strip().splitlines()[-1] == str(hub.home / "alice"), out  # the kernel in the notebook's folder
            r = await c.call_tool("append_execute_code_cell", {"cell_source": "print(x + 1)"})
            assert "42" in text_of(r), text_of(r)
            # Stopped mid-session (culled, or by the person) and started again: the next run works on a new kernel.
            hub.stop_server("alice")
            hub.start_server("alice")
            out = await run(c, "print('x' in globals())\ny = 1")
            assert "False" in out and LOST in out, out
            # Stopped and left stopped: nbmcp starts it again itself (--jupyterhub), for an edit and for code.
            hub.stop_server("alice")
            r = await c.call_tool("insert_cell", {"cell_index": 1, "cell_type": "markdown", "cell_source": "Again"})
            assert not r.is_error, text_of(r)
            out = await run(c, "print('y' in globals())")
            assert "False" in out and LOST in out, out
            info = text_of(await c.call_tool("get_notebook_info", {}))
            assert f"{hub.url}/user/alice" in info and token not in info + out, info
    nb = nbformat.read(hub.home / "alice" / "work.ipynb", as_version=4)  # the file on alice's server
    assert [cell.source for cell in nb.cells] == ["# On the hub", "Again", "print(x + 1)"]
    assert nb.cells[2].outputs[0]["text"] == "42\n"
    log = errlog.read_text()
    assert "alice's server on the hub at" in log and "was stopped; starting it again" in log, log
    assert "alice's server on the hub at" in log and "starting it" in log, log
    assert "alice's server: Server ready at /user/alice/" in log, log  # the hub's progress, on stderr
    assert token not in log and ADMIN_TOKEN not in log


def test_hub_mistakes_and_a_slow_start_are_one_line_naming_the_fix(
    hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    def start_up_error(*args: str, token: str) -> str:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("JUPYTERHUB_API_TOKEN", token)
            assert cli("--jupyterhub", hub.url, *args, "a.ipynb") == 2
        err = capsys.readouterr().err.strip()
        assert token not in err and err.splitlines()[-1].startswith("nbmcp: error: "), err
        return err.splitlines()[-1]

    token = hub.token("bob", HUB_SCOPES)
    assert "no user 'nobody'" in start_up_error("--user", "nobody", token=token)
    assert "refused the token (HTTP 403)" in start_up_error("--user", "bob", token="wrong-" + token)
    assert "JUPYTERHUB_API_TOKEN" in start_up_error("--user", "bob", token="wrong-" + token)
    narrow = hub.token("bob", "read:users:name!user=NAME")
    assert "needs the scope read:servers!user=bob" in start_up_error("--user", "bob", token=narrow)
    no_start = hub.token("bob", "read:servers!user=NAME, access:servers!user=NAME")
    assert "needs the scope servers!user=bob" in start_up_error("--user", "bob", token=no_start)
    assert not hub.running("bob")
    # A server slower to start than the time nbmcp waits (START_TIMEOUT; the hub's own limit comes first).
    token = hub.token("carol", HUB_SCOPES)
    t0 = time.monotonic()
    with pytest.raises(HubError, match=r"carol's server on the hub at .* did not start within 0.01 s"):
        user_server_url(hub.url, "carol", token, timeout=0.01)
    assert time.monotonic() - t0 < 2
    hub.wait("carol", running=True)  # it went on starting; asked again, nbmcp finds it running
    assert user_server_url(hub.url, "carol", token, timeout=5) == f"{hub.url}/user/carol/"


def test_doctor_looks_the_server_up_on_the_hub_and_never_starts_it(
    hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    token = hub.token("dave", HUB_SCOPES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTERHUB_API_TOKEN", token)
        assert doctor_cli("--jupyterhub", hub.url, "--user", "dave", "--read-only", "a.ipynb") == 0
        out = capsys.readouterr().out
        assert "dave's server on " + hub.url + " is stopped (nbmcp starts it; a check does not)" in out, out
        assert not hub.running("dave")
        hub.start_server("dave")
        assert doctor_cli("--jupyterhub", hub.url, "--user", "dave", "--read-only", "a.ipynb") == 0
        out = capsys.readouterr().out
    assert f"dave's server runs at {hub.url}/user/dave" in out and "FAIL" not in out, out
    assert token not in out
    hub.stop_server("dave")


def test_hub_settings() -> None:
    s = settings_from_env({"JUPYTERHUB_URL": "http://hub:8000/hub/", "JUPYTERHUB_USER": "ada"}, path="a.ipynb")
    assert (s.hub_url, s.hub_user, s.document_url, s.runtime_url) == (
        "http://hub:8000",
        "ada",
        "http://hub:8000/user/ada",
        "http://hub:8000/user/ada",
    )
    env = {"JUPYTERHUB_API_TOKEN": "tok-hub-51e0"}
    s = settings_from_env(env, jupyterhub="https://hub/jhub", hub_user="ada", path="a.ipynb")
    assert s.document_url == "https://hub/jhub/user/ada"
    assert s.document_token == s.runtime_token == "tok-hub-51e0" and "tok-hub-51e0" not in repr(s)
    with pytest.raises(UsageError, match="--user NAME"):
        settings_from_env({}, jupyterhub="http://hub", path="a.ipynb")
    with pytest.raises(UsageError, match="give the hub too"):
        settings_from_env({}, hub_user="ada", path="a.ipynb")
    with pytest.raises(UsageError, match="give only one"):
        settings_from_env({"DOCUMENT_URL": "http://h:1"}, jupyterhub="http://hub", hub_user="ada")
    # Inside a hub's user server JUPYTERHUB_USER and JUPYTERHUB_API_TOKEN are set: they change nothing alone.
    assert settings_from_env({"JUPYTERHUB_USER": "ada", "JUPYTERHUB_API_TOKEN": "t"}).hub_url is None
