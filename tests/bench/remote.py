"""Benchmark: execute and edit latency with the notebook and kernel on a Jupyter server, beside local (issue 25).

    python -m tests.bench.remote [--repeat 40]

Starts a real `jupyter server` on a loopback port (token auth, as tests/test_remote.py does), then
times, through the official MCP client (in memory), `execute_code` of `1+1` and
`overwrite_cell_source` on a 10-cell notebook: once on a local file with a local kernel, once on the
server (Contents API and the server's kernel over its websocket). The rounds alternate between the
two so that load from other processes hits both alike. Prints milliseconds; nothing is asserted. The
requests an edit makes are counted by tests/test_remote_round_trips.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import nbformat
from mcp import Client

from nbmcp.config import Settings, settings_from_env
from nbmcp.server.app import build_server
from tests.test_remote import launch_jupyter


def _notebook(path: Path) -> None:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x{i} = {i}") for i in range(10)]), path)


async def _time(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    result = await call()
    if getattr(result, "is_error", False):
        raise RuntimeError(f"the call failed: {result}")
    return time.perf_counter() - started


async def measure(local: Settings, remote: Settings, repeat: int) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {"local": {}, "remote": {}}
    async with Client(build_server(local)) as lc, Client(build_server(remote)) as rc:
        clients = {"local": lc, "remote": rc}
        for client in clients.values():
            await client.call_tool("execute_code", {"code": "1"})  # the kernel started and warm
        for i in range(repeat):
            for where, client in clients.items():
                calls = {
                    "execute_code 1+1": lambda c=client: c.call_tool("execute_code", {"code": "1+1"}),
                    "overwrite_cell_source": lambda c=client, i=i: c.call_tool(
                        "overwrite_cell_source", {"cell_index": 0, "cell_source": f"x0 = {i}"}
                    ),
                }
                for name, call in calls.items():
                    times[where].setdefault(name, []).append(await _time(call))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40, help="calls of each tool on each side (default: %(default)s)")
    ns = parser.parse_args()
    for noisy in ("httpx", "httpx2"):  # a line per request on stderr otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="nbmcp-bench-remote-") as tmp:
        base = Path(tmp)
        for folder in ("root", "home", "local", "state", "locks", "ipython"):
            (base / folder).mkdir()
        os.environ |= {
            "NBMCP_STATE_DIR": str(base / "state"),
            "NBMCP_LOCK_DIR": str(base / "locks"),
            "IPYTHONDIR": str(base / "ipython"),
        }
        _notebook(base / "root" / "remote.ipynb")
        _notebook(base / "local" / "local.ipynb")
        server = launch_jupyter(base / "root", base / "home")
        try:
            local = Settings(path=base / "local" / "local.ipynb", timeout=60, watch=False)
            remote = settings_from_env(server.env("remote.ipynb"), timeout=60)
            times = anyio.run(measure, local, remote, ns.repeat)
        finally:
            server.stop()
    print(f"ms, median (p90) of {ns.repeat} calls, local and on a Jupyter server on loopback, alternated")
    for name in times["local"]:
        row = []
        for where in ("local", "remote"):
            values = sorted(t * 1000 for t in times[where][name])
            row.append(f"{where} {statistics.median(values):6.1f} ({values[int(len(values) * 0.9) - 1]:.1f})")
        ratio = statistics.median(times["remote"][name]) / statistics.median(times["local"][name])
        print(f"  {name:24s} {'   '.join(row)}   remote/local {ratio:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
