"""`nbmcp doctor`: check a set-up without serving anything, one verdict per line with the fix.

It takes the server's own flags, so the command that fails to serve can be checked by inserting
``doctor``: the notebook (or folder), the kernel that would run and a real start of it running ``1+1``,
the lock folder, for HTTP the port and the host/token rule, for a Jupyter server its reachability,
the token, the Contents and Kernels APIs and the notebook. Exit 0 when nothing failed, 1 otherwise.

No secret is ever printed: tokens are only sent (in the ``Authorization`` header), and every line is
scrubbed of them before it is shown, in case a library echoed one back.
"""

from __future__ import annotations

from .command import doctor_cli, run_checks
from .kernel import KERNEL_CHECK_TIMEOUT, kernel_choice
from .report import Check, Verdict

__all__ = ["KERNEL_CHECK_TIMEOUT", "Check", "Verdict", "doctor_cli", "kernel_choice", "run_checks"]
