"""What a URL that does not answer like a Jupyter server most likely is, in one line a user can act on.

A Jupyter server answers ``GET {url}/api`` with ``{"version": ...}``. What people give instead, and what
answers (issue 25): a JupyterHub's root (redirects to ``/hub/...``; its own ``/hub/api`` even answers a
version, which is why redirects are never followed), a user server that is stopped or culled (the hub
redirects to ``/hub/...``), a JupyterLab page (``.../lab``, ``.../tree``: a 404 under it), a server with a
``base_url`` addressed without it (404). Each gets its own explanation.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx2

__all__ = ["PAGE_SEGMENTS", "explain_api_answer", "explain_hub_api", "explain_redirect", "hub_user", "page_base"]

#: Path segments that begin a page of JupyterLab or the classic notebook, never a server's base URL.
PAGE_SEGMENTS = ("lab", "tree", "notebooks", "edit", "doc", "view", "terminals", "voila")


def hub_user(url: str) -> tuple[str, str] | None:
    """``(hub base URL, NAME)`` for a JupyterHub user server's URL (``.../user/NAME/...``), else None."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    if "user" in segments[:-1]:
        i = segments.index("user")
        if segments[i + 1]:
            return f"{parts.scheme}://{parts.netloc}" + "/".join(segments[:i]), segments[i + 1]
    return None


def page_base(url: str) -> str | None:
    """The server's base URL when `url` is one of its pages (``.../lab``, ``.../tree/x``), else None."""
    parts = urlsplit(url)
    segments = parts.path.rstrip("/").split("/")
    for i, segment in enumerate(segments):
        if segment in PAGE_SEGMENTS and i > 0 and segments[i - 1] != "user":  # /user/lab/: a hub user named lab
            return f"{parts.scheme}://{parts.netloc}" + "/".join(segments[:i])
    return None


def explain_hub_api(url: str) -> str | None:
    """For the hub's own URL (``.../hub``, whose ``/api`` answers a version too): what to give instead."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/hub"):
        return None
    base = f"{parts.scheme}://{parts.netloc}{path.removesuffix('/hub')}"
    return f"{url} is JupyterHub's own API, not a Jupyter server: give your server's URL, {base}/user/NAME"


def explain_redirect(url: str, response: httpx2.Response) -> str:
    """Why `url` (a server's base URL) redirects, for a response with a ``Location``."""
    location = urljoin(str(response.request.url), response.headers.get("location", ""))
    target = urlsplit(location).path
    if "/hub/" in target + "/":
        user = hub_user(url)
        if user is None:
            return (
                f"{url} is a JupyterHub (it redirects to {target}), not a Jupyter server: give your own server's "
                f"URL, {url}/user/NAME (NAME: your hub user name)"
            )
        hub, name = user
        if "/hub/login" in target:
            return (
                f"the hub at {hub} sends requests for {url} to its login page ({target}): the token is not one the "
                f"hub accepts for {name} (use an API token from {hub}/hub/token), or {name}'s server is stopped: "
                f"start it at {hub}/hub/spawn/{name}"
            )
        return (
            f"{url} redirects to the hub ({target}): {name}'s server is not running (stopped or culled); start it "
            f"at {hub}/hub/spawn/{name} (or from the hub's home page), then try again"
        )
    return (
        f"{url} redirects to {location} (HTTP {response.status_code}) instead of answering as a Jupyter server: "
        "a login page or a proxy is in the way, or the URL is not the server's own"
    )


def explain_api_answer(url: str, response: httpx2.Response) -> str:
    """Why ``GET {url}/api`` answered `response` rather than Jupyter's ``{"version": ...}``."""
    if response.is_redirect:
        return explain_redirect(url, response)
    base = page_base(url)
    if base is not None:
        return f"{url} is a page of JupyterLab or the notebook, not the server's base URL: give {base}"
    status = response.status_code
    if status == 404:
        return (
            f"{url} has no Jupyter server API (GET /api: HTTP 404); if the server runs under a base path "
            "(its --ServerApp.base_url; /user/NAME on JupyterHub), include it in the URL"
        )
    if status in (401, 403):
        return (
            f"{url} refused GET /api (HTTP {status}), which a Jupyter server answers to anyone: a login page or "
            "a proxy is in front of it; give the Jupyter server's own URL"
        )
    kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
    return f"{url} answers GET /api with HTTP {status} ({kind}), not Jupyter's JSON: is it a Jupyter server's URL?"
