"""Plot achieved rate over time for the throttle scenarios (a PNG, matplotlib's Agg backend).

One panel per scenario (known limit, overestimated limit, E106): sends accepted by the emulator
per second, the account's real limit, and the rate limit the client's throttle was using,
sampled once a second. ``bench_throttle.py`` calls :func:`plot` after a run; it also works on
a saved result file:

    python benchmarks/plot_throttle.py [benchmarks/results/throttle.json] [--out FILE.png]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).parent
PLOTTED = ("known", "over", "e106")


def plot(results: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Write the plot of the plotted scenarios in ``results`` to ``path``; None without any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r["name"] in PLOTTED and r["per_second"]]
    if not shown:
        return None
    fig, axes = plt.subplots(len(shown), 1, figsize=(12.5, 3.2 * len(shown)), squeeze=False)
    for ax, r in zip(axes[:, 0], shown, strict=True):
        accepted = r["per_second"]
        seconds = list(range(len(accepted) + 1))  # the last step spans the last second too
        ax.step(seconds, [*accepted, *accepted[-1:]], where="post", color="tab:blue",
                linewidth=1.8, zorder=3, label="accepted by the emulator, per second")  # fmt: skip
        ax.axhline(r["limit"], color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"real limit ({r['limit']:g}/s)")  # fmt: skip
        limits = [(i + 1, v) for i, v in enumerate(r["rate_limit_per_second"]) if v is not None]
        if limits:
            ax.plot([t for t, _ in limits], [v for _, v in limits], color="tab:green", marker=".",
                    linewidth=1.0, label="client's rate limit (sampled each second)")  # fmt: skip
        if r.get("client_rate"):
            ax.axhline(r["client_rate"], color="tab:gray", linestyle=":", linewidth=1.0,
                       label=f"configured client rate ({r['client_rate']:g}/s)")  # fmt: skip
        tops = [r["limit"], max(accepted, default=0), r.get("client_rate") or 0]
        tops += [v for _, v in limits]
        ax.set_ylim(0, max(tops) * 1.15)
        ax.set_xlim(0, max(len(accepted), 1))
        figures = (f"rate / limit {r['ratio']:.3f}, E113 {r['e113_pct']:.2f} %, "
                   f"E106 {r['e106_pct']:.2f} %")  # fmt: skip
        ax.set_title(f"{r['name']}: {r['title']}  ({figures})", fontsize=10)
        ax.set_ylabel("sends / s")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside: no overlap
    axes[-1, 0].set_xlabel("seconds since the start of the run")
    fig.suptitle("skycore-async throttle: achieved rate over time (emulator on loopback)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    """Plot a saved ``throttle.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("results", nargs="?", type=Path, default=HERE / "results/throttle.json")
    parser.add_argument("--out", type=Path, default=HERE / "results/throttle.png")
    args = parser.parse_args()
    written = plot(orjson.loads(args.results.read_bytes()), args.out)
    print(f"plot saved to {written}" if written else "nothing to plot")
    return 0 if written else 1


if __name__ == "__main__":
    raise SystemExit(main())
