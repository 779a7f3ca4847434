"""Checks of a Kernel or Enterprise Gateway (--gateway) with the endpoints a gateway has (issue 25).

A gateway has ``/api``, ``/api/kernelspecs`` and ``/api/kernels`` (starting, looking up and deleting
kernels by id); with its default settings no ``/api/status``, no ``/api/sessions`` and no kernel listing.
"""

from __future__ import annotations

import httpx2

from ...config import Settings
from ...errors import NbmcpError, ServerAuthError
from ...jupyter.client import JupyterServer, api_error_message, probe
from ...kernels.gateway import GATEWAY_TOKEN_OPTION, GatewayKernel, gateway_env
from .kernel import KERNEL_CHECK_TIMEOUT, run_kernel_check
from .report import Check, Verdict

__all__ = ["check_gateway"]

#: Seconds each request to the gateway may take in the checks.
GATEWAY_CHECK_TIMEOUT = 10.0


def _access(gateway: JupyterServer, http: httpx2.Client) -> list[Check]:
    """Reachable (GET /api), then the token and the kernelspecs (GET /api/kernelspecs)."""
    try:
        version = probe(gateway, http)
    except ServerAuthError as exc:  # a gateway with a token guards /api too
        return [
            Check("gateway reachable", Verdict.PASS, f"{gateway.url}: answers, and requires a token"),
            Check("gateway token", Verdict.FAIL, str(exc), GATEWAY_TOKEN_OPTION),
        ]
    except NbmcpError as exc:
        return [Check("gateway reachable", Verdict.FAIL, str(exc), "correct --gateway, or start the gateway")]
    checks = [Check("gateway reachable", Verdict.PASS, f"{gateway.url}: API version {version}")]
    r = http.get(gateway.api_url("kernelspecs"))
    if r.status_code in (401, 403):
        given = "refused the token" if gateway.token else "requires a token and none was given"
        checks.append(
            Check("gateway token", Verdict.FAIL, f"the gateway {given} (HTTP {r.status_code})", GATEWAY_TOKEN_OPTION)
        )
        return checks
    what = "accepted" if gateway.token else "not needed (the gateway has no token)"
    checks.append(Check("gateway token", Verdict.PASS, what))
    if r.is_error:
        detail = f"GET /api/kernelspecs: HTTP {r.status_code}: {api_error_message(r)}"
        checks.append(Check("gateway kernels", Verdict.FAIL, detail, "is --gateway a Kernel or Enterprise Gateway?"))
        return checks
    try:
        body = r.json()
        names = sorted(body.get("kernelspecs", {}))
    except (ValueError, AttributeError):
        checks.append(Check("gateway kernels", Verdict.FAIL, "GET /api/kernelspecs did not answer JSON", ""))
        return checks
    checks.append(
        Check(
            "gateway kernels",
            Verdict.PASS,
            f"kernelspecs: {', '.join(names) or 'none'} (default {body.get('default')})",
        )
    )
    return checks


def check_gateway(settings: Settings) -> list[Check]:
    """The gateway: reachable, its token, its kernelspecs, and a kernel of our own running 1+1 (then deleted)."""
    assert settings.gateway_url is not None
    gateway = JupyterServer(
        settings.gateway_url, settings.gateway_token, url_option="--gateway", token_option=GATEWAY_TOKEN_OPTION
    )
    with httpx2.Client(headers=gateway.headers, timeout=GATEWAY_CHECK_TIMEOUT) as http:
        checks = _access(gateway, http)
    if checks[-1].verdict is not Verdict.PASS:
        checks.append(Check("kernel run", Verdict.SKIP, "not tried: the gateway cannot be used"))
    elif settings.read_only:
        checks.append(Check("kernel run", Verdict.SKIP, "--read-only: nbmcp runs no code"))
    else:
        folder = None if settings.document_url else (settings.path if settings.path.is_dir() else settings.path.parent)
        env = gateway_env(dict(settings.kernel_env), folder)
        name = settings.path.name if settings.path.suffix == ".ipynb" else "doctor.ipynb"
        kernel = GatewayKernel(gateway, name, env=env, kernel_name=settings.kernel, start_timeout=KERNEL_CHECK_TIMEOUT)
        check = run_kernel_check(kernel, "gateway")
        if check.verdict is Verdict.PASS:
            check.detail = f"a new gateway kernel, deleted afterwards: {check.detail}"
        checks.append(check)
    return checks
