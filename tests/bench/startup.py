"""Benchmark: spawn to the answers of `initialize` and `tools/list`, nbmcp against an empty server (issue 23).

    python -m tests.bench.startup [--repeat 10]

Clients give a new stdio server little time: `codex exec` about 1 s before its first model request
(a server that has not listed its tools by then is missing for the whole turn), Claude Code about
2.9 s for its first probe. Each round spawns the real command, writes `initialize`, then
`notifications/initialized` and `tools/list` as a client does, and times the two answers from the
spawn, over raw JSON-RPC lines (no client library in the measured path). The floor is the same
exchange with `tests.bench.floor_server`, an empty server on the same SDK and interpreter. Rounds
alternate between the two so that load from other processes hits both alike; the median of the rounds'
differences and the CPU time each start used (Linux) are printed too, both less moved by that load.
The numbers are printed, not asserted: the target is the floor + 100 ms for both answers.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import nbformat

import nbmcp

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"},
    },
}


def _send(stdin: IO[bytes], message: dict[str, Any]) -> None:
    stdin.write((json.dumps(message) + "\n").encode())
    stdin.flush()


def _answer(stdout: IO[bytes], request_id: int) -> None:
    while True:
        line = stdout.readline()
        if not line:
            raise RuntimeError("the server closed stdout before answering")
        if json.loads(line).get("id") == request_id:
            return


def _cpu_seconds(pid: int) -> float:
    """CPU time the process's threads have used so far (Linux's schedstat, in ns); NaN elsewhere."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that ended meanwhile
            continue
    return total / 1e9 if total else float("nan")


def one_start(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Seconds from spawn to the `initialize` answer and to the `tools/list` answer, and CPU seconds until then."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        _send(proc.stdin, INITIALIZE)
        _answer(proc.stdout, 1)
        initialized = time.perf_counter() - started
        _send(proc.stdin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        _send(proc.stdin, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        _answer(proc.stdout, 2)
        listed = time.perf_counter() - started
        cpu = _cpu_seconds(proc.pid)
    finally:
        proc.stdin.close()  # nbmcp ends when the client closes stdin (and shuts its kernel down)
        proc.wait(timeout=60)
    return initialized, listed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat",
        type=int,
        default=10,
        help="starts of each server (default: %(default)s)",
    )
    ns = parser.parse_args()
    # An installed nbmcp runs from bytecode (pip writes it at install, Python at the first start). With
    # PYTHONDONTWRITEBYTECODE set, as in some shells and CI images, a checkout's ~60 modules would be
    # compiled from source at every start (about 40 ms): write their bytecode once, before measuring.
    for package in (Path(nbmcp.__file__).parent, Path(__file__).parent):
        compileall.compile_dir(package, quiet=1)
    with tempfile.TemporaryDirectory(prefix="nbmcp-bench-startup-") as tmp:
        notebook = Path(tmp) / "start.ipynb"
        nbformat.write(
            nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]),
            notebook,
        )
        env = {
            **os.environ,
            "NBMCP_STATE_DIR": str(Path(tmp) / "state"),
            "IPYTHONDIR": str(Path(tmp) / "ipython"),
        }
        commands = {
            "floor (empty SDK server)": [
                sys.executable,
                "-m",
                "tests.bench.floor_server",
            ],
            "nbmcp": [sys.executable, "-m", "nbmcp", str(notebook)],
        }
        times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
        one_start(commands["nbmcp"], env)  # warm the file cache and the bytecode of both
        one_start(commands["floor (empty SDK server)"], env)
        for _ in range(ns.repeat):
            for name, command in commands.items():
                times[name].append(one_start(command, env))
    print(f"spawn to answer, ms (median of {ns.repeat}; min to max)")
    medians: dict[str, tuple[float, float]] = {}
    for name, rounds in times.items():
        init = [t[0] * 1000 for t in rounds]
        listed = [t[1] * 1000 for t in rounds]
        medians[name] = (statistics.median(init), statistics.median(listed))
        print(
            f"  {name:26s} initialize {medians[name][0]:6.0f} ({min(init):.0f} to {max(init):.0f})"
            f"   tools/list {medians[name][1]:6.0f} ({min(listed):.0f} to {max(listed):.0f})"
        )
    floor, ours = medians["floor (empty SDK server)"], medians["nbmcp"]
    print(f"  nbmcp over the floor: initialize {ours[0] - floor[0]:+.0f} ms, tools/list {ours[1] - floor[1]:+.0f} ms")
    # Each round starts the floor, then nbmcp: the median of the rounds' differences is less moved by
    # other processes' load than the difference of the medians (a shared machine's load changes by the second).
    pairs = list(zip(times["floor (empty SDK server)"], times["nbmcp"], strict=True))
    paired = [statistics.median((n[i] - f[i]) * 1000 for f, n in pairs) for i in (0, 1)]
    print(f"  median of the rounds' differences: initialize {paired[0]:+.0f} ms, tools/list {paired[1]:+.0f} ms")
    # CPU time is what a start costs an idle machine; other processes' load moves it less than the wall clock.
    cpu = {name: statistics.median(t[2] * 1000 for t in rounds) for name, rounds in times.items()}
    floor_cpu, our_cpu = cpu["floor (empty SDK server)"], cpu["nbmcp"]
    print(
        f"  CPU time to tools/list (all threads): floor {floor_cpu:.0f}, nbmcp {our_cpu:.0f} ms"
        f" ({our_cpu - floor_cpu:+.0f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
