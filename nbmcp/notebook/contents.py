"""The Contents-API store: a notebook on a Jupyter server, read and written over its REST API.

It has the local store's operations (`read`, `edit`, `create_if_missing`, `changed_on_disk`), so the
session does not know where the notebook lives. The server has no lock and no conditional PUT, so
the local store's check (is the file what we last saw?) becomes: before each edit, ask the server for the
notebook's ``last_modified``, ``size`` and ``hash`` (`GET ?content=0&hash=1`, cheap) and compare them with what
we last read or wrote; on a mismatch someone else saved, so reload and apply the change to their version
instead of overwriting it (a change slow to apply is checked again before its PUT). Reads make the same
check, so a tool never answers from a stale copy; this polling is what replaces the file watcher for remote notebooks.

What remains is the gap of one round trip between that check and the PUT, which no Jupyter server
lets a client close.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx2
import nbformat
from nbformat import NotebookNode

from ..errors import NotebookFormatError, NotebookNotFoundError, NotebookWriteError
from ..jupyter.client import JupyterServer, api_error_message, json_body, translate_errors
from .store import CachedStore, new_notebook

__all__ = ["CONFLICT_RETRIES", "RECHECK_AFTER", "ContentsStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds an edit's change may take to apply before the server's version is checked again ahead of the PUT.
#: A quicker change adds less to the gap between the check and the PUT than the round trip a second check costs.
RECHECK_AFTER = 0.05

#: How many times an edit is applied again to a newer version saved by someone else before giving up.
CONFLICT_RETRIES = 5

# (last_modified, size, hash): what identifies one saved version of the notebook on the server.
Version = tuple[Any, Any, Any]


def _version(model: dict[str, Any]) -> Version:
    return (model.get("last_modified"), model.get("size"), model.get("hash"))


def _same(seen: Version | None, now: Version) -> bool:
    """True when `now` is the version we saw. A hash is compared only when both sides have one:
    the server does not return it after a PUT, and servers before jupyter_server 2.11 never do."""
    if seen is None:
        return False
    if seen[:2] != now[:2]:
        return False
    return seen[2] is None or now[2] is None or seen[2] == now[2]


class ContentsStore(CachedStore):
    """A notebook on a Jupyter server, at `path` relative to the server's root folder."""

    def __init__(self, server: JupyterServer, path: str, *, client: httpx2.Client | None = None) -> None:
        self.server = server
        self.notebook_path = path.strip("/")
        #: Where the notebook is, as shown to users (the Contents API URL; it never holds the token).
        self.path = server.api_url("contents", self.notebook_path)
        self._given_client = client
        self._http: httpx2.Client | None = None
        self._mutex = threading.RLock()
        self._nb: NotebookNode | None = None
        self._seen: Version | None = None

    # -- public API -------------------------------------------------------------------------------

    def create_if_missing(self) -> bool:
        """Create an empty notebook on the server if there is none; return True if one was created."""
        with self._mutex:
            if self._get(content=False, missing_ok=True) is not None:
                return False
            folder = self.notebook_path.rpartition("/")[0]
            if folder and not self._folder_exists(folder):
                raise NotebookNotFoundError(self.notebook_path, f"its folder {folder!r} does not exist on the server")
            self._put(new_notebook())
            logger.info("created empty notebook %s", self.path)
            return True

    def read_if_unchanged(self) -> NotebookNode | None:
        """Always None: only a request to the server can tell, so callers use `read` (on a thread)."""
        return None

    def changed_on_disk(self) -> bool:
        """True when the server's notebook differs from what we last read or wrote."""
        with self._mutex:
            model = self._get(content=False, missing_ok=True)
            return model is None or not _same(self._seen, _version(model))

    def edit(self, apply: Callable[[NotebookNode], T]) -> T:
        """Apply `apply` to the freshest notebook and save it, unless someone saved a newer one meanwhile.

        One read (the server's version, and its content only when it changed) and one write (issue 25: it
        was two reads). An `apply` slower than RECHECK_AFTER is followed by a second look at the version, as
        someone may have saved meanwhile; if so, the newer version is downloaded and `apply` runs again on it
        (at most CONFLICT_RETRIES times), so their change and ours both survive. If `apply` raises, nothing
        is saved and the in-memory copy is dropped.
        """
        with self._mutex:
            for _ in range(CONFLICT_RETRIES + 1):
                nb = self._refresh()
                started = time.monotonic()
                try:
                    result = apply(nb)
                except BaseException:
                    self._forget()
                    raise
                if time.monotonic() - started > RECHECK_AFTER:
                    latest = self._get(content=False)
                    assert latest is not None
                    if not _same(self._seen, _version(latest)):
                        logger.info("%s was saved by someone else meanwhile; applying the change to theirs", self.path)
                        self._forget()
                        continue
                self._put(nb)
                return result
        raise NotebookWriteError(
            f"{self.path} kept changing on the server ({CONFLICT_RETRIES + 1} attempts); nothing was saved, try again"
        )

    def close(self) -> None:
        """Close the HTTP connections (a later call opens new ones)."""
        with self._mutex:
            if self._http is not None and self._http is not self._given_client:
                self._http.close()
            self._http = None

    @property
    def _client(self) -> httpx2.Client:
        if self._http is None:
            self._http = self._given_client or self.server.client()
        return self._http

    # -- internals --------------------------------------------------------------------------------

    def _forget(self) -> None:
        self._nb = None
        self._seen = None

    def _refresh(self) -> NotebookNode:
        if self._nb is not None:
            latest = self._get(content=False)
            assert latest is not None
            if _same(self._seen, _version(latest)):
                if latest.get("hash") is not None:
                    self._seen = _version(latest)  # learn the hash the PUT response lacked
                return self._nb
            logger.info("%s changed on the server; reloaded", self.path)
        model = self._get(content=True)
        assert model is not None
        content = model.get("content")
        if not isinstance(content, dict) or not isinstance(content.get("cells"), list):
            raise NotebookFormatError(self.path, "the server did not return notebook content")
        self._nb = nbformat.from_dict(content)
        self._seen = _version(model)
        return self._nb

    def _get(self, *, content: bool, missing_ok: bool = False) -> dict[str, Any] | None:
        params = {"type": "notebook", "content": "1" if content else "0", "hash": "1"}
        with translate_errors(self.server):
            r = self._client.get(self.path, params=params)
        if r.status_code == 404:
            if missing_ok:
                return None
            raise NotebookNotFoundError(self.notebook_path, f"{self.server.url} answered 404")
        if r.status_code == 400:
            # Jupyter's answer to a file that is not a readable notebook ("Unreadable Notebook: ...").
            raise NotebookFormatError(self.notebook_path, api_error_message(r))
        model: dict[str, Any] = json_body(self.server, r, f"reading {self.notebook_path}")
        return model

    def _folder_exists(self, folder: str) -> bool:
        with translate_errors(self.server):
            r = self._client.get(self.server.api_url("contents", folder), params={"content": "0"})
        if r.status_code == 404:
            return False
        return bool(json_body(self.server, r, f"looking up folder {folder}").get("type") == "directory")

    def _put(self, nb: NotebookNode) -> None:
        body = {"type": "notebook", "format": "json", "content": nb}
        with translate_errors(self.server):
            r = self._client.put(self.path, json=body)
        if r.is_error and r.status_code not in (401, 403):
            raise NotebookWriteError(
                f"the Jupyter server could not save {self.path} (HTTP {r.status_code}): {api_error_message(r)}"
            )
        model: dict[str, Any] = json_body(self.server, r, f"saving {self.notebook_path}")
        self._nb = nb
        self._seen = _version(model)
