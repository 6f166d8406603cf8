"""The public surface: __all__ is sorted and complete, and the version matches the metadata."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import skycore_async


def test_all_is_unique_and_importable() -> None:
    """Every name in __all__ exists, once (ruff keeps it sorted)."""
    names = skycore_async.__all__
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(skycore_async, name), name


def test_every_public_class_is_exported() -> None:
    """Public classes and functions defined in the package are reachable from the top level."""
    exported = set(skycore_async.__all__)
    public = {
        name
        for name, value in vars(skycore_async).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("skycore_async.")
    }
    assert public <= exported


def test_version_matches_metadata() -> None:
    """__version__ comes from the installed distribution."""
    assert skycore_async.__version__ == version("skycore-async")


def test_python_dash_m_runs_the_cli() -> None:
    """`python -m skycore_async --help` lists the commands."""
    result = subprocess.run(
        [sys.executable, "-m", "skycore_async", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("emulator", "send", "bulk"):
        assert command in result.stdout


EXAMPLES = Path(__file__).parent.parent / "examples"


def test_examples_run() -> None:
    """The examples keep working: a single send, and the user-side emulator test pattern."""
    single = subprocess.run(
        [sys.executable, str(EXAMPLES / "send_one.py"), "--emulator"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "accepted: tracking id" in single.stdout
    pattern = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_with_emulator.py"),
        ],
        capture_output=True,
        text=True,
    )
    assert pattern.returncode == 0, pattern.stdout + pattern.stderr
