"""A small edit on two nbmcp checkouts side by side, against the same floor (issue 23).

    python -m tests.bench.edit_ab BEFORE [AFTER] [--rounds 150] [--structured-output]

BEFORE and AFTER are checkouts of nbmcp (AFTER defaults to this one); each runs as its own stdio
server (`python -m nbmcp` in that folder) on its own copy of the generated 10-cell notebook, beside
the floor server. Each round times, one after the other: `overwrite_cell_source` on BEFORE, the
floor's empty tool, an atomic write of the notebook (fsync, rename), `overwrite_cell_source` on AFTER.
On a shared machine whose load moves a run's medians by milliseconds, the median of each round's
difference to the floor compares the two far better than two runs of `tests.bench.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from nbmcp.notebook.encoder import dumps_notebook

from .notebooks import make_notebook
from .run import FLOOR_MODULE, ROOT, atomic_write, call_ok, interleaved

#: Seconds given to each server's kernel start before the rounds (it starts once the client has the tools).
KERNEL_SETTLE = 3.0


def server(checkout: Path, notebook: Path, env: dict[str, str], structured: bool) -> StdioServerParameters:
    args = ["-m", "nbmcp", str(notebook), *(["--structured-output"] if structured else [])]
    return StdioServerParameters(
        command=sys.executable, args=args, cwd=checkout, env=env | {"PYTHONPATH": str(checkout)}
    )


async def main(before: Path, after: Path, rounds: int, structured: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nbmcp-edit-ab-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, NBMCP_LOCK_DIR=str(work / "locks"), NBMCP_STATE_DIR=str(work / "state"))
        env |= {"PYTHONUNBUFFERED": "1", "NBMCP_LOG_LEVEL": "WARNING"}
        data = dumps_notebook(make_notebook(10))
        notebooks = {"before": work / "before.ipynb", "after": work / "after.ipynb"}
        for path in notebooks.values():
            path.write_bytes(data)
        scratch = work / "floor.ipynb"
        floor_params = StdioServerParameters(command=sys.executable, args=["-m", FLOOR_MODULE], cwd=ROOT, env=env)
        async with (
            Client(floor_params) as floor,
            Client(server(before, notebooks["before"], env, structured)) as old,
            Client(server(after, notebooks["after"], env, structured)) as new,
        ):
            for client in (old, new):
                await client.list_tools()
            await asyncio.sleep(KERNEL_SETTLE)
            counter = iter(range(10**9))

            def overwrite(client: Client) -> Any:
                return call_ok(
                    client, "overwrite_cell_source", {"cell_index": 5, "cell_source": f"x = {next(counter)}"}
                )

            got = await interleaved(
                rounds,
                {
                    "before": lambda: overwrite(old),
                    "empty_round_trip": lambda: call_ok(floor, "empty"),
                    "atomic_write": lambda: atomic_write(scratch, data),
                    "after": lambda: overwrite(new),
                },
                warmup=10,
            )
    floors = [e + w for e, w in zip(got["empty_round_trip"].times, got["atomic_write"].times, strict=True)]
    result: dict[str, Any] = {k: round(v.median * 1000, 3) for k, v in got.items()}
    for name in ("before", "after"):
        over = statistics.median(t - f for t, f in zip(got[name].times, floors, strict=True))
        result[f"{name}_over_floor"] = round(over * 1000, 3)
    return result


def cli() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.edit_ab", description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, help="a checkout of nbmcp to compare with")
    parser.add_argument("after", type=Path, nargs="?", default=ROOT, help="another one (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=150, help="timed rounds (default: %(default)s)")
    parser.add_argument("--structured-output", action="store_true", help="run both servers with it")
    ns = parser.parse_args()
    r = asyncio.run(main(ns.before.resolve(), ns.after.resolve(), ns.rounds, ns.structured_output))
    print(
        f"floor {r['empty_round_trip'] + r['atomic_write']:.2f} ms (round trip {r['empty_round_trip']:.2f} + "
        f"write {r['atomic_write']:.2f}); before {r['before']:.2f} ms, {r['before_over_floor']:+.2f} over the floor "
        f"(median of the rounds); after {r['after']:.2f} ms, {r['after_over_floor']:+.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli())
