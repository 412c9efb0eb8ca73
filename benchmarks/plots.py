"""The report's plots (matplotlib, no display): small PNGs, one figure per question.

- throughput.png: decisions/s against concurrency, one panel per key spread;
- latency.png: p50, p99 and p99.9 against concurrency, one panel per key spread;
- ratios.png: in process, each strategy's rate over the ``IMap.get`` floor's; end to
  end, each scenario's rate over ``/health``'s;
- k6_steps.png: p99 against the target arrival rate, held steps filled;
- rls.png: the rate limit part's ratios, each round a dot, against its target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.results import Report
from benchmarks.scale import capacity_plot

__all__ = ["draw"]

DPI = 72
COLOURS = {
    "floor get": "0.2",
    "floor set+ttl": "0.6",
    "lock": "tab:red",
    "cas": "tab:blue",
    "entry_processor": "tab:green",
}


def _panels(count: int, title: str) -> tuple[Any, list[Any]]:
    figure, axes = plt.subplots(1, max(count, 1), figsize=(3.6 * max(count, 1), 3.0), dpi=DPI)
    figure.suptitle(title, fontsize=10)
    return figure, list(axes) if count > 1 else [axes]


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def draw(report: Report, folder: Path) -> list[Path]:
    """Every plot the report's figures allow; returns the files written."""
    written = []
    grid = report.get("inprocess")
    if grid:
        scenarios = grid["scenarios"]
        concurrency = grid["concurrency"]
        figure, axes = _panels(len(scenarios), "In process: decisions/s against concurrency")
        for axis, (spread, by_name) in zip(axes, scenarios.items(), strict=False):
            for name, by_tasks in by_name.items():
                xs = [c for c in concurrency if str(c) in by_tasks]
                ys = [by_tasks[str(c)]["per_second"] for c in xs]
                style = "--" if name.startswith("floor") else "-"
                axis.plot(xs, ys, style, marker="o", ms=3, label=name, color=COLOURS.get(name))
            axis.set(title=spread, xscale="log", yscale="log", xlabel="concurrent tasks")
            axis.set_xticks(concurrency, [str(c) for c in concurrency])
        axes[0].set_ylabel("decisions/s")
        axes[0].legend(fontsize=7)
        written.append(_save(figure, folder / "throughput.png"))

        figure, axes = _panels(len(scenarios), "In process: latency p50 (·), p99 (-), p99.9 (:)")
        for axis, (spread, by_name) in zip(axes, scenarios.items(), strict=False):
            for name, by_tasks in by_name.items():
                xs = [c for c in concurrency if str(c) in by_tasks]
                colour = COLOURS.get(name)
                for field, style in (("p50_ms", "-."), ("p99_ms", "-"), ("p999_ms", ":")):
                    ys = [float(by_tasks[str(c)][field]) for c in xs]  # type: ignore[literal-required]
                    label = name if field == "p99_ms" else None
                    axis.plot(xs, ys, style, marker=".", ms=3, color=colour, label=label)
            axis.set(title=spread, xscale="log", yscale="log", xlabel="concurrent tasks")
            axis.set_xticks(concurrency, [str(c) for c in concurrency])
        axes[0].set_ylabel("ms")
        axes[0].legend(fontsize=7)
        written.append(_save(figure, folder / "latency.png"))

    e2e = report.get("endtoend")
    if grid or e2e:
        count = (len(grid["scenarios"]) if grid else 0) + (1 if e2e else 0)
        figure, axes = _panels(count, "Ratios to the floors (1 = as fast as the floor)")
        index = 0
        if grid:
            for spread, by_name in grid["scenarios"].items():
                axis = axes[index]
                index += 1
                for name, by_tasks in by_name.items():
                    if name.startswith("floor"):
                        continue
                    xs = [c for c in grid["concurrency"] if str(c) in by_tasks]
                    ys = [by_tasks[str(c)]["vs_get"] for c in xs]
                    axis.plot(xs, ys, marker="o", ms=3, label=name, color=COLOURS.get(name))
                axis.axhline(1.0, color="0.5", lw=0.8)
                axis.set(title=f"{spread}: vs IMap.get", xscale="log", xlabel="concurrent tasks")
                axis.set_xticks(grid["concurrency"], [str(c) for c in grid["concurrency"]])
            axes[0].legend(fontsize=7)
        if e2e:
            axis = axes[index]
            bars = [s for s in next(iter(e2e.values())) if s != "health"]
            width = 0.8 / max(len(e2e), 1)
            for offset, (strategy, rows) in enumerate(e2e.items()):
                positions = [i + offset * width for i in range(len(bars))]
                ys = [rows[s]["ratio_to_health"] for s in bars]
                axis.bar(positions, ys, width, label=strategy, color=COLOURS.get(strategy))
            axis.set_xticks([i + width * (len(e2e) - 1) / 2 for i in range(len(bars))], bars)
            axis.set(title="end to end: vs /health")
            axis.set_ylim(bottom=0)
            axis.legend(fontsize=7)
        written.append(_save(figure, folder / "ratios.png"))

    steps = report.get("k6_steps")
    if steps:
        figure, axes = _panels(1, "k6 arrival-rate steps: p99 (filled: held)")
        axis = axes[0]
        for strategy, result in steps.items():
            rates = [s["rate"] for s in result["steps"]]
            p99 = [max(s["p99_ms"], 0.1) for s in result["steps"]]
            colour = COLOURS.get(strategy)
            axis.plot(rates, p99, "-", color=colour, label=strategy)
            for step in result["steps"]:
                axis.plot(
                    step["rate"],
                    max(step["p99_ms"], 0.1),
                    "o",
                    color=colour,
                    mfc=colour if step["held"] else "white",
                )
        axis.axhline(100, color="0.5", lw=0.8, ls="--")
        axis.set(xlabel="target requests/s", ylabel="p99 ms", yscale="log")
        axis.legend(fontsize=7)
        written.append(_save(figure, folder / "k6_steps.png"))
    capacity = capacity_plot(report.get("scale"), folder)
    if capacity is not None:
        written.append(capacity)

    rls = report.get("rls")
    if rls and rls["round_ratios"]:
        written.append(_rls_ratios(rls["round_ratios"], folder / "rls.png"))
    return written


#: The rate limit part's targets (benchmarks.rls): filter on over off, ours over the peer.
RLS_TARGETS = {
    "ours_one_vs_off": 0.5,
    "ours_ips_vs_off": 0.3,
    "ours_one_vs_peer": 1.0,
    "ours_ips_vs_peer": 1.0,
}


def _rls_ratios(round_ratios: dict[str, list[float]], path: Path) -> Path:
    """One row per ratio: the median as a bar, each round as a dot, the target a tick."""
    names = list(round_ratios)
    figure, axes = _panels(1, "Rate limit service: ratios (bar: median, dots: rounds, |: target)")
    axis = axes[0]
    figure.set_size_inches(7.2, 0.35 * len(names) + 1.2)
    for row, name in enumerate(names):
        values = sorted(round_ratios[name])
        median = values[len(values) // 2]
        axis.barh(row, median, color="tab:green" if name.startswith("ours") else "0.6")
        axis.plot(values, [row] * len(values), "o", color="black", ms=3)
        if name in RLS_TARGETS:
            axis.plot([RLS_TARGETS[name]], [row], "|", color="tab:red", ms=14, mew=2)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.axvline(1.0, color="0.5", lw=0.8)
    axis.invert_yaxis()
    return _save(figure, path)
