"""A remote Jupyter server: its address and token, HTTP clients for its REST API, and error mapping.

Shared by the Contents-API store (`nbmcp.notebook.contents`) and the remote kernel (`nbmcp.kernels.remote`).
The token travels only in the ``Authorization`` header: never in a URL,
an error message or a log line, and `JupyterServer`'s repr leaves it out.

HTTP goes through httpx2, which the MCP SDK already depends on: one API for the store's synchronous
calls (it runs on worker threads, like the local store) and the kernel's asynchronous ones.

Every request has a deadline (HTTP_TIMEOUT; the kernel's liveness checks and interrupts a shorter
one, `nbmcp.kernels.remote.CONTROL_TIMEOUT`), so a server that stops answering without closing its
connections (frozen, swapped out, a hung proxy) is reported by the running call at its timeout plus
a few seconds, naming the server, and the next call reconnects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2

from ..errors import NotJupyterError, ServerAuthError, ServerResponseError, ServerUnreachableError, UsageError
from .explain import explain_api_answer, explain_hub_api, explain_redirect

__all__ = [
    "HTTP_TIMEOUT",
    "JupyterServer",
    "api_error_message",
    "json_body",
    "probe",
    "raise_for_status",
    "translate_errors",
]

#: Seconds an HTTP request to the Jupyter server may take (connect, read or write) before it fails.
HTTP_TIMEOUT = 30.0


@dataclass(frozen=True)
class JupyterServer:
    """A Jupyter server's base URL (``http://host:8888`` or with a base path) and its token."""

    url: str
    token: str | None = field(default=None, repr=False)
    #: Where the user gives this server's URL, for the message when nothing answers there.
    url_option: str = field(default="DOCUMENT_URL, RUNTIME_URL or --server-url", repr=False)
    #: Where the user gives this server's token, and which token it is: the message when it is refused.
    token_option: str = field(
        default="--server-token, DOCUMENT_TOKEN or RUNTIME_TOKEN: the one the server prints at start-up "
        "(`jupyter server list` shows it), or on JupyterHub an API token from the hub's /hub/token page",
        repr=False,
    )

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

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def api_url(self, *parts: str) -> str:
        """The URL of ``/api/<parts>``, each part percent-encoded (slashes inside a path are kept)."""
        return "/".join([self.url, "api", *(quote(p, safe="/") for p in parts)])

    def ws_url(self, *parts: str) -> str:
        url = self.api_url(*parts)
        return "ws" + url[len("http") :]

    def client(self) -> httpx2.Client:
        return httpx2.Client(headers=self.headers, timeout=HTTP_TIMEOUT)

    def async_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(headers=self.headers, timeout=HTTP_TIMEOUT)


@contextlib.contextmanager
def translate_errors(server: JupyterServer) -> Iterator[None]:
    """Turn httpx2's transport errors into `ServerUnreachableError` naming the server."""
    try:
        yield
    except httpx2.TransportError as exc:
        reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        raise ServerUnreachableError(server.url, reason, option=server.url_option) from None


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
