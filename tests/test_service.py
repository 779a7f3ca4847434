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

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "examples" / "nbmcp.service"
README = ROOT / "README.md"


def unit(text: str | None = None) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text() if text is None else text)
    return parser


def installed_unit(home: Path) -> Path:
    """The unit as the README's install line writes it, run literally with this environment's nbmcp on PATH."""
    lines = README.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith('sed "s|@NBMCP@|'))
    command = (lines[first].rstrip("\\") + lines[first + 1]).replace("/path/to/nbmcp-checkout", str(ROOT))
    (home / ".config" / "systemd" / "user").mkdir(parents=True)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    subprocess.run(["bash", "-c", command], check=True, env={**os.environ, "HOME": str(home), "PATH": path}, timeout=30)
    return home / ".config" / "systemd" / "user" / "nbmcp.service"


def exec_start(text: str, home: Path, nbmcp_args: str = "") -> list[str]:
    """ExecStart as systemd runs it: %h is the home folder, an unquoted $NBMCP_ARGS zero or more words."""
    words = shlex.split(unit(text)["Service"]["ExecStart"].replace("%h", str(home)))
    return [w for word in words for w in (shlex.split(nbmcp_args) if word == "$NBMCP_ARGS" else [word])]


def test_the_unit_restarts_on_failure_keeps_the_token_out_and_listens_on_loopback() -> None:
    u = unit()
    service = u["Service"]
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "%h/.config/nbmcp/env"  # the token's file, under the user's home
    assert "token" not in service["ExecStart"].lower()  # never on the command line (`ps` shows it)
    argv = exec_start(UNIT.read_text(), Path("/home/u"))
    assert argv[argv.index("--transport") + 1] == "streamable-http"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "User" not in service  # a user unit runs as its user; User= is for system units
    assert u["Install"]["WantedBy"] == "default.target"  # what a user manager starts at login
    # NBMCP_ARGS has an empty default, so systemd does not warn about an unset variable.
    assert service["Environment"] == "NBMCP_ARGS="
    # The README's install lines create the token file readable by its owner only.
    assert "umask 077" in UNIT.read_text()


def test_the_installed_unit_runs_this_nbmcp_with_the_env_file_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    text = installed_unit(home).read_text()
    assert "@NBMCP@" not in text
    # The line the README and the unit suggest for the project's environment, here this very Python.
    argv = exec_start(text, home, f"--python {sys.executable} --max-wait 60")
    assert Path(argv[0]).samefile(Path(sys.executable).parent / "nbmcp")  # not a hard-coded ~/.local/bin
    args = argv[1:]
    assert args[args.index("--python") + 1] == sys.executable
    args[args.index("--port") + 1] = str(_free_port())  # 4040 may be taken on this machine
    # The flags as the unit gives them, checked by the doctor (no kernel: that is not the unit's subject).
    code = cli("doctor", *args, "--read-only")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[ ok ] access" in out and "[ ok ] port" in out
    # Installing writes the program's path in and changes nothing else.
    assert exec_start(text, home)[1:] == exec_start(UNIT.read_text(), home)[1:]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    installed = installed_unit(home)  # verify checks that ExecStart's program exists
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["systemd-analyze", "--user", "verify", str(path)], capture_output=True, text=True, env=env, timeout=60
        )

    good = verify(installed)
    assert good.returncode == 0 and good.stderr.strip() == "", good.stderr
    # The same verification does catch a broken unit, and the template itself (no path written in).
    broken = tmp_path / "nbmcp.service"
    broken.write_text(installed.read_text().replace("Type=exec", "Type=sometimes"))
    bad = verify(broken)
    assert "Failed to parse service type" in bad.stderr  # warnings too: the good unit gave none
    assert verify(UNIT).returncode != 0
