"""Where the live view's updates come from: the notebook file, and the session running beside it.

A `NotebookFeed` keeps what the page shows of one notebook (the order of the cells and a hash of each)
and tells its subscribers what changed:

- the file: a watch of the notebook's folder (editors and git replace the file, so a watch on the file
  itself goes deaf, as `nbmcp.notebook.watcher` explains) rereads it after any change, whoever made it,
  and sends the cells whose hash changed, the ones that left, and the order when it moved;
- the session (when the view runs beside the MCP server): its `Activity`, polled a few times a second,
  gives the running cell, its elapsed time and its outputs as they stream, and the tool that changed or
  ran a cell last.

The feed only reads: the file with a plain read (nbmcp and Jupyter replace it atomically, so a read
sees a whole version), the activity as the session left it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import anyio
from watchfiles import awatch

from ..notebook.watcher import WATCH_DEBOUNCE_MS, WATCH_WAKE_MS
from ..session.activity import Activity
from .render import cell_hash, cell_key, render_cell, render_outputs

__all__ = [
    "ACTIVITY_POLL",
    "MARK_WINDOW",
    "MAX_PUSHED_CELLS",
    "NotebookFeed",
    "Subscriber",
]

logger = logging.getLogger(__name__)

#: Seconds between looks at the session's activity (the running cell's outputs and elapsed time).
ACTIVITY_POLL = 0.25
#: A file change this many seconds after a tool changed the notebook is taken to be that tool's.
MARK_WINDOW = 3.0
#: Changed cells sent rendered in one update; past that the page asks for those it shows.
MAX_PUSHED_CELLS = 50
#: Rendered cells kept, by hash.
_CACHE_SIZE = 20_000
#: Events queued for a slow page before it is sent a fresh snapshot instead.
_QUEUE_SIZE = 256

ActivitySource = Callable[[], Activity | None]


class Subscriber:
    """One page's queue of events (dicts, sent as JSON)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_SIZE)
        self.lost = False
        """Events were dropped: the page gets a snapshot next."""

    def put(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lost = True


class NotebookFeed:
    """The live state of one notebook for the pages that show it."""

    def __init__(self, path: Path, activity: ActivitySource | None = None) -> None:
        self.path = path
        self._activity = activity
        self._cells: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._hashes: dict[str, str] = {}
        self._index: dict[str, int] = {}
        self.error: str | None = None
        """Why the file could not be read (None: it was)."""
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # load() runs in a worker thread, and so do the page's requests for rendered cells.
        self._lock = threading.RLock()
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._stat: tuple[int, int, int] | None = None
        self._running: dict[str, Any] | None = None
        self._running_seen: tuple[str, int, int] | None = None
        self._last: dict[str, Any] | None = None
        self._marked_version = 0
        # The file by its own name and its target's, if it is a symlink (events name either).
        self._names = {str(path), os.path.realpath(path)}
        self.ready = asyncio.Event()
        """Set once the watch is in place (tests and benchmarks wait for it)."""

    # -- state ------------------------------------------------------------------------------------

    def load(self) -> dict[str, Any] | None:
        """Reread the file; the change event to send, or None when nothing the page shows changed."""
        with self._lock:
            return self._load()

    def _load(self) -> dict[str, Any] | None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stat and self.error is None:
                return None
            with open(self.path, "rb") as f:
                nb = json.loads(f.read())
            cells = nb.get("cells")
            if not isinstance(cells, list):
                raise ValueError("no list of cells")
        except (OSError, ValueError, RecursionError) as exc:
            # Half-written by a program that does not replace atomically, or gone: say so, keep the cells.
            error = f"{self.path.name} could not be read: {exc}"
            if error == self.error:
                return None
            self.error = error
            return {"type": "error", "message": error}
        self._stat = stamp
        had_error, self.error = self.error, None
        order: list[str] = []
        by_key: dict[str, dict[str, Any]] = {}
        hashes: dict[str, str] = {}
        for i, cell in enumerate(cells):
            key = cell_key(cell, i)
            if key in by_key:  # a duplicated id (hand-edited file): keep both
                key = f"{key}#{i}"
            order.append(key)
            by_key[key] = cell
            hashes[key] = cell_hash(cell)
        changed = [k for k in order if self._hashes.get(k) != hashes[k]]
        deleted = [k for k in self._order if k not in by_key]
        moved = order != self._order
        self._cells, self._hashes = by_key, hashes
        self._index = {k: i for i, k in enumerate(order)}
        old_order, self._order = self._order, order
        if not changed and not deleted and not moved and not had_error:
            return None
        event: dict[str, Any] = {"type": "change", "deleted": deleted, "count": len(order)}
        if moved or had_error:
            event["order"] = order
        pushed = changed[:MAX_PUSHED_CELLS]
        event["changed"] = [*self.rendered(pushed), *({"id": k, "hash": hashes[k]} for k in changed[len(pushed) :])]
        self._mark(changed, bool(old_order))
        if self._last is not None:
            event["last"] = self._last
        return event

    def _mark(self, changed: list[str], had_cells: bool) -> None:
        """Mark the first changed cell with the tool that just changed the notebook, if one did."""
        activity = self._activity() if self._activity is not None else None
        if activity is None or not changed or not had_cells or activity.version == self._marked_version:
            return
        if time.monotonic() - activity.last_change > MARK_WINDOW:
            return
        self._marked_version = activity.version
        cell = activity.last_cell_id if activity.last_cell_id in self._index else changed[0]
        self._last = {"id": cell, "tool": activity.last_tool}

    def snapshot(self) -> dict[str, Any]:
        """Everything a page needs to start: the order and hash of every cell, and what runs now."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        return {
            "type": "snapshot",
            "name": self.path.name,
            "order": self._order,
            "hashes": self._hashes,
            "error": self.error,
            "running": self._running,
            "last": self._last,
        }

    def rendered(self, keys: Collection[str]) -> list[dict[str, Any]]:
        """The cells with these ids rendered (from the cache when unchanged), in notebook order."""
        with self._lock:
            return self._rendered(keys)

    def _rendered(self, keys: Collection[str]) -> list[dict[str, Any]]:
        found = sorted((k for k in set(keys) if k in self._cells), key=self._index.__getitem__)
        out = []
        for key in found:
            digest = self._hashes[key]
            hit = self._cache.get(digest)
            if hit is None:
                hit = render_cell(self._cells[key], self._index[key])
                self._cache[digest] = hit
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(digest)
            out.append({**hit, "id": key})
        return out

    def poll_activity(self) -> dict[str, Any] | None:
        """The running-cell event to send, or None when nothing the page shows of it changed."""
        activity = self._activity() if self._activity is not None else None
        running = activity.running if activity is not None else None
        if running is None:
            if self._running is None:
                return None
            self._running, self._running_seen = None, None
            return {"type": "running", "running": None}
        version = getattr(running.collector, "version", 0)
        seen = (running.cell_id, version, int(running.elapsed))
        if seen == self._running_seen:
            return None
        outputs_changed = self._running_seen is None or self._running_seen[:2] != seen[:2]
        self._running_seen = seen
        state: dict[str, Any] = {"id": running.cell_id, "elapsed": round(running.elapsed, 1), "tool": running.tool}
        if outputs_changed or self._running is None:
            outputs = [dict(o) for o in list(getattr(running.collector, "outputs", []))]
            state["html"] = render_outputs(outputs)
        else:
            state["html"] = self._running.get("html", "")
        self._running = state
        event: dict[str, Any] = {"type": "running", "running": state}
        last = {"id": running.cell_id, "tool": running.tool}
        if last != self._last:
            self._last = last
            event["last"] = last
        return event

    # -- subscribers and the watch ----------------------------------------------------------------

    def subscribe(self) -> Subscriber:
        """A queue for one page; starts the watch with the first one."""
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        self.start()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def publish(self, event: dict[str, Any] | None) -> None:
        if event is None:
            return
        for subscriber in list(self._subscribers):
            subscriber.put(event)

    def start(self) -> None:
        """Start watching (once), in the running event loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def loaded(self) -> None:
        """Read the file once if it has not been yet (in a worker thread: 10,000 cells take a moment)."""
        if self._stat is None and self.error is None:
            await anyio.to_thread.run_sync(self.load)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def refresh(self) -> None:
        """Reread the file now (in a worker thread: a large notebook takes a moment) and publish."""
        self.publish(await anyio.to_thread.run_sync(self.load))

    async def _run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            if self._activity is not None:
                tg.start_soon(self._poll)

    async def _poll(self) -> None:
        while True:
            await anyio.sleep(ACTIVITY_POLL)
            try:
                self.publish(self.poll_activity())
            except Exception:  # never let a render problem stop the view
                logger.exception("the running cell of %s could not be shown", self.path)

    async def _watch(self) -> None:
        names = self._names
        folders = {str(Path(n).parent) for n in names}
        # Catch up with a change made before the watch was in place.
        await self.refresh()
        async for changes in awatch(
            *folders,
            watch_filter=lambda _change, path: path in names,
            debounce=WATCH_DEBOUNCE_MS,
            step=WATCH_DEBOUNCE_MS,
            rust_timeout=WATCH_WAKE_MS,
            yield_on_timeout=True,
            recursive=False,
            ignore_permission_denied=True,
        ):
            if not self.ready.is_set():
                self.ready.set()
                await self.refresh()
            if changes:
                try:
                    await self.refresh()
                except Exception:
                    logger.exception("%s changed but could not be shown", self.path)
