"""Settings: one object built from CLI flags and environment variables, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .kernel import DEFAULT_TIMEOUT
from .render import MAX_IMAGE_BYTES, MAX_OUTPUT_CHARS

__all__ = ["LOG_LEVELS", "TRANSPORTS", "Settings"]

TRANSPORTS = ("stdio", "streamable-http")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _default_log_level() -> str:
    return os.environ.get("NBMCP_LOG_LEVEL", "INFO").upper()


def _default_token() -> str | None:
    return os.environ.get("NBMCP_TOKEN") or None


def _default_timeout() -> float:
    return float(os.environ.get("NBMCP_TIMEOUT", DEFAULT_TIMEOUT))


@dataclass(frozen=True)
class Settings:
    """Everything a run of nbmcp is configured with."""

    path: Path
    transport: str = "stdio"
    kernel: str | None = None
    python: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    log_level: str = "INFO"
    max_output_chars: int = MAX_OUTPUT_CHARS
    """Characters of output text the model gets per answer (--max-output-chars)."""
    max_image_bytes: int = MAX_IMAGE_BYTES
    """Largest image returned as image content (--max-image-bytes); larger ones become a note."""
    host: str = "127.0.0.1"
    port: int = 4040
    token: str | None = field(default=None, repr=False)
    """Bearer token required on every MCP request over HTTP (never logged: repr=False)."""
    allowed_hosts: tuple[str, ...] = ()
    watch: bool = True
    """Watch the file for changes made by others and tell clients (off: changes are still seen at
    the next tool call, because every call checks the file)."""
    tools: tuple[str, ...] | None = None
    """Only these tools are listed (--tools); None lists all."""
    read_only: bool = False
    """List only tools that change nothing (--read-only); the others refuse when called."""
