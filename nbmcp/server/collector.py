"""Python's garbage collector held off while the server starts, until its client has the tool list (issue 23).

A start creates about 150,000 objects that live as long as the process (the MCP SDK's pydantic
models, nbmcp's modules, the tools' argument models, the notebook just read) and frees few: CPython's
cyclic collector, run every 700 allocations, scanned them again and again, 75 to 100 ms of the 0.6 s
before `tools/list` was answered (about 70 ms of the empty SDK server's own start). The command holds
collection off from its first line; the server releases it once the client has its tools (or
`SETTLE_WAIT` after it started), after moving everything alive then to the permanent generation
(`gc.freeze`), so that later collections never scan it either. The cyclic garbage the start leaves
(about 7,000 objects) stays with it: the server used 0.1 to 1.3 MB more than before.
"""

from __future__ import annotations

import gc

__all__ = ["held", "hold", "release"]

_held = False


def hold() -> None:
    """Hold garbage collection off until `release` (nothing if it is already off)."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    """Collect garbage again, if `hold` held it off; what is alive now is never scanned again."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


def held() -> bool:
    """Whether `hold` holds garbage collection off."""
    return _held
