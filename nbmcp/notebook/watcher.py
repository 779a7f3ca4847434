"""Notice when someone else changes the notebook file, and reload it.

The watch is on the notebook's folder, not on the file: editors and git save by writing a new file
and renaming it over the old one, after which a watch on the old file hears nothing more. Events
are filtered to the notebook. nbmcp's own writes are recognized by their stat (the store remembers
the stat of what it last read or wrote); when the stat alone cannot tell (a save within the same
timestamp tick keeps it), the bytes are compared with what nbmcp wrote, once that tick is over.

The watcher makes nbmcp prompt; it does not make it correct: every tool call checks the file itself
before it reads or writes (see `nbmcp.notebook.store`). A client hears of a reload through the
notebook's MCP resource (`file://...`, subscribed with `subscriptions/listen` from protocol 2026-07-28,
`resources/subscribe` before) and, on older clients, the log message "notebook changed on disk, reloaded".

What editors do when nbmcp saves (read in their source, not tried in a running editor; the README
gives the user's side):

- VS Code's notebook editor (`storedFileWorkingCopyManager.ts`, `storedFileWorkingCopy.ts` in
  microsoft/vscode) reloads a notebook without unsaved changes when its file watcher reports the
  change, and never reloads a dirty one ("never reload dirty working copies"): running or typing in a
  cell makes it dirty, and saving then asks "The content of the file is newer", Overwrite or Revert.
- JupyterLab 4.6.6 without collaboration (`@jupyterlab/docregistry` `context.ts`, the `docmanager`
  extension) never reloads an open notebook; before it saves (autosave every 120 s by default) it
  compares the file's hash or mtime with the version it loaded and asks Overwrite or Revert.
- jupyter-collaboration (jupyter_server_ydoc 3.0.4, `loaders.py`, `rooms.py`) polls the file every
  `file_poll_interval` (1 s) and loads it into the shared document when its mtime moves ("Out-of-band
  changes. Overwriting the room."), so an edit typed in that second can be lost.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from pathlib import Path

import anyio
from watchfiles import Change, awatch

from ..errors import NbmcpError
from .atomic import TEMP_MARKER
from .store import LocalStore

__all__ = ["WATCH_DEBOUNCE_MS", "WATCH_WAKE_MS", "NotebookWatcher", "watch_folders"]

logger = logging.getLogger(__name__)

WatchEvents = AsyncGenerator[set[tuple[Change, str]], None]

#: Milliseconds watchfiles groups events for; small, so a client hears of a change within a second.
WATCH_DEBOUNCE_MS = 50
#: Milliseconds between idle wake-ups of the watch thread.
WATCH_WAKE_MS = 200


def watch_folders(folders: Iterable[Path | str], relevant: Callable[[Change, str], bool]) -> WatchEvents:
    """Changes in these folders (not below them) that `relevant` keeps, in batches a few ms apart.

    It also yields an empty batch now and then with no changes: the first one proves the watch is in place.
    """
    return awatch(
        *folders,
        watch_filter=relevant,
        debounce=WATCH_DEBOUNCE_MS,
        step=WATCH_DEBOUNCE_MS,
        rust_timeout=WATCH_WAKE_MS,
        yield_on_timeout=True,
        recursive=False,
        ignore_permission_denied=True,
    )


class NotebookWatcher:
    """Runs until cancelled; calls `on_change()` after each external change has been reloaded."""

    def __init__(self, store: LocalStore, on_change: Callable[[], Awaitable[None]]) -> None:
        self.store = store
        self.on_change = on_change
        self._names = {str(store.path), os.path.realpath(store.path)}

    def _relevant(self, change: Change, path: str) -> bool:
        return path in self._names and not path.endswith(TEMP_MARKER)

    async def run(self, *, ready: anyio.Event | None = None) -> None:
        """Watch until cancelled; `ready` is set once the watch is in place."""
        folders = {Path(n).parent for n in self._names}
        logger.debug("watching %s for changes to %s", ", ".join(map(str, folders)), self.store.path)
        async for changes in watch_folders(folders, self._relevant):
            if ready is not None and not ready.is_set():
                ready.set()
            if changes:
                await self.check()

    async def check(self) -> bool:
        """Reload the notebook if its bytes are not what nbmcp last read or wrote; True if it did."""
        try:
            if not self.store.stat_changed():
                # Our own save: its stat is the one the store remembers. Another program's save within
                # the same timestamp tick could keep that stat too; the bytes tell, compared once the
                # tick is surely over (so that a burst of edits is not slowed by comparisons). A look
                # after the tick is over still compares them (changed_on_disk does, once, unless the
                # stat was already trusted): under load the events of such a save reach us late, merged
                # with those of our own write.
                seen = self.store.fingerprint
                wait = self.store.racy_for()
                if wait:
                    await anyio.sleep(wait + 0.01)
                    if self.store.fingerprint is not seen:
                        # nbmcp saved again meanwhile (a burst of edits): that save's own events bring
                        # a look of their own, and the save itself compared the bytes before its rename.
                        return False
            changed = await anyio.to_thread.run_sync(self.store.changed_on_disk)
            if not changed:
                return False  # our own write, or a touch that changed nothing
            await anyio.to_thread.run_sync(self.store.read)
        except (NbmcpError, OSError) as exc:
            # Half-written or deleted: the next tool call reports it; nothing to tell yet.
            logger.warning("%s changed on disk but could not be reloaded: %s", self.store.path, exc)
            return False
        logger.info("%s changed on disk; reloaded", self.store.path)
        await self.on_change()
        return True
