"""Run nbmcp's tests and linters on any Python 3.10+ that has venv: `python3 tests/run.py [TOX ARGS]`.

Nothing needs installing first and nothing is installed outside this checkout's `.tox` folder, so a
Debian, Ubuntu or Homebrew Python that refuses `pip install` ("externally-managed-environment") works.
The first run makes `.tox/.runner`, a virtual environment holding tox and tox-uv (uv then builds the
test environments in seconds instead of pip's minutes); later runs reuse it. Arguments go to tox:

    python3 tests/run.py                  # the tests (py) and the linters (lint)
    python3 tests/run.py -e py -- -k stdio
    python3 tests/run.py -e bench         # the benchmarks
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / ".tox" / ".runner"
#: What the runner environment holds; a change here rebuilds it.
REQUIREMENTS = ("tox>=4.20", "tox-uv>=1.11")


def _runner_python() -> Path:
    python = RUNNER / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = RUNNER / "nbmcp-requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"tests/run.py: making {RUNNER.relative_to(ROOT)} with {', '.join(REQUIREMENTS)}", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(RUNNER)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS], check=True
    )
    stamp.write_text(wanted)
    return python


def main(argv: list[str]) -> int:
    # Run by whatever python3 a machine has: an old one gets a clear line instead of a failed install.
    if sys.version_info < (3, 10):  # noqa: UP036
        print("tests/run.py: nbmcp needs Python 3.10 or newer", file=sys.stderr)
        return 2
    python = _runner_python()
    return subprocess.run([str(python), "-m", "tox", *argv], cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
