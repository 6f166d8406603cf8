"""The crash soak (tests/soak.py): a real CLI campaign, SIGKILLed and resumed, with faults on.

The fast variant runs in ``make test``. The long one (20,000 recipients, 10 kills) runs with
``pytest -m slow tests/test_soak.py`` or ``SKYCORE_LONG_SOAK=1``; ``python tests/soak.py``
runs any size from the shell.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from soak import SoakConfig, run_soak


def long_soak_requested(config: pytest.Config) -> bool:
    """True when the slow tests were selected (``-m slow``) or SKYCORE_LONG_SOAK=1 is set."""
    markexpr = str(config.getoption("markexpr", default="") or "")
    selected = "slow" in markexpr and "not slow" not in markexpr
    return selected or os.environ.get("SKYCORE_LONG_SOAK") == "1"


async def soak(config: SoakConfig, workdir: Path) -> None:
    report = await run_soak(config, workdir)
    print(report.summary())
    assert report.problems == [], report.summary()
    assert report.kills == config.kills, "a run finished before its kill"
    assert report.duplicates == 0
    assert report.lost == 0
    assert sum(report.statuses.values()) == report.rows
    assert report.statuses["sent"] > report.rows * 0.9


async def test_fast_crash_soak(tmp_path: Path) -> None:
    """4,000 recipients, 5 SIGKILLs, faults on: nobody twice, nobody lost, unknowns explained."""
    await soak(SoakConfig(recipients=4000, kills=5, seed=11), tmp_path)


@pytest.mark.slow
async def test_long_crash_soak(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """20,000 recipients, 10 SIGKILLs, faults on (on demand: -m slow or SKYCORE_LONG_SOAK=1)."""
    if not long_soak_requested(request.config):
        pytest.skip("long soak: run with -m slow or SKYCORE_LONG_SOAK=1")
    await soak(SoakConfig(recipients=20_000, kills=10, seed=20), tmp_path)
