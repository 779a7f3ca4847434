"""Benchmarks: a real `nbmcp` process over stdio, measured against the floor of what it does (issues 8, 14).

    python -m tests.bench.run [--sizes 10,100,1000,10000] [--json bench-results.json]
    python3 tests/run.py -e bench

For each notebook size it spawns `python -m nbmcp NOTEBOOK` with the official MCP client, and measures
cold start (spawn to the `initialize` answer, to the first tool answer, and to kernel ready), the
median and p90 latency of each tool, executions of `1+1` and of a cell printing 1 MB, a reload after
another program changed the file, and the server's memory (VmRSS and its peak, VmHWM, of the nbmcp
process from /proc; the kernel is a separate process and is not counted). In the same run it measures
the floors: an empty tool's round trip on a server built on the same SDK and transport
(`tests/bench/floor_server.py`), the same server replaying a read tool's exact answer, an atomic write
(fsync, rename) of the same notebook (and nbformat's serialization of it, for comparison), a raw
jupyter_client execute, `json.loads` of the same bytes, and spawning a Python that imports the MCP SDK.
It prints a table with each tool's ratio to its floor and writes everything to a JSON file.

Environment: BENCH_EXTRA adds arguments to the nbmcp command (e.g. `--no-watch`); BENCH_LOG_LEVEL sets
the server's log level (default WARNING).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from mcp import Client, StdioServerParameters
from nbformat import NotebookNode

from nbmcp.kernels.outputs import output_text
from nbmcp.notebook.encoder import dumps_notebook
from nbmcp.notebook.store import LocalStore
from nbmcp.server.render import MAX_IMAGE_BYTES, MAX_OUTPUT_CHARS, render_outputs, truncate_middle

from .notebooks import make_notebook

EXTRA: list[str] = os.environ.get("BENCH_EXTRA", "").split()
ROOT = Path(__file__).resolve().parents[2]
SIZES = (10, 100, 1000, 10000)
#: Timed calls per tool, by notebook size: a full run stays within about 5 minutes on 2 cores.
REPETITIONS = {10: 30, 100: 30, 1000: 15, 10000: 9}
#: Spawns timed for cold start, by notebook size (each starts and stops a kernel).
COLD_STARTS = {10: 3, 100: 2, 1000: 2, 10000: 1}
#: A cell printing 1 MB (10,000 lines of 100 bytes).
PRINT_1MB = "print(('x' * 99 + '\\n') * 10_000, end='')"
#: Seconds without a write before reads are timed: past the store's racy window, so a stat suffices.
SETTLE = 0.3
#: Untimed rounds before the timed ones.
WARMUP = 2
FLOOR_MODULE = "tests.bench.floor_server"

#: The table's last column: target met, missed, or none set.
MARK = {True: "ok", False: "MISS", None: ""}

#: Notebooks up to this many cells are held to issue 23's target for a small edit: floor + 1 ms (set at 10 cells).
SMALL_EDIT_CELLS = 10
READ_TOOLS = ("get_notebook_info", "read_cell", "read_all_cells")
EDIT_TOOLS = ("overwrite_cell_source", "insert_markdown_cell", "delete_cell", "append_markdown_cell")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def got_median(row: dict[str, Any]) -> float:
    """A result row's median, in seconds."""
    return float(row["median_ms"]) / 1000


@dataclass
class Sample:
    """Timings (seconds) of one measured thing."""

    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p90(self) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]

    def as_json(self) -> dict[str, Any]:
        return {"median_ms": ms(self.median), "p90_ms": ms(self.p90), "n": len(self.times)}


async def timed(n: int, call: Callable[[], Awaitable[Any]], *, warmup: int = 2) -> Sample:
    for _ in range(warmup):
        await call()
    sample = Sample()
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        sample.times.append(time.perf_counter() - t0)
    return sample


async def interleaved(n: int, steps: dict[str, Callable[[], Any]], warmup: int = WARMUP) -> dict[str, Sample]:
    """Time each step once per round, for `warmup` + `n` rounds; steps may be sync or async."""
    samples = {name: Sample() for name in steps}
    for round_ in range(warmup + n):
        for name, step in steps.items():
            t0 = time.perf_counter()
            result = step()
            if inspect.isawaitable(result):
                await result
            if round_ >= warmup:
                samples[name].times.append(time.perf_counter() - t0)
    return samples


async def call_ok(client: Client, tool: str, args: dict[str, Any] | None = None) -> Any:
    result = await client.call_tool(tool, args or {})
    if result.is_error:
        raise RuntimeError(f"{tool}({args}) failed: {result.content}")
    return result


# -- the server process ---------------------------------------------------------------------------


def server_pid(*markers: bytes) -> int:
    """The pid of our child process whose command line holds all `markers` (found through /proc)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and all(m in cmdline for m in markers):
            return int(entry.name)
    raise RuntimeError(f"no child process running {markers}")


def proc_status(pid: int, key: str) -> int:
    """A size field (kB) of /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def bytes_read(pid: int) -> int:
    """Bytes the process has read through read() calls so far (/proc/PID/io rchar)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise KeyError("rchar")


def nbmcp_params(notebook: Path, *, structured: bool = True) -> StdioServerParameters:
    env = dict(os.environ, PYTHONUNBUFFERED="1", NBMCP_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"))
    # --structured-output: the benchmark reads get_notebook_info's fields, and earlier rounds measured answers
    # with their structured view (off by default since issue 23).
    args = ["-m", "nbmcp", str(notebook), *(["--structured-output"] if structured else []), *EXTRA]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=ROOT)


async def default_flags_edit(notebook: Path, floor: Client, reps: int, scratch: Path) -> dict[str, Any]:
    """overwrite_cell_source on a server with nbmcp's default flags, against the write + an empty round trip.

    Issue 23's target as users run nbmcp: with --structured-output the client also checks each answer's
    structuredContent against the tool's outputSchema, which the floor's empty tool has not.
    """
    data = notebook.read_bytes()
    mid = len(nbformat.reads(data.decode(), as_version=4).cells) // 2
    async with Client(nbmcp_params(notebook, structured=False)) as client:
        await client.list_tools()  # its kernel starts now: measure once it is idle, as the other server's
        while (
            state := json.loads((await call_ok(client, "get_notebook_info")).content[0].text)["kernel"]["state"]
        ) != "idle":
            if state in ("failed", "dead"):
                raise RuntimeError(f"kernel {state}")
            await asyncio.sleep(0.01)
        counter = iter(range(10**9))
        got = await interleaved(
            reps,
            {
                "overwrite": lambda: call_ok(
                    client, "overwrite_cell_source", {"cell_index": mid, "cell_source": f"x = {next(counter)}"}
                ),
                "empty_round_trip": lambda: call_ok(floor, "empty"),
                "atomic_write": lambda: atomic_write(scratch, data),
            },
        )
    sample = got.pop("overwrite")
    write_s = got["empty_round_trip"].median + got["atomic_write"].median
    return sample.as_json() | {
        "floor_ms": ms(write_s),
        "floor": {k: v.as_json() for k, v in got.items()},
        "overhead_ms": ms(sample.median - write_s),
        "target": "<= write + 1 ms",
        "ok": sample.median <= write_s + 0.001,
    }


async def cold_start(stack: contextlib.AsyncExitStack, notebook: Path) -> tuple[Client, float, float, float]:
    """Spawn nbmcp; seconds to the `initialize` answer, to the first tool answer and to the kernel being ready."""
    t0 = time.perf_counter()
    client = await stack.enter_async_context(Client(nbmcp_params(notebook)))  # returns once initialized
    initialized = time.perf_counter() - t0
    # As every client does before its first call (over stdio nbmcp starts the kernel once it has answered).
    await client.list_tools()
    await call_ok(client, "get_notebook_info")
    first = time.perf_counter() - t0
    while True:
        info = (await call_ok(client, "get_notebook_info")).structured_content
        state = info["kernel"]["state"]
        if state == "idle":
            break
        if state in ("failed", "dead"):
            raise RuntimeError(f"kernel {state}: {info['kernel']}")
        await asyncio.sleep(0.01)
    return client, initialized, first, time.perf_counter() - t0


def import_mcp_seconds() -> float:
    """The floor of a cold start: spawn a Python that imports the MCP SDK and exits."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mcp.server.mcpserver"], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def has_jupyter_server() -> bool:
    """Whether this environment has jupyter_server (and so jsonschema's slow format checkers)."""
    probe = "import importlib.util as u; print(bool(u.find_spec('jupyter_server') and u.find_spec('rfc3987_syntax')))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "True"


def reload_bench(notebook: Path, reps: int) -> dict[str, Any]:
    """Reload after an external change (one cell edited by another program) against json.loads of the bytes."""
    store = LocalStore(notebook)
    store.read()
    base = nbformat.read(notebook, as_version=4)
    variants = []
    for k in range(2):
        base.cells[len(base.cells) // 2]["source"] = f"changed elsewhere {k}"
        variants.append(dumps_notebook(base))
    counter = iter(range(10**9))

    def change() -> None:
        notebook.write_bytes(variants[next(counter) % 2])

    reload_s, loads_s = Sample(), Sample()
    for round_ in range(WARMUP + reps):
        change()
        t0 = time.perf_counter()
        nb = store.read()
        t1 = time.perf_counter()
        json.loads(notebook.read_bytes())
        t2 = time.perf_counter()
        assert nb.cells[len(nb.cells) // 2].source.startswith("changed elsewhere")
        if round_ >= WARMUP:
            reload_s.times.append(t1 - t0)
            loads_s.times.append(t2 - t1)
    ratio = reload_s.median / loads_s.median
    return reload_s.as_json() | {
        "floor_ms": ms(loads_s.median),
        "floor": {"json_loads": loads_s.as_json()},
        "ratio": round(ratio, 2),
        "target": "<= 3",
        "ok": ratio <= 3,
    }


# -- floors ---------------------------------------------------------------------------------------


def atomic_write(target: Path, data: bytes) -> None:
    """The floor of a safe save: temp file in the same folder, write, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".floor.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def render_floor(tool: str, nb: NotebookNode, index: int) -> Callable[[], Any]:
    """The rendering a read tool cannot avoid: what it shows of the notebook, from memory."""
    if tool == "read_cell":

        def render() -> Any:
            return render_outputs(
                nb.cells[index].get("outputs", []), max_chars=MAX_OUTPUT_CHARS, max_image_bytes=MAX_IMAGE_BYTES
            )

    elif tool == "read_all_cells":

        def render() -> Any:
            parts = []
            for cell in nb.cells:
                parts.append(cell.source)
                outputs = cell.get("outputs", [])
                parts.extend(getattr(p, "text", "") for p in render_outputs(outputs, max_chars=2_000))
                parts.extend(output_text(o) for o in outputs)  # the structured answer's outputs
            return truncate_middle("\n".join(parts), MAX_OUTPUT_CHARS * 5, "")

    else:

        def render() -> Any:
            return Counter(c.cell_type for c in nb.cells)

    return render


class RawKernel:
    """A jupyter_client kernel driven directly: the floor of one execution."""

    def __init__(self) -> None:
        self.km = AsyncKernelManager(kernel_name="python3")

    async def __aenter__(self) -> RawKernel:
        t0 = time.perf_counter()
        await self.km.start_kernel(stdout=sys.stderr.fileno())
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=60)
        self.start_seconds = time.perf_counter() - t0
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.kc.stop_channels()
        await self.km.shutdown_kernel(now=True)

    async def execute(self, code: str) -> None:
        msg_id = self.kc.execute(code, allow_stdin=False)
        while True:
            msg = await self.kc.get_iopub_msg(timeout=60)
            if (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            ):
                break
        while True:
            reply = await self.kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                return


# -- one notebook size ----------------------------------------------------------------------------


async def bench_size(n_cells: int, work: Path, floor: Client, kernel: RawKernel) -> dict[str, Any]:
    reps = REPETITIONS.get(n_cells, 5)
    notebook = work / f"bench-{n_cells}.ipynb"
    nbformat.write(make_notebook(n_cells), notebook)
    size = notebook.stat().st_size
    out: dict[str, Any] = {"cells": n_cells, "file_bytes": size, "repetitions": reps, "tools": {}, "floors": {}}
    print(f"\n== {n_cells} cells, {size / 1e6:.2f} MB ({reps} timed calls per tool)", file=sys.stderr)

    async with contextlib.AsyncExitStack() as stack:
        inits, firsts, readies, floors = [], [], [], []
        for k in range(COLD_STARTS.get(n_cells, 1)):
            floors.append(import_mcp_seconds())
            inner = contextlib.AsyncExitStack()
            await inner.__aenter__()
            client, init, first, ready = await cold_start(inner, notebook)
            inits.append(init)
            firsts.append(first)
            readies.append(ready)
            if k < COLD_STARTS.get(n_cells, 1) - 1:
                await inner.aclose()
        stack.push_async_callback(inner.aclose)
        out["cold_start"] = {
            "initialize": Sample(inits).as_json(),
            "first_answer": Sample(firsts).as_json(),
            "kernel_ready": Sample(readies).as_json(),
            "import_mcp": Sample(floors).as_json(),
        }
        pid = server_pid(b"nbmcp", str(notebook).encode())
        out["rss_after_open_bytes"] = proc_status(pid, "VmRSS")

        # Each tool call is interleaved with its floor's parts, so both meet the same machine load.
        # Reads, on a file nobody changed: a stat only, no bytes read from the notebook.
        nb = nbformat.read(notebook, as_version=4)
        mid = n_cells // 2
        read_args: dict[str, dict[str, Any]] = {"read_cell": {"cell_index": mid}}
        await asyncio.sleep(SETTLE)
        for tool in READ_TOOLS:
            args = read_args.get(tool, {})
            answer = await call_ok(client, tool, args)
            saved = work / f"answer-{n_cells}-{tool}.json"
            saved.write_text(answer.model_dump_json(by_alias=True, exclude_none=True))
            before = bytes_read(pid)
            got = await interleaved(
                reps,
                {
                    tool: lambda t=tool, a=args: call_ok(client, t, a),  # type: ignore[misc]
                    "replay": lambda s=str(saved): call_ok(floor, "replay", {"path": s}),  # type: ignore[misc]
                    "render": render_floor(tool, nb, mid),
                },
            )
            per_call = (bytes_read(pid) - before) / (reps + WARMUP)
            floor_s = got["replay"].median + got["render"].median
            out["tools"][tool] = got[tool].as_json() | {
                "bytes_read_per_call": round(per_call),
                "floor_ms": ms(floor_s),
                "floor": {"replay": got["replay"].as_json(), "render": got["render"].as_json()},
                "ratio": round(got[tool].median / floor_s, 2),
                "target": "<= 1.2",
                "ok": got[tool].median <= 1.2 * floor_s,
            }

        # Edits, back to back as an assistant in a hurry makes them. Floor: round trip + serialize
        # (the faster of nbformat's and nbmcp's serializers: the bytes are the same) + atomic write.
        data = dumps_notebook(nb)
        scratch = work / f"floor-{n_cells}.ipynb"
        counter = iter(range(10**9))
        edits: dict[str, Callable[[], Awaitable[Any]]] = {
            "overwrite_cell_source": lambda: call_ok(
                client, "overwrite_cell_source", {"cell_index": mid, "cell_source": f"x = {next(counter)}"}
            ),
            "insert_markdown_cell": lambda: call_ok(
                client, "insert_markdown_cell", {"cell_index": mid, "cell_source": "# inserted"}
            ),
            "delete_cell": lambda: call_ok(client, "delete_cell", {"cell_index": mid}),
            "append_markdown_cell": lambda: call_ok(client, "append_markdown_cell", {"cell_source": "# appended"}),
        }
        out["memory_after_reads_bytes"] = proc_status(pid, "VmRSS")
        for tool in EDIT_TOOLS:
            got = await interleaved(
                reps,
                {
                    tool: edits[tool],
                    "empty_round_trip": lambda: call_ok(floor, "empty"),
                    "serialize_nbformat": lambda: nbformat.v4.writes(nb),
                    "serialize_nbmcp": lambda: dumps_notebook(nb),
                    "atomic_write": lambda: atomic_write(scratch, data),
                },
            )
            floor_s = (
                got["empty_round_trip"].median
                + min(got["serialize_nbformat"].median, got["serialize_nbmcp"].median)
                + got["atomic_write"].median
            )
            out["tools"][tool] = got.pop(tool).as_json() | {
                "floor_ms": ms(floor_s),
                "floor": {k: v.as_json() for k, v in got.items()},
                "target": "<= 1.5",
            }
            out["tools"][tool]["ratio"] = round(out["tools"][tool]["median_ms"] / ms(floor_s), 2)
            out["tools"][tool]["ok"] = out["tools"][tool]["median_ms"] <= 1.5 * ms(floor_s)
            # Issue 14: an edit costs its change plus the write, whatever the notebook's size:
            # at most 2 x (atomic write of the file + an empty tool's round trip) + 10 ms.
            write_s = got["empty_round_trip"].median + got["atomic_write"].median
            out["tools"][tool]["vs_write"] = {
                "floor_ms": ms(write_s),
                "ratio": round(got_median(out["tools"][tool]) / write_s, 2),
                "target": "<= 2 x write + 10 ms",
                "ok": got_median(out["tools"][tool]) <= 2 * write_s + 0.010,
            }
            if tool == "overwrite_cell_source" and n_cells <= SMALL_EDIT_CELLS:
                # Issue 23: a small edit costs at most its floor (the write + an empty round trip) + 1 ms.
                out["tools"][tool]["small_edit"] = {
                    "floor_ms": ms(write_s),
                    "over_ms": ms(got_median(out["tools"][tool]) - write_s),
                    "target": "<= write + 1 ms",
                    "ok": got_median(out["tools"][tool]) <= write_s + 0.001,
                }

        if n_cells <= SMALL_EDIT_CELLS:
            default = work / f"default-flags-{n_cells}.ipynb"  # a copy: the other server does not see these edits
            default.write_bytes(data)
            out["tools"]["overwrite_cell_source, default flags"] = await default_flags_edit(
                default, floor, reps, scratch
            )

        # Executions: `1+1`, then a cell printing 1 MB (last: its output stays in the notebook).
        # Floor: raw jupyter_client execute + round trip + atomic write of the notebook the outputs are
        # saved into (issue 14: a save costs its change plus the write, so serializing the whole
        # notebook is no longer part of the floor; it is still timed, and reported).
        out["kernel"] = (await call_ok(client, "get_notebook_info")).structured_content["kernel"]
        for name, code in (("execute 1+1", "1+1"), ("execute print 1 MB", PRINT_1MB)):
            await call_ok(client, "append_execute_code_cell", {"cell_source": code})
            last = (await call_ok(client, "get_notebook_info")).structured_content["total_cells"] - 1
            now = nbformat.read(notebook, as_version=4)
            now_data = dumps_notebook(now)
            got = await interleaved(
                reps if code == "1+1" else max(3, reps // 3),
                {
                    name: lambda i=last: call_ok(  # type: ignore[misc]
                        client, "execute_cell_simple_timeout", {"cell_index": i, "timeout_seconds": 60}
                    ),
                    "raw_execute": lambda c=code: kernel.execute(c),  # type: ignore[misc]
                    "empty_round_trip": lambda: call_ok(floor, "empty"),
                    "serialize": lambda m=now: dumps_notebook(m),  # type: ignore[misc]
                    "atomic_write": lambda d=now_data: atomic_write(scratch, d),  # type: ignore[misc]
                },
            )
            sample = got.pop(name)
            floor_s = sum(v.median for k, v in got.items() if k != "serialize")
            out["tools"][name] = sample.as_json() | {
                "floor_ms": ms(floor_s),
                "floor": {k: v.as_json() for k, v in got.items()},
                "overhead_ms": ms(sample.median - floor_s),
                "target": "overhead <= 5 ms" if code == "1+1" else "(reported)",
                "ok": sample.median <= floor_s + 0.005 if code == "1+1" else None,
            }

        out["rss_bytes"] = proc_status(pid, "VmRSS")
        out["rss_peak_bytes"] = proc_status(pid, "VmHWM")
        # Issue 14's memory target is set at 10,000 cells; smaller notebooks are reported.
        limit = 100e6 + 6 * size
        out["memory"] = (
            {"target": f"<= {limit / 1e6:.0f} MB", "ok": max(out["rss_bytes"], out["rss_peak_bytes"]) <= limit}
            if n_cells >= 10_000
            else {"target": "(reported)", "ok": None}
        )
        out["cold_start"]["ok"] = (
            out["cold_start"]["initialize"]["median_ms"] <= 1000
            and out["cold_start"]["kernel_ready"]["median_ms"] < 2000
        )
    scratch.unlink(missing_ok=True)
    # In this process (no server): reload of the whole file after another program changed it.
    out["reload"] = reload_bench(notebook, max(3, reps // 2))
    return out


# -- report ---------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    rows = [("cells", "what", "median ms", "p90 ms", "floor ms", "ratio", "target", "")]
    for size in results["sizes"]:
        n = size["cells"]
        cs = size["cold_start"]
        rows.append(
            (
                str(n),
                "cold start: initialize answered",
                f"{cs['initialize']['median_ms']:.0f}",
                "",
                f"{cs['import_mcp']['median_ms']:.0f}",
                f"{cs['initialize']['median_ms'] / cs['import_mcp']['median_ms']:.2f}",
                "<= 1000 ms",
                "ok" if cs["initialize"]["median_ms"] <= 1000 else "MISS",
            )
        )
        rows.append(
            (
                str(n),
                "cold start: first answer",
                f"{cs['first_answer']['median_ms']:.0f}",
                "",
                "",
                "",
                "< 1000 ms",
                "ok" if cs["first_answer"]["median_ms"] < 1000 else "MISS",
            )
        )
        rows.append(
            (
                str(n),
                "cold start: kernel ready",
                f"{cs['kernel_ready']['median_ms']:.0f}",
                "",
                "",
                "",
                "< 2000 ms",
                "ok" if cs["kernel_ready"]["median_ms"] < 2000 else "MISS",
            )
        )
        for tool, r in size["tools"].items():
            ratio = f"{r['ratio']:.2f}" if "ratio" in r else f"{r['overhead_ms']:+.1f} ms"
            mark = MARK[r["ok"]]
            rows.append(
                (
                    str(n),
                    tool,
                    f"{r['median_ms']:.1f}",
                    f"{r['p90_ms']:.1f}",
                    f"{r['floor_ms']:.1f}",
                    ratio,
                    r["target"],
                    mark,
                )
            )
            # The edit against other floors: the write + round trip (a ratio), and that + 1 ms (milliseconds over).
            for key, label, shown in (
                ("vs_write", "vs write + round trip", lambda w: f"{w['ratio']:.2f}"),
                ("small_edit", "vs write + round trip + 1 ms", lambda w: f"{w['over_ms']:+.1f} ms"),
            ):
                if key in r:
                    w = r[key]
                    rows.append(
                        (
                            str(n),
                            f"{tool} {label}",
                            f"{r['median_ms']:.1f}",
                            f"{r['p90_ms']:.1f}",
                            f"{w['floor_ms']:.1f}",
                            shown(w),
                            w["target"],
                            "ok" if w["ok"] else "MISS",
                        )
                    )
        rl = size["reload"]
        rows.append(
            (
                str(n),
                "reload after an external change vs json.loads",
                f"{rl['median_ms']:.1f}",
                f"{rl['p90_ms']:.1f}",
                f"{rl['floor_ms']:.1f}",
                f"{rl['ratio']:.2f}",
                rl["target"],
                "ok" if rl["ok"] else "MISS",
            )
        )
        rows.append(
            (
                str(n),
                "server RSS (MB)",
                f"{size['rss_bytes'] / 1e6:.0f}",
                f"peak {size['rss_peak_bytes'] / 1e6:.0f}",
                "",
                "",
                size["memory"]["target"],
                MARK[size["memory"]["ok"]],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) if i < 2 or i >= 6 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    floor = results["floor"]
    lines.append(
        f"\nfloors: empty tool round trip {floor['empty_round_trip']['median_ms']:.2f} ms; "
        f"spawn to first answer of an empty SDK server {floor['cold_start_first_answer']['median_ms']:.0f} ms; "
        f"raw kernel start {floor['raw_kernel_start']['median_ms']:.0f} ms; "
        f"empty server RSS {floor['server_rss_bytes'] / 1e6:.0f} MB; "
        f"jupyter_server (and rfc3987_syntax) installed here: {floor['jupyter_server_installed']}"
    )
    return "\n".join(lines)


async def main(sizes: tuple[int, ...], json_path: Path) -> int:
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="nbmcp-bench-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("NBMCP_LOCK_DIR", str(work / "locks"))
        floor_params = StdioServerParameters(
            command=sys.executable, args=["-m", FLOOR_MODULE], cwd=ROOT, env=dict(os.environ)
        )
        # The floor of a cold start: spawn to the first answer of a server on the same SDK and transport.
        floor_starts = Sample()
        for _ in range(3):
            t0 = time.perf_counter()
            async with Client(floor_params) as floor:
                await call_ok(floor, "empty")
                floor_starts.times.append(time.perf_counter() - t0)
        async with Client(floor_params) as floor, RawKernel() as kernel:
            kernel_start = Sample([kernel.start_seconds])
            empty = await timed(50, lambda: call_ok(floor, "empty"), warmup=5)
            results["floor"] = {
                "empty_round_trip": empty.as_json(),
                "cold_start_first_answer": floor_starts.as_json(),
                "raw_kernel_start": kernel_start.as_json(),
                "server_rss_bytes": proc_status(server_pid(FLOOR_MODULE.encode()), "VmRSS"),
                "jupyter_server_installed": has_jupyter_server(),
            }
            print(f"floor: {json.dumps(results['floor'])}", file=sys.stderr)
            for n in sizes:
                results["sizes"].append(await bench_size(n, work, floor, kernel))
    results["seconds"] = round(time.perf_counter() - started, 1)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    print(f"\n{results['seconds']:.0f} s; results in {json_path}")
    return 0


def cli() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="notebook sizes in cells (comma-separated)")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"), help="where to write the results")
    ns = parser.parse_args()
    return asyncio.run(main(tuple(int(s) for s in ns.sizes.split(",")), ns.json))


if __name__ == "__main__":
    sys.exit(cli())
