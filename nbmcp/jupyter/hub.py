"""JupyterHub as a named target: a user's server found, and started when it is stopped, through the hub's API.

``--jupyterhub URL --user NAME`` (issue 25): ``GET /hub/api/users/NAME`` tells where NAME's default server
is and whether it runs; a stopped one is started (``POST /hub/api/users/NAME/server``) and followed on the
hub's progress stream (``.../server/progress``), each of its messages logged, until it is ready, failed,
or START_TIMEOUT passes. Then nbmcp works against ``{hub}/user/NAME/`` as against any Jupyter server, with
the same token. The token needs the scopes in HUB_SCOPES (a token from ``{hub}/hub/token`` has them for
its owner). It travels only in the ``Authorization`` header and appears in no message.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2

from ..errors import HubError, NotJupyterError, ServerAuthError, ServerUnreachableError, UsageError
from .client import HTTP_TIMEOUT, api_error_message

__all__ = [
    "HUB_SCOPES",
    "HUB_TOKEN_OPTION",
    "START_TIMEOUT",
    "hub_base",
    "restarter",
    "running_server_url",
    "user_server_url",
]

logger = logging.getLogger(__name__)

#: Seconds nbmcp waits for a stopped user server to start. The hub gives up first on its own
#: (``Spawner.start_timeout``, 60 s by default) and says so on the progress stream; this bounds a hub that never does.
START_TIMEOUT = 300.0

#: The hub API token's scopes nbmcp needs, for NAME: find the server, start it, use it.
HUB_SCOPES = "read:servers!user=NAME, servers!user=NAME (to start it), access:servers!user=NAME"

#: Where the user gives the hub's URL, for the message when nothing answers there.
HUB_URL_OPTION = "--jupyterhub or JUPYTERHUB_URL"
#: Where the user gives the hub's token, for the message when it is refused.
HUB_TOKEN_OPTION = (
    "JUPYTERHUB_API_TOKEN or --server-token: an API token from the hub's /hub/token page "
    f"(scopes {HUB_SCOPES.replace('NAME', '<user>')})"
)


def hub_base(url: str) -> str:
    """The hub's public base URL as given (``http://hub``, ``http://host/jhub``), without a trailing ``/hub``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.username or parts.password:
        raise UsageError(
            f"--jupyterhub {url!r}: expected the hub's address without a query or credentials, e.g. https://hub.example.org"
        )
    path = parts.path.rstrip("/").removesuffix("/hub")
    return f"{parts.scheme}://{parts.netloc}{path}"


def user_server_url(
    hub: str, user: str, token: str | None, *, timeout: float = START_TIMEOUT, client: httpx2.Client | None = None
) -> str:
    """The URL of `user`'s running default server on the hub at `hub` (see `hub_base`), started when stopped.

    Raises `HubError` when the hub has no such user (for this token), cannot start the server or it does not
    start within `timeout` seconds; `ServerAuthError` naming the scopes when the token is refused.
    """
    http = client or httpx2.Client(headers={"Authorization": f"token {token}"} if token else {}, timeout=HTTP_TIMEOUT)
    try:
        return _HubUser(hub, user, http).running_server(time.monotonic() + timeout, timeout)
    finally:
        if client is None:
            http.close()


def running_server_url(hub: str, user: str, token: str | None) -> str | None:
    """The URL of `user`'s default server if it runs (None if stopped or starting), never starting it."""
    with httpx2.Client(headers={"Authorization": f"token {token}"} if token else {}, timeout=HTTP_TIMEOUT) as http:
        server = _HubUser(hub, user, http).server()
    return _HubUser.origin_of(hub) + str(server["url"]) if server is not None and server.get("ready") else None


_RESTARTING = threading.Lock()


def restarter(hub: str, user: str, token: str | None) -> Callable[[], str]:
    """What starts `user`'s server again when a request finds it stopped mid-session (`JupyterServer.restart`).

    One start at a time: the store's thread and the kernel's event loop may both find it stopped.
    """

    def restart() -> str:
        with _RESTARTING:
            logger.warning("%s's server on the hub at %s was stopped; starting it again", user, hub)
            return user_server_url(hub, user, token)

    return restart


class _HubUser:
    """One user's default server on one hub, through `http` (which carries the token)."""

    def __init__(self, hub: str, user: str, http: httpx2.Client) -> None:
        self.hub, self.user, self.http = hub, user, http
        self.api = f"{hub}/hub/api/users/{quote(user, safe='')}"
        self.origin = self.origin_of(hub)

    @staticmethod
    def origin_of(hub: str) -> str:
        """``scheme://host:port`` of the hub: the hub's answers give paths (with its base URL) from there."""
        parts = urlsplit(hub)
        return f"{parts.scheme}://{parts.netloc}"

    def running_server(self, deadline: float, timeout: float) -> str:
        server = self.server()
        if server is not None and server.get("ready"):
            return self.origin + str(server["url"])
        if server is None or server.get("pending") == "stop":
            self.wait_stopped(deadline)
            self.start(deadline)
        url = self.follow_progress(deadline, timeout)
        logger.info("%s's server on the hub is ready at %s", self.user, url)
        return url

    def server(self) -> dict[str, Any] | None:
        """The user's default server as the hub describes it (``url``, ``ready``, ``pending``), None if stopped."""
        r = self.request("GET", self.api)
        if r.status_code == 404:
            raise HubError(
                f"the hub at {self.hub} has no user {self.user!r}, or the token may not see it (it needs the scope "
                f"read:servers!user={self.user}); check --user or JUPYTERHUB_USER"
            )
        model = self.json(r, f"GET {self.api}")
        servers = model.get("servers")
        if not isinstance(servers, dict):
            raise HubError(
                f"the hub at {self.hub} does not show {self.user}'s servers to this token: it needs the scope "
                f"read:servers!user={self.user} (all: {HUB_SCOPES.replace('NAME', self.user)})"
            )
        server = servers.get("")
        return server if isinstance(server, dict) and not server.get("stopped") else None

    def start(self, deadline: float) -> None:
        logger.info("%s's server on the hub at %s is stopped; starting it", self.user, self.hub)
        # The hub answers once the server is up or after its slow_spawn_timeout (10 s): 201 or 202.
        try:
            r = self.request("POST", f"{self.api}/server", timeout=max(deadline - time.monotonic(), 0.001))
        except httpx2.ReadTimeout:
            return  # the hub has the request and goes on starting it; follow_progress says how long we waited
        if r.status_code == 403:
            raise HubError(
                f"the hub at {self.hub} refused to start {self.user}'s server (HTTP 403: {api_error_message(r)}): "
                f"the token needs the scope servers!user={self.user}, or start it at {self.hub}/hub/spawn/{self.user}"
            )
        if r.status_code == 400 and "already" in api_error_message(r):
            return  # started meanwhile (by the person, in the browser)
        if r.is_error or r.is_redirect:
            raise HubError(
                f"the hub at {self.hub} could not start {self.user}'s server (HTTP {r.status_code}: "
                f"{api_error_message(r)}); its log says why"
            )

    def wait_stopped(self, deadline: float) -> None:
        """Wait while the server is being stopped (a start is refused meanwhile)."""
        while (server := self.server()) is not None and server.get("pending") == "stop":
            if time.monotonic() > deadline:
                raise HubError(f"{self.user}'s server on the hub at {self.hub} is still stopping; try again later")
            time.sleep(0.2)

    def follow_progress(self, deadline: float, timeout: float) -> str:
        """Log the hub's progress messages until the server is ready; its URL."""
        url = f"{self.api}/server/progress"
        remaining = deadline - time.monotonic()
        try:
            with self.http.stream("GET", url, timeout=httpx2.Timeout(HTTP_TIMEOUT, read=max(remaining, 0.001))) as r:
                if r.status_code == 200 and remaining > 0:
                    for line in r.iter_lines():
                        ready = self.progress_event(line)
                        if ready is not None:
                            return ready
                        if time.monotonic() > deadline:
                            break
        except httpx2.TransportError as exc:
            if not isinstance(exc, httpx2.ReadTimeout):
                raise ServerUnreachableError(self.hub, type(exc).__name__, option=HUB_URL_OPTION) from None
        server = self.server()  # the stream ended, or a hub without one: what is the state now?
        while server is not None and not server.get("ready") and time.monotonic() < deadline:
            time.sleep(0.5)
            server = self.server()
        if server is not None and server.get("ready"):
            return self.origin + str(server["url"])
        if server is None:
            raise HubError(
                f"{self.user}'s server on the hub at {self.hub} did not start (it stopped): see the hub's log"
            )
        raise HubError(
            f"{self.user}'s server on the hub at {self.hub} did not start within {timeout:g} s (the hub says: "
            f"pending {server.get('pending')}); try again, or look at the hub's log"
        )

    def progress_event(self, line: str) -> str | None:
        """Log one line of the progress stream; the server's URL when it says ready, HubError when it failed."""
        if not line.startswith("data:"):
            return None  # keep-alives and blank separators
        try:
            event = json.loads(line[len("data:") :])
        except ValueError:
            return None
        message = str(event.get("message") or "")
        logger.info("%s's server: %s (%s%%)", self.user, message, event.get("progress", "?"))
        if event.get("failed"):
            raise HubError(f"the hub at {self.hub} could not start {self.user}'s server: {message}")
        if event.get("ready") and event.get("url"):
            return self.origin + str(event["url"])
        return None

    def request(self, method: str, url: str, timeout: float = HTTP_TIMEOUT) -> httpx2.Response:
        try:
            r = self.http.request(method, url, timeout=httpx2.Timeout(HTTP_TIMEOUT, read=timeout))
        except httpx2.ReadTimeout:
            if timeout < HTTP_TIMEOUT:
                raise  # the caller's own deadline
            raise ServerUnreachableError(self.hub, "ReadTimeout", option=HUB_URL_OPTION) from None
        except httpx2.TransportError as exc:
            raise ServerUnreachableError(self.hub, type(exc).__name__, option=HUB_URL_OPTION) from None
        if r.status_code == 401:
            raise ServerAuthError(self.hub, r.status_code, option=HUB_TOKEN_OPTION)
        return r

    def json(self, r: httpx2.Response, what: str) -> dict[str, Any]:
        if r.status_code == 403:
            raise ServerAuthError(self.hub, r.status_code, option=HUB_TOKEN_OPTION)
        try:
            body = r.json() if not (r.is_redirect or r.is_error) else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise NotJupyterError(
                f"{self.hub} is not a JupyterHub or not its base URL ({what}: HTTP {r.status_code}, not the hub's JSON)"
            )
        return body
