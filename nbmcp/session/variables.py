"""The user's variables in the kernel, as list_variables reports them."""

from __future__ import annotations

from ..errors import KernelError
from .executions import Executions
from .results import Variable

__all__ = ["MAX_VARIABLES", "VARIABLE_REPR_CHARS", "list_variables"]

#: Variables listed by list_variables at most (the largest namespaces are cut, with a note).
MAX_VARIABLES = 500
#: Characters of each variable's repr that list_variables returns.
VARIABLE_REPR_CHARS = 120

# Runs in the kernel for list_variables, wrapped in `exec(..., {})` and with store_history=False: it
# adds no cell, no history entry and no execution count, and defines nothing in the user's namespace.
# The answer comes back as an application/json display, not through stdout, so a repr that prints
# cannot corrupt it.
_VARIABLES_CODE = """\
import reprlib, types
from IPython import get_ipython
from IPython.display import display

short = reprlib.Repr()
short.maxstring = short.maxother = WIDTH
short.maxlist = short.maxtuple = short.maxdict = short.maxset = 10

def describe(name, value):
    kind = type(value)
    module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
    try:
        text = " ".join(short.repr(value).split())
    except Exception as exc:
        text = f"<repr failed: {type(exc).__name__}>"
    if len(text) > WIDTH:
        text = text[: WIDTH - 3] + "..."
    shape = getattr(value, "shape", None) if not isinstance(value, type) else None
    if not (isinstance(shape, tuple) and all(isinstance(n, int) for n in shape)):
        shape = None
    return {"name": name, "type": module + kind.__qualname__, "shape": shape, "repr": text}

ip = get_ipython()
names = sorted(
    name for name, value in list(ip.user_ns.items())
    if not name.startswith("_") and name not in ip.user_ns_hidden and not isinstance(value, types.ModuleType)
)
display(
    {"application/json": {"total": len(names), "variables": [describe(n, ip.user_ns[n]) for n in names[:LIMIT]]}},
    raw=True,
)
"""


async def list_variables(executions: Executions) -> tuple[list[Variable], int, str]:
    """The user's variables in the kernel (name, type, shape, short repr), how many there are, and a note.

    The note is the kernel's, about itself (it is not the project's Python, it had died): when this is
    the kernel's first run, the answer must carry it.

    Modules and names starting with "_" are left out; at most MAX_VARIABLES are returned.
    """
    code = _VARIABLES_CODE.replace("WIDTH", str(VARIABLE_REPR_CHARS)).replace("LIMIT", str(MAX_VARIABLES))
    result = await executions.execute_code(f"exec({code!r}, {{}})", timeout=min(executions.timeout, 30.0))
    for output in result.outputs:
        data = output.get("data", {}).get("application/json")
        if isinstance(data, dict) and "variables" in data:
            variables = [
                Variable(v["name"], v["type"], v["repr"], list(v["shape"]) if v.get("shape") else None)
                for v in data["variables"]
            ]
            return variables, int(data["total"]), result.note
    problem = "; ".join(
        f"{o.get('ename')}: {o.get('evalue')}" if o.get("output_type") == "error" else str(o.get("text", ""))
        for o in result.outputs
    )
    raise KernelError(
        f"could not list the kernel's variables ({result.status}{': ' + problem if problem else ''}); "
        "list_variables needs an IPython kernel (Python)"
    )
