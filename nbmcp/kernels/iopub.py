"""A local kernel's output channel that never drops a message, however large the burst (issue 24).

Outputs travel on zmq PUB/SUB sockets, which drop messages beyond a high-water mark: 1,000 queued
on each side by default, and neither jupyter_client nor ipykernel changes it. A cell that displays
10,000 items while the machine is busy produced them faster than nbmcp read them: its tail was lost,
and with it, at times, the "idle" status that ends the execution, so the call waited for its
timeout. Both marks are lifted here: nbmcp's subscriber queues everything it receives, and the
kernel's publisher queues everything it cannot send yet, until nbmcp reads it. The outputs of such
a burst wait in memory for a moment instead of being lost.
"""

from __future__ import annotations

import queue
import time
from typing import Any

__all__ = ["UNLIMITED_IOPUB_CODE", "queue_every_message", "send_every_message"]

#: Run (silently) in an ipykernel once it is ready: the kernel's iopub publisher stops dropping.
#: The option is set from the kernel's IOPub thread, which owns the socket; libzmq applies a new
#: high-water mark to connections already made. Kernels built otherwise are left as they are.
UNLIMITED_IOPUB_CODE = """\
def _nbmcp_send_every_message():
    import zmq
    thread = getattr(getattr(get_ipython(), "kernel", None), "iopub_thread", None)
    socket = getattr(thread, "socket", None)
    if socket is not None and hasattr(thread, "schedule"):
        thread.schedule(lambda: socket.setsockopt(zmq.SNDHWM, 0))
_nbmcp_send_every_message()
del _nbmcp_send_every_message
"""


def queue_every_message(kc: Any) -> None:
    """Make the client's sockets, made from here on, queue every message they receive.

    A default of the client's own context, applied when `start_channels` makes the sockets.
    """
    import zmq

    kc.context.setsockopt(zmq.RCVHWM, 0)


async def send_every_message(kc: Any, *, timeout: float) -> None:
    """Lift the kernel's own iopub high-water mark (an ipykernel), and wait until it has done so.

    Silent: no execution count, no history, no output. A kernel that refuses is left as it is.
    """
    msg_id = kc.execute(UNLIMITED_IOPUB_CODE, silent=True, store_history=False, allow_stdin=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = await kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            return
        if reply.get("parent_header", {}).get("msg_id") == msg_id:
            return
