"""A remote Jupyter server: its address and token, HTTP clients for its REST API, and error mapping.

Shared by the Contents-API store (`nbmcp.notebook.contents`) and the remote kernel (`nbmcp.kernels.remote`).
The token travels only in the ``Authorization`` header: never in a URL,
an error message or a log line, and `JupyterServer`'s repr leaves it out.

A server with a password and no token (issue 25) is logged into as a browser does: ``GET /login`` for the
``_xsrf`` cookie, ``POST /login`` with the password and that value; its login cookie then goes with every
request and websocket, with ``X-XSRFToken`` (Jupyter's check on cookie-authenticated writes). The password
is sent once, in that form's body; a refusal mid-session forgets the cookie, so the next call logs in again.

HTTP goes through httpx2, which the MCP SDK already depends on: one API for the store's synchronous
calls (it runs on worker threads, like the local store) and the kernel's asynchronous ones.

Every request has a deadline (HTTP_TIMEOUT; the kernel's liveness checks and interrupts a shorter
one, `nbmcp.kernels.remote.CONTROL_TIMEOUT`), so a server that stops answering without closing its
connections (frozen, swapped out, a hung proxy) is reported by the running call at its timeout plus
a few seconds, naming the server, and the next call reconnects.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import httpx2

from ..errors import NotJupyterError, ServerAuthError, ServerResponseError, ServerUnreachableError, UsageError
from .explain import explain_api_answer, explain_hub_api, explain_redirect

__all__ = [
    "HTTP_TIMEOUT",
    "PASSWORD_OPTION",
    "JupyterServer",
    "api_error_message",
    "json_body",
    "probe",
    "raise_for_status",
    "translate_errors",
]

#: Seconds an HTTP request to the Jupyter server may take (connect, read or write) before it fails.
HTTP_TIMEOUT = 30.0

#: Where the user gives a Jupyter server's password.
PASSWORD_OPTION = "--server-password, DOCUMENT_PASSWORD or RUNTIME_PASSWORD"


@dataclass(frozen=True)
class JupyterServer:
    """A Jupyter server's base URL (``http://host:8888`` or with a base path) and its token or password."""

    url: str
    token: str | None = field(default=None, repr=False)
    #: Logged into through the server's login form when there is no token.
    password: str | None = field(default=None, repr=False)
    #: Where the user gives this server's URL, for the message when nothing answers there.
    url_option: str = field(default="DOCUMENT_URL, RUNTIME_URL or --server-url", repr=False)
    #: Where the user gives this server's token, and which token it is: the message when it is refused.
    token_option: str = field(
        default="--server-token, DOCUMENT_TOKEN or RUNTIME_TOKEN: the one the server prints at start-up "
        "(`jupyter server list` shows it), or on JupyterHub an API token from the hub's /hub/token page",
        repr=False,
    )
    #: Starts the server again when a request finds it stopped (a JupyterHub user server: --jupyterhub).
    restart: Callable[[], object] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"{self.url!r} is not a Jupyter server URL; expected e.g. http://127.0.0.1:8888")
        if parts.query or parts.username or parts.password:
            # A token in the URL would be logged by every HTTP library on the way: refuse it.
            raise UsageError(
                "give the Jupyter server URL without a query string or credentials "
                "(e.g. http://127.0.0.1:8888) and the token separately (--token, DOCUMENT_TOKEN, RUNTIME_TOKEN)"
            )
        object.__setattr__(self, "url", self.url.rstrip("/"))
        # The login's cookies (name: value), filled on first use; guarded, as threads and the event loop share it.
        object.__setattr__(self, "_login", {})
        object.__setattr__(self, "_login_lock", threading.Lock())

    @property
    def headers(self) -> dict[str, str]:
        """What authenticates a request: the token; or the login cookie (logging in first) and its XSRF header."""
        if self.token or not self.password:
            return {"Authorization": f"token {self.token}"} if self.token else {}
        cookies = self.log_in()
        return {
            "Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()),
            "X-XSRFToken": cookies.get("_xsrf", ""),
        }

    def log_in(self) -> dict[str, str]:
        """The cookies of a login with the password (logging in once); `ServerAuthError` when it is refused."""
        login: dict[str, str] = self._login  # type: ignore[attr-defined]
        with self._login_lock:  # type: ignore[attr-defined]
            if not login:
                login.update(_password_login(self))
            return dict(login)

    def forget_login(self) -> None:
        """Drop the login cookie (refused: a new server secret, or expired); the next request logs in again."""
        with self._login_lock:  # type: ignore[attr-defined]
            self._login.clear()  # type: ignore[attr-defined]

    def api_url(self, *parts: str) -> str:
        """The URL of ``/api/<parts>``, each part percent-encoded (slashes inside a path are kept)."""
        return "/".join([self.url, "api", *(quote(p, safe="/") for p in parts)])

    def ws_url(self, *parts: str) -> str:
        url = self.api_url(*parts)
        return "ws" + url[len("http") :]

    def client(self) -> httpx2.Client:
        return httpx2.Client(auth=_ServerAuth(self), timeout=HTTP_TIMEOUT)

    def async_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(auth=_ServerAuth(self), timeout=HTTP_TIMEOUT)


class _ServerAuth(httpx2.Auth):
    """`JupyterServer.headers` on each request: a login dropped after a refusal is renewed by the next one.

    With `JupyterServer.restart`, a request that the hub redirects because the user server is stopped
    (culled, or stopped by the person) starts it again and is sent once more (issue 25).
    """

    def __init__(self, server: JupyterServer) -> None:
        self.server = server

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers.update(self.server.headers)
        response = yield request
        if self.server.restart is not None and _stopped_on_hub(response):
            self.server.restart()
            request.headers.update(self.server.headers)
            yield request

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        request.headers.update(self.server.headers)
        response = yield request
        if self.server.restart is not None and _stopped_on_hub(response):
            await anyio.to_thread.run_sync(self.server.restart)  # seconds of waiting: not on the event loop
            yield request


def _stopped_on_hub(response: httpx2.Response) -> bool:
    """Whether JupyterHub answered for a user server that is not running (a redirect to /hub/user/...)."""
    return response.is_redirect and "/hub/user/" in response.headers.get("location", "")


@contextlib.contextmanager
def translate_errors(server: JupyterServer) -> Iterator[None]:
    """Turn httpx2's transport errors into `ServerUnreachableError` naming the server."""
    try:
        yield
    except httpx2.TransportError as exc:
        reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        raise ServerUnreachableError(server.url, reason, option=server.url_option) from None


def _password_login(server: JupyterServer) -> dict[str, str]:
    """Log in through the server's form: its ``_xsrf`` cookie, then the password; the cookies it sets."""
    login = f"{server.url}/login"
    with httpx2.Client(timeout=HTTP_TIMEOUT) as http, translate_errors(server):
        form = http.get(login)
        xsrf = http.cookies.get("_xsrf")
        if form.status_code != 200 or not xsrf:
            raise NotJupyterError(
                f"{server.url} has no Jupyter login form at /login (HTTP {form.status_code}) for the password in "
                f"{PASSWORD_OPTION}; give its token instead (--server-token, DOCUMENT_TOKEN or RUNTIME_TOKEN)"
            )
        answer = http.post(login, data={"password": server.password or "", "_xsrf": xsrf})
    cookies = {c.name: c.value for c in http.cookies.jar if c.value is not None}
    if not answer.is_redirect or len(cookies) < 2:  # a refusal shows the form again (HTTP 401), sets no login cookie
        raise ServerAuthError(server.url, answer.status_code, option=PASSWORD_OPTION, what="the password")
    return cookies


def api_error_message(response: httpx2.Response) -> str:
    """The server's own explanation of a failed request (Jupyter answers JSON with a "message")."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.reason_phrase or "no explanation"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("reason") or response.reason_phrase)
    return response.reason_phrase


def raise_for_status(server: JupyterServer, response: httpx2.Response, what: str) -> None:
    """Raise `ServerAuthError` for 401/403, `ServerResponseError` for any other failure, `NotJupyterError`
    for a redirect (never followed: a hub's redirect leads to its login page or its own API)."""
    if response.is_redirect:
        raise NotJupyterError(f"{what} failed: {explain_redirect(server.url, response)}")
    if response.status_code in (401, 403):
        if server.password and not server.token:
            server.forget_login()
            raise ServerAuthError(server.url, response.status_code, option=PASSWORD_OPTION, what="the login")
        raise ServerAuthError(server.url, response.status_code, option=server.token_option)
    if response.is_error:
        raise ServerResponseError(what, response.status_code, api_error_message(response))


def json_body(server: JupyterServer, response: httpx2.Response, what: str) -> Any:
    """The JSON of a successful answer; `NotJupyterError` naming the server when it is not JSON."""
    raise_for_status(server, response, what)
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
        body = "an empty body" if not response.content else f"a body of {kind}"
        raise NotJupyterError(
            f"{what} failed: {server.url} answered HTTP {response.status_code} with {body}, not Jupyter's JSON; "
            "a login page or a proxy is in the way, or the URL is not the Jupyter server's own"
        ) from None


def probe(server: JupyterServer, client: httpx2.Client) -> str:
    """The server's version from ``GET {url}/api``; `NotJupyterError` saying what answers instead."""
    hub = explain_hub_api(server.url)
    if hub is not None:
        raise NotJupyterError(hub)
    with translate_errors(server):
        response = client.get(server.api_url())
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code in (401, 403) and isinstance(body, dict):
        # Jupyter's own JSON refusal: a gateway with a token guards /api too (a server does not).
        raise ServerAuthError(server.url, response.status_code, option=server.token_option)
    version = body.get("version") if response.status_code == 200 and isinstance(body, dict) else None
    if version is None:
        raise NotJupyterError(explain_api_answer(server.url, response))
    return str(version)
