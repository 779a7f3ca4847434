"""The websocket to one kernel's channels on a Jupyter server (``/api/kernels/<id>/channels``).

Messages travel in Jupyter's JSON websocket format (the default protocol of every Jupyter server, no
subprotocol needed), through tornado's websocket client: tornado is what Jupyter servers themselves
are built on and already installed with jupyter_client. Every message received is put in `inbox`;
None there marks the end of the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from ..errors import KernelStartError, ServerAuthError, ServerUnreachableError
from ..jupyter.client import HTTP_TIMEOUT, JupyterServer

__all__ = [
    "CLOSE_WAIT",
    "MAX_MESSAGE_BYTES",
    "NUDGE_INTERVAL",
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "KernelChannels",
    "parent_id",
]

#: Largest websocket message accepted from the server (an output with a big image is one message).
MAX_MESSAGE_BYTES = 100 * 1024 * 1024
#: Seconds to wait for the server to acknowledge the close of the kernel's websocket.
CLOSE_WAIT = 2.0
#: Seconds between kernel_info_requests while waiting for a kernel's iopub channel to deliver.
NUDGE_INTERVAL = 0.5
#: Seconds between websocket pings. They keep an idle connection open through proxies that close quiet
#: ones (often after 60 s), and find a link that died without closing (issue 25): no pong within
#: PING_TIMEOUT closes the websocket, which the kernel then reconnects.
PING_INTERVAL = 30.0
PING_TIMEOUT = 10.0


class KernelChannels:
    """The websocket to one kernel on a Jupyter server: connect, send, receive (`inbox`), close."""

    def __init__(self, server: JupyterServer) -> None:
        self.server = server
        #: The kernel connected to, once `connect` was called.
        self.kernel_id: str | None = None
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._ws: WebSocketClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._messages = Session(username="nbmcp")

    @property
    def connected(self) -> bool:
        """True while the websocket is open: False before `connect`, after `close`, and once the
        server, a proxy or the network closed it (the reader saw the end)."""
        return self._ws is not None and self._reader is not None and not self._reader.done()

    async def connect(self, kernel_id: str) -> None:
        """Open the websocket to `kernel_id`. Reconnecting keeps the session id, so jupyter_server
        replays the messages it buffered for us while we were away (outputs of a running cell)."""
        if self._ws is not None:
            await self.close(wait=0)
        self.kernel_id = kernel_id
        url = self.server.ws_url("kernels", kernel_id, "channels") + f"?session_id={self._messages.session}"
        request = HTTPRequest(
            url, headers=self.server.headers, connect_timeout=HTTP_TIMEOUT, request_timeout=HTTP_TIMEOUT
        )
        connecting = websocket_connect(
            request, max_message_size=MAX_MESSAGE_BYTES, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT
        )
        try:
            self._ws = await asyncio.shield(connecting)
        except asyncio.CancelledError:
            # Cancelled mid-connect (nbmcp is closing): tornado completes the connection anyway, so
            # wait for it briefly and close it, or its socket outlives the event loop.
            with contextlib.suppress(Exception):
                self._ws = await asyncio.wait_for(connecting, CLOSE_WAIT)
            await self.close()
            raise
        except HTTPClientError as exc:
            if exc.code in (401, 403):
                raise ServerAuthError(self.server.url, exc.code, option=self.server.token_option) from None
            location = exc.response.headers.get("Location") if exc.response is not None else None
            if location:  # never followed: a hub's redirect leads to its login page
                raise KernelStartError(
                    f"the Jupyter server at {self.server.url} redirects the kernel's websocket to {location} "
                    "(a hub or a proxy asking for a login, or a user server that stopped)"
                ) from None
            raise KernelStartError(
                f"the Jupyter server at {self.server.url} refused the kernel's websocket (HTTP {exc.code})"
            ) from None
        except OSError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise ServerUnreachableError(self.server.url, reason, option=self.server.url_option) from None
        self.inbox = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(_read_loop(self._ws, self.inbox))

    async def close(self, wait: float = CLOSE_WAIT) -> None:
        """Close the websocket, waiting up to `wait` seconds for the server to acknowledge it."""
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        protocol = ws.protocol if ws is not None else None
        if ws is not None:
            ws.close()
        if reader is not None:
            # The reader ends when the server acknowledges the close; then no socket is left open.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader, wait)
        # Whatever the server did, the socket is closed now: tornado would otherwise leave it to
        # a 5 s abort timer on an event loop that may be gone by then.
        if protocol is not None and protocol.stream is not None and not protocol.stream.closed():
            protocol.stream.close()

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        """Send one message; returns its id, which the kernel's answers carry as their parent.

        Raises tornado's `WebSocketClosedError` when the websocket is closed.
        """
        msg = self._messages.msg(msg_type, content)
        msg["channel"] = channel
        msg["buffers"] = []
        if self._ws is None:
            raise WebSocketClosedError()
        self._ws.write_message(json.dumps(msg, default=json_default))
        return str(msg["header"]["msg_id"])

    async def wait_ready(self, timeout: float) -> None:
        """Send kernel_info_request until its iopub status arrives (the kernel may still be starting).

        A shell reply alone is not enough: a freshly started kernel answers on shell before the
        server's iopub subscription delivers anything, and outputs sent meanwhile would be lost
        (the "nudge" of jupyter_client and nbclient, done over the websocket).
        """
        deadline = time.monotonic() + timeout
        sent: set[str] = set()
        while time.monotonic() < deadline:
            sent.add(self.send("kernel_info_request", {}))
            resend_at = min(deadline, time.monotonic() + NUDGE_INTERVAL)
            while time.monotonic() < resend_at:
                try:
                    msg = await asyncio.wait_for(self.inbox.get(), timeout=max(resend_at - time.monotonic(), 0.01))
                except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                    break
                if msg is None:
                    raise KernelStartError(f"the Jupyter server at {self.server.url} closed the kernel's websocket")
                if msg.get("channel") == "iopub" and parent_id(msg) in sent:
                    return
        raise KernelStartError(f"kernel {self.kernel_id} on {self.server.url} did not answer within {timeout:g} s")


def parent_id(msg: dict[str, Any]) -> str | None:
    """The id of the message `msg` answers, if any."""
    parent = msg.get("parent_header") or {}
    return parent.get("msg_id")


async def _read_loop(ws: WebSocketClientConnection, inbox: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Move every websocket message to `inbox`; None marks the end of the connection."""
    try:
        while True:
            raw = await ws.read_message()
            if raw is None:
                break
            if isinstance(raw, bytes):
                # Binary frames carry messages with buffers (widgets, comms); outputs never have them.
                continue
            msg = json.loads(raw)
            msg.setdefault("msg_type", msg.get("header", {}).get("msg_type"))
            inbox.put_nowait(msg)
    finally:
        inbox.put_nowait(None)
