"""NotebookSession: one notebook plus the kernel that runs its code.

This is the Python API behind every MCP tool: the store knows nothing of kernels, the kernel knows
nothing of files, and only the session combines them. It is one door with three rooms behind it,
each readable alone:

- `Document` (`document.py`): reading and editing cells, under the notebook's lock, with the undo
  journal;
- `History` (`history.py`): what nbmcp changed, and undo;
- `Executions` (`executions.py`): the kernel and what runs on it (`run_all.py` runs many cells,
  `variables.py` lists the kernel's variables).

Executions do not hold the notebook's lock while they run; their outputs are written back to the cell
by its id (periodically while they stream, and when they finish), so cells inserted, moved or deleted
meanwhile never receive someone else's outputs.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import anyio
from nbformat import NotebookNode

from ..errors import NoSuchKernelError
from ..kernels.base import DEFAULT_TIMEOUT, KERNEL_START_TIMEOUT, Kernel, MissingKernel, NoKernel
from ..kernels.choice import KernelChoice, choose_kernel, has_ipykernel
from ..kernels.local import LocalKernel
from ..notebook.store import LocalStore, NotebookStore
from .activity import Activity
from .cells import CELL_TYPES
from .document import Document
from .executions import Executions
from .history import History
from .results import BackgroundExecution
from .run_all import run_all
from .variables import list_variables

__all__ = ["CREATED_NOTE_ANSWERS", "MAX_SIBLINGS_COMPARED", "KernelFactory", "NotebookSession", "created_note"]

logger = logging.getLogger(__name__)

#: Makes the kernel for a notebook (given as read when the session opens); default: a local kernel.
KernelFactory = Callable[[NotebookNode], Kernel]

#: Answers (the first ones after opening that show the notebook) that say it did not exist and was created.
CREATED_NOTE_ANSWERS = 3
#: Notebooks in the folder compared with a created one's name for "did you mean" (a huge folder is cut).
MAX_SIBLINGS_COMPARED = 10_000


def created_note(path: Path) -> str:
    """What the first answers say of a notebook nbmcp created: that it did, and a similar name in its folder.

    A mistyped path used to create an empty notebook silently; the assistant only said "no cells" (issue 24).
    """
    siblings = [p.name for p in itertools.islice(path.parent.glob("*.ipynb"), MAX_SIBLINGS_COMPARED) if p != path]
    note = f"{path.name} did not exist in {path.parent}, so nbmcp created it (empty)"
    similar = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.75)
    if similar:
        note += (
            f". Did you mean {similar[0]}? It is in the same folder: tell the user, who can correct the "
            "path in the MCP client's configuration (and delete the empty one)"
        )
    return note


P = ParamSpec("P")
R = TypeVar("R")


class delegate(Generic[P, R]):  # lower case: it reads like `property`
    """A session method that is a function of one of the session's parts, called with that part first.

    `insert_cell = delegate("document", Document.insert_cell)` makes `session.insert_cell(...)` call
    `session.document.insert_cell(...)`, with its signature and docstring: each method is written
    once, in the part that does the work.
    """

    def __init__(self, part: str, function: Callable[Concatenate[Any, P], R]) -> None:
        self.part = part
        self.function = function
        self.__doc__ = function.__doc__

    @overload
    def __get__(self, session: None, owner: type) -> delegate[P, R]: ...

    @overload
    def __get__(self, session: object, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(self, session: object, owner: type | None = None) -> delegate[P, R] | Callable[P, R]:
        if session is None:
            return self
        part = getattr(session, self.part)
        return functools.partial(self.function, part)


class NotebookSession:
    """A notebook on disk and its kernel; the API the MCP tools (and CI scripts) call."""

    def __init__(
        self,
        path: Path | str,
        *,
        kernel_name: str | None = None,
        python: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        store: NotebookStore | None = None,
        kernel_factory: KernelFactory | None = None,
        cwd: Path | str | None = None,
        read_only: bool = False,
        headless: bool = False,
        start_timeout: float = KERNEL_START_TIMEOUT,
    ) -> None:
        self.path = Path(path).absolute()
        #: A headless run (`nbmcp exec`, `Notebook.run`), as papermill's and nbclient's: the kernelspec the
        #: notebook names must be installed (else NoSuchKernelError), IPython's history stays in memory, and
        #: the file is written back in its own format (no cell ids or nbformat_minor added).
        self.headless = headless
        # The kernel's working folder, and where a .venv is looked for: the notebook's own folder,
        # unless the file run is a copy elsewhere (`nbmcp exec -o`), whose code expects the original's.
        self.cwd = Path(cwd).absolute() if cwd is not None else self.path.parent
        self._kernel_name = kernel_name
        self._python = python
        self._kernel_factory = kernel_factory
        self._start_timeout = start_timeout
        #: --read-only: no kernel starts and no program is run, not even to choose one (issue 12).
        self.read_only = read_only
        self.document = Document(store or LocalStore(self.path, keep_format=headless))
        self.changes = History(self.document, self.path)
        self.runner = Executions(self.document, self.path, timeout)
        if headless:
            self.runner.cancelled_by = "the run was stopped (a signal, or its caller)"
        #: Said by the first CREATED_NOTE_ANSWERS answers when `open` created the notebook (see `notice`).
        self._created_note = ""
        self._created_note_left = 0

    @property
    def store(self) -> NotebookStore:
        return self.document.store

    @property
    def activity(self) -> Activity:
        """What the session is doing now (the running cell, the last tool's change), for the live view."""
        return self.document.activity

    @property
    def kernel(self) -> Kernel | None:
        """The notebook's kernel (None until `open`)."""
        return self.runner.kernel

    @property
    def timeout(self) -> float:
        """Seconds an execution may run before the kernel is interrupted (unless a call gives its own)."""
        return self.runner.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self.runner.timeout = seconds

    # -- life cycle -------------------------------------------------------------------------------

    async def open(self, *, create: bool = True, start_kernel: bool = True) -> None:
        """Create the notebook if needed, check that it parses, and start its kernel in the background."""
        if create and await anyio.to_thread.run_sync(self.store.create_if_missing):
            if isinstance(self.store, LocalStore):
                self._created_note = await anyio.to_thread.run_sync(created_note, self.path)
            else:
                self._created_note = f"{self.store.path} did not exist, so nbmcp created it (empty)"
            self._created_note_left = CREATED_NOTE_ANSWERS
        nb = await self.document.read()
        self.runner.kernel = await self._make_kernel(nb)
        if start_kernel and not self.read_only:
            self.runner.kernel.start_background()

    async def _make_kernel(self, nb: NotebookNode) -> Kernel:
        if self.read_only:
            return NoKernel()
        if self._kernel_factory is not None:
            # A worker thread: choosing a local kernel runs the candidate interpreter once.
            return await anyio.to_thread.run_sync(self._kernel_factory, nb)
        try:
            choice = await self._choose_kernel(nb)
        except NoSuchKernelError as exc:
            if self.headless:
                raise
            # The server still serves the notebook (reading, editing); each execution answers with this.
            logger.error("%s", exc)
            return MissingKernel(exc.name, str(exc))
        return LocalKernel(
            choice,
            self.cwd,
            start_timeout=self._start_timeout,
            chooser=self._choose_kernel,
            history_in_memory=self.headless,
        )

    async def _choose_kernel(self, nb: NotebookNode | None = None) -> KernelChoice:
        """The local kernel for the notebook as it is now (chosen again at each restart)."""
        if nb is None:
            nb = await self.document.read()
        spec = nb.metadata.get("kernelspec", {})
        language = spec.get("language") or nb.metadata.get("language_info", {}).get("name")
        choice = await anyio.to_thread.run_sync(
            lambda: choose_kernel(
                kernel_name=self._kernel_name,
                python=self._python,
                notebook_kernel=spec.get("name"),
                notebook_dir=self.cwd,
                notebook_language=language,
                strict=self.headless,
            )
        )
        logger.info("notebook %s: kernel %s", self.path, choice.describe())
        if choice.warning:
            logger.warning("%s", choice.warning)
        return choice

    async def close(self) -> None:
        """Stop background executions, shut the kernel down and release the store's connections."""
        # Cancelling interrupts the kernel (drive_execution) and saves nothing more.
        await self.runner.cancel_all()
        if self.kernel is not None:
            await self.kernel.shutdown()
        await anyio.to_thread.run_sync(self.store.close)

    def notice(self) -> str:
        """A note for the answer of the call being served: that `open` created the notebook (first answers only)."""
        if self._created_note_left <= 0:
            return ""
        self._created_note_left -= 1
        return self._created_note

    @property
    def kernel_choice(self) -> KernelChoice | None:
        return self.kernel.choice if self.kernel else None

    # -- reading ----------------------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """Path, cell counts by type, format version and the kernel's name, state and origin."""
        nb = await self.document.read()
        counts = Counter(c.get("cell_type", "?") for c in nb.cells)
        kernel: dict[str, Any] = {"state": "not configured"}
        if self.kernel is not None:
            kernel = {
                "name": self.kernel.choice.name,
                "state": self.kernel.state.value,
                "interpreter": self.kernel.choice.argv0,
                "chosen_by": self.kernel.choice.reason,
            }
            choice = self.kernel.choice
            if choice.install_hint:
                kernel["install_packages"] = choice.install_hint
            if choice.warning:
                kernel["warning"] = choice.warning
            fixed = choice.passed_over is not None and await anyio.to_thread.run_sync(has_ipykernel, choice.passed_over)
            if fixed:
                # Never stale (issue 24): the fix was applied since the kernel was chosen.
                kernel["warning"] = (
                    f"{choice.passed_over} has ipykernel now, but the kernel still runs on nbmcp's own Python: "
                    "restart_kernel to run the code in the project's environment"
                )
            if self.kernel.error:
                kernel["error"] = self.kernel.error
            running = self.runner.running_execution
            if running is not None:
                kernel["running_execution"] = {
                    "execution_id": running.id,
                    "what": running.describe(),
                    "elapsed_seconds": round(running.elapsed, 1),
                }
        info: dict[str, Any] = {
            "path": str(self.store.path),
            "total_cells": len(nb.cells),
            "cell_types": {t: counts.get(t, 0) for t in CELL_TYPES}
            | {k: v for k, v in counts.items() if k not in CELL_TYPES},
            "nbformat": f"{nb.nbformat}.{nb.nbformat_minor}",
            "kernel": kernel,
        }
        original = nb.metadata.get("orig_nbformat")
        if original is not None and original < nb.nbformat:
            # nbformat upgrades old notebooks as it reads them; the file stays as it was until a change.
            info["upgraded_from_nbformat"] = original
            info["note"] = (
                f"the file is nbformat {original}; it was upgraded to {nb.nbformat} when read, and the first "
                f"change saves it as nbformat {nb.nbformat}.{max(nb.nbformat_minor, 5)}"
            )
        return info

    read_cell = delegate("document", Document.read_cell)
    read_cells = delegate("document", Document.read_cells)
    read_page = delegate("document", Document.read_page)
    read_output = delegate("document", Document.read_output)

    # -- editing (Document) -----------------------------------------------------------------------

    insert_cell = delegate("document", Document.insert_cell)
    overwrite_source = delegate("document", Document.overwrite_source)
    edit_source = delegate("document", Document.edit_source)
    move_cell = delegate("document", Document.move_cell)
    delete_cell = delegate("document", Document.delete_cell)
    clear_outputs = delegate("document", Document.clear_outputs)
    clear_all_outputs = delegate("document", Document.clear_all_outputs)

    # -- undo (History) ---------------------------------------------------------------------------

    history = delegate("changes", History.history)
    undo = delegate("changes", History.undo)
    clear_history = delegate("changes", History.clear_history)
    forget_changes = delegate("changes", History.forget_changes)

    # -- execution (Executions) -------------------------------------------------------------------

    check_idle = delegate("runner", Executions.check_idle)
    execute_cell = delegate("runner", Executions.execute_cell)
    execute_code = delegate("runner", Executions.execute_code)
    start_cell = delegate("runner", Executions.start_cell)
    start_code = delegate("runner", Executions.start_code)
    wait_execution = delegate("runner", Executions.wait_execution)
    execution = delegate("runner", Executions.execution)
    executions = delegate("runner", Executions.executions)
    run_all = delegate("runner", run_all)
    list_variables = delegate("runner", list_variables)
    interrupt = delegate("runner", Executions.interrupt)
    restart_kernel = delegate("runner", Executions.restart_kernel)

    @property
    def running_execution(self) -> BackgroundExecution | None:
        return self.runner.running_execution
