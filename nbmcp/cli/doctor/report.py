"""The checklist `nbmcp doctor` prints: one `Check` per line, each with a `Verdict`, as text or JSON."""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ... import __version__
from ...config import Settings

__all__ = ["Check", "Verdict", "render_json", "render_text", "scrub", "verdict_line"]


class Verdict(str, enum.Enum):
    """The outcome of one check."""

    PASS = "pass"
    """Works as nbmcp needs it."""
    WARN = "warn"
    """Works, but probably not as the user means (e.g. the kernel is nbmcp's own Python)."""
    FAIL = "fail"
    """nbmcp would not start or not work; the check carries the fix."""
    SKIP = "skip"
    """Not checked: not needed with these flags, or an earlier failure makes it meaningless."""


@dataclass
class Check:
    """One line of the checklist."""

    name: str
    verdict: Verdict
    detail: str
    fix: str = ""
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "detail": self.detail,
            "fix": self.fix,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
        }


# -- output ----------------------------------------------------------------------------------------

_MARK = {Verdict.PASS: " ok ", Verdict.WARN: "warn", Verdict.FAIL: "FAIL", Verdict.SKIP: "skip"}


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every given secret replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def render_text(settings: Settings, checks: list[Check]) -> str:
    """The checklist as a person reads it: one line per check, the fix under each failure or warning."""
    where = settings.path if not settings.document_url else f"{settings.path} on {settings.document_url}"
    lines = [f"nbmcp doctor {__version__}: {where} ({settings.transport})"]
    width = max(len(c.name) for c in checks)
    for c in checks:
        lines.append(f"[{_MARK[c.verdict]}] {c.name:<{width}}  {c.detail}")
        if c.fix and c.verdict in (Verdict.FAIL, Verdict.WARN):
            lines.append(f"       {'':<{width}}  fix: {c.fix}")
    lines.append(verdict_line(checks))
    return "\n".join(lines)


def verdict_line(checks: list[Check]) -> str:
    """The last line: failures first, and warnings counted apart from passes ("4 passed, 1 warning.").

    A warning once ended "All 5 checks passed", which read as nothing to do (issue 24).
    """
    counts = Counter(c.verdict for c in checks)
    warnings = counts[Verdict.WARN]
    parts = [f"{counts[Verdict.PASS]} passed"]
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings > 1 else ''}")
    if counts[Verdict.SKIP]:
        parts.append(f"{counts[Verdict.SKIP]} skipped")
    if counts[Verdict.FAIL]:
        return f"{counts[Verdict.FAIL]} of {len(checks)} checks failed ({', '.join(parts)})."
    return ", ".join(parts) + "."


def render_json(settings: Settings, checks: list[Check]) -> str:
    """The checklist as JSON, for scripts."""
    report = {
        "version": __version__,
        "path": str(settings.path),
        "transport": settings.transport,
        "ok": not any(c.verdict is Verdict.FAIL for c in checks),
        "checks": [c.as_dict() for c in checks],
    }
    return json.dumps(report, indent=1)
