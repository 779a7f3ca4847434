"""Run at the start of every Python the tests start (tests/conftest.py puts this folder on PYTHONPATH).

jsonschema imports rfc3987_syntax when it is installed, and the test environment has it (jupyter_server
needs jupyter_events, which needs jsonschema[format-nongpl]): that import builds a grammar and costs
each process about 1.3 s of CPU, for "iri" string formats nothing here checks. Every jupyter server,
JupyterHub, kernel gateway, papermill, nbmake and helper script the tests start imports jsonschema, so
on a 2-core machine this was about a sixth of the test run. nbmcp's own command skips the same imports
(nbmcp/cli/main.py); this does it for the other programs. Nothing else changes: jsonschema simply does
not check those formats.

ipykernel loads debugpy at each kernel start, for the debugger of JupyterLab's debug panel, which no test
uses: about 0.09 s of CPU of a kernel's 0.35 s, over the suite's 200 or so kernels. Without it a kernel
starts as it does where debugpy is not installed, and says in its kernel_info that it has no debugger.
"""

import sys

if "jsonschema" not in sys.modules:
    for _name in ("rfc3987_syntax", "isoduration", "webcolors", "uri_template", "fqdn"):
        sys.modules.setdefault(_name, None)
sys.modules.setdefault("debugpy", None)
