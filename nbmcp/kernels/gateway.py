"""A kernel from a Kernel Gateway or Enterprise Gateway: its kernels API only (issue 25).

Gateways run kernels for a notebook that lives elsewhere (here: on this machine, or on a Contents
server). With their default settings they refuse ``GET /api/sessions`` and ``GET /api/kernels`` (the
listing), so nothing here uses them: nbmcp starts a kernel of its own with ``POST /api/kernels``,
talks to it as to any remote kernel (`RemoteKernel`: the same websocket, reconnects and liveness
checks by id), and deletes it when it stops, and when its start fails.

The start request carries ``env`` as jupyter_server's own gateway client sends it: every ``KERNEL_*``
variable of nbmcp's environment, then ``--kernel-env NAME=VALUE``, with ``KERNEL_USERNAME`` (the user
running nbmcp) and ``KERNEL_WORKING_DIR`` (the notebook's folder) when not given. Gateways pass on
``KERNEL_*`` names (others only when their configuration allows them); Enterprise Gateway uses them to
place the kernel (user, namespace, image, working folder).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from ..jupyter.client import JupyterServer, json_body
from .base import KERNEL_START_TIMEOUT, Kernel
from .choice import KernelChoice
from .remote import RemoteKernel

__all__ = ["GATEWAY_TOKEN_OPTION", "GatewayKernel", "gateway_env", "gateway_kernels"]

logger = logging.getLogger(__name__)

#: Where a gateway's token is given (named when the gateway refuses it).
GATEWAY_TOKEN_OPTION = "--gateway-token or JUPYTER_GATEWAY_AUTH_TOKEN (the gateway's auth_token)"


def gateway_env(
    given: Mapping[str, str], notebook_dir: Path | None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``env`` of a kernel start request: ``KERNEL_*`` from `environ`, then `given`, then the defaults."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k.startswith("KERNEL_")} | dict(given)
    if "KERNEL_USERNAME" not in env:
        with contextlib.suppress(KeyError, OSError):  # no user name for this uid (some containers)
            env["KERNEL_USERNAME"] = getpass.getuser()
    if "KERNEL_WORKING_DIR" not in env and notebook_dir is not None:
        env["KERNEL_WORKING_DIR"] = str(notebook_dir)
    return env


class GatewayKernel(RemoteKernel):
    """A kernel nbmcp starts on a gateway for one notebook, and deletes when done."""

    def __init__(
        self,
        gateway: JupyterServer,
        notebook_name: str,
        *,
        env: Mapping[str, str],
        kernel_name: str | None = None,
        start_timeout: float = KERNEL_START_TIMEOUT,
    ) -> None:
        super().__init__(gateway, notebook_name, kernel_name=kernel_name, start_timeout=start_timeout)
        self.env = dict(env)
        self._reason = "--gateway"

    @property
    def choice(self) -> KernelChoice:
        """Which kernel runs the code, for `get_notebook_info`."""
        where = f"kernel {self.kernel_id} on the gateway {self.server.url}" if self.kernel_id else "a gateway kernel"
        return KernelChoice(self._kernel_name or "the gateway's default", where, self._reason)

    async def _resolve_kernel(self) -> str:
        """The kernel we started, while the gateway still has it; else a new one of our own."""
        if self.kernel_id is not None and await self._kernel_model(self.kernel_id) is not None:
            return self.kernel_id
        name = await self._installed(self._kernel_name) if self._kernel_name else None
        body: dict[str, Any] = {"env": self.env} | ({"name": name} if name else {})
        r = await self._request("POST", "kernels", what="starting a kernel on the gateway", json_body=body)
        model = json_body(self.server, r, "starting a kernel on the gateway")
        kernel_id, self._kernel_name = str(model["id"]), model.get("name")
        self._owned_kernel = True
        self.kernel_id = kernel_id  # deleted if the start fails from here on
        logger.info("started kernel %s (%s) on the gateway %s", kernel_id, self._kernel_name, self.server.url)
        return kernel_id


def gateway_kernels(
    url: str,
    token: str | None,
    notebook_name: str,
    kernel_env: Mapping[str, str],
    notebook_dir: Path | None,
    kernel_name: str | None,
) -> Callable[[NotebookNode], Kernel]:
    """A session's kernel factory for ``--gateway``: a `GatewayKernel` per notebook, named by `kernel_name`,
    else by the notebook's kernelspec when the gateway has it."""
    gateway = JupyterServer(url, token, url_option="--gateway", token_option=GATEWAY_TOKEN_OPTION)
    env = gateway_env(kernel_env, notebook_dir)

    def gateway_kernel(nb: NotebookNode) -> Kernel:
        name = kernel_name or nb.metadata.get("kernelspec", {}).get("name")
        return GatewayKernel(gateway, notebook_name, env=env, kernel_name=name)

    return gateway_kernel
