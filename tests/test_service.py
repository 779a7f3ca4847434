"""examples/nbmcp.service: the keys a safe user unit needs, its command line, and `systemd-analyze verify`."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbmcp.cli.main import cli

from .test_remote import _free_port

UNIT = Path(__file__).parent.parent / "examples" / "nbmcp.service"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def exec_start(home: Path) -> list[str]:
    return shlex.split(unit()["Service"]["ExecStart"].replace("%h", str(home)))


def test_the_unit_restarts_on_failure_keeps_the_token_out_and_listens_on_loopback() -> None:
    u = unit()
    service = u["Service"]
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "%h/.config/nbmcp/env"  # the token's file, under the user's home
    assert "token" not in service["ExecStart"].lower()  # never on the command line (`ps` shows it)
    argv = exec_start(Path("/home/u"))
    assert argv[argv.index("--transport") + 1] == "streamable-http"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "User" not in service  # a user unit runs as its user; User= is for system units
    assert u["Install"]["WantedBy"] == "default.target"  # what a user manager starts at login
    # The README's install lines create the token file readable by its owner only.
    assert "umask 077" in UNIT.read_text()


def test_its_command_line_is_one_nbmcp_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notebooks").mkdir()
    argv = exec_start(tmp_path)
    assert argv[0] == f"{tmp_path}/.local/bin/nbmcp"  # where `uv tool install` and `pipx install` put it
    args = argv[1:]
    args[args.index("--port") + 1] = str(_free_port())  # 4040 may be taken on this machine
    # The flags as the unit gives them, checked by the doctor (no kernel: that is not the unit's subject).
    code = cli("doctor", *args, "--read-only")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[ ok ] access" in out and "[ ok ] port" in out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / "notebooks").mkdir()
    # verify checks that ExecStart's program exists: give it the nbmcp of this environment.
    (home / ".local" / "bin" / "nbmcp").symlink_to(Path(sys.executable).parent / "nbmcp")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["systemd-analyze", "--user", "verify", str(path)], capture_output=True, text=True, env=env, timeout=60
        )

    good = verify(UNIT)
    assert good.returncode == 0 and good.stderr.strip() == "", good.stderr
    # The same verification does catch a broken unit.
    broken = tmp_path / "nbmcp.service"
    broken.write_text(UNIT.read_text().replace("Type=exec", "Type=sometimes"))
    bad = verify(broken)
    assert "Failed to parse service type" in bad.stderr  # warnings too: the good unit gave none
