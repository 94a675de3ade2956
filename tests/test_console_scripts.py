"""The installed ``mess`` and ``mess-agent`` console scripts, run as a user runs them.

In-process tests (``CliRunner``) do not see how the console script handles usage errors, so
these run the real executables: a usage error must end with a short message and exit code 2,
never a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _script(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name!r} is not installed (pip install -e '.[all]')")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


USAGE_ERRORS = {
    "missing option": ("mess", "search", "--stats", "x.npz"),
    "unknown option": ("mess", "query", "--no-such-option"),
    "bad value": ("mess", "search", "--stats", "x.npz", "--costs", "y.json", "--max-exits", "abc"),
    "unknown command": ("mess", "nosuchcmd"),
    "agent unknown option": ("mess-agent", "--bogus"),
    "agent bad value": ("mess-agent", "--threads", "abc"),
}


@pytest.mark.parametrize("argv", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_usage_error_is_a_short_message_and_exit_2(argv: tuple[str, ...]) -> None:
    result = _run(_script(argv[0]), *argv[1:])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip(), "a usage error says what is wrong"
    assert len(result.stderr.splitlines()) < 15


def test_user_error_keeps_its_one_line_and_exit_code(tmp_path: Path) -> None:
    missing = tmp_path / "missing.npz"
    result = _run(
        _script("mess"),
        "search",
        "--stats",
        str(missing),
        "--costs",
        str(missing),
        "--objective",
        "pareto",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_version_and_help_exit_0() -> None:
    for argv in (("--version",), ("--help",), ("search", "--help")):
        result = _run(_script("mess"), *argv)
        assert result.returncode == 0, result.stderr
        assert result.stdout
