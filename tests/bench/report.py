"""Markdown tables for the terminal and ``bench-report.md``, and the optional PNG chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.bench.scenarios import Table


def _mark(met: bool | None) -> str:
    return "—" if met is None else ("met" if met else "MISSED")


def markdown(table: Table) -> str:
    lines = [f"### {table.title}", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    if table.goals:
        lines += ["", "| goal | figure | verdict |", "|---|---|---|"]
        lines += [f"| {g} | {fig} | {_mark(m)} |" for g, m, fig in table.goals]
    if table.notes:
        lines.append("")
        lines += [f"- {n}" for n in table.notes]
    lines.append("")
    return "\n".join(lines)


def document(tables: Sequence[Table], header: str, chart: str | None) -> str:
    parts = ["# bc-sync benchmark", "", header, ""]
    parts += [markdown(t) for t in tables]
    if chart:
        parts += [f"![throughput and p99 per scenario]({chart})", ""]
    return "\n".join(parts)


def chart(tables: Sequence[Table], path: Path) -> str | None:
    """One PNG: the chart series of every table; None (and a printed line) without matplotlib."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        print("chart skipped: matplotlib is not installed")
        return None
    series = [(f"{t.title.split('.')[0]}: {k}", v) for t in tables for k, v in t.chart.items()]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(series) + 1.5))
    ax.barh([s[0] for s in series], [s[1] for s in series])
    ax.set_xscale("log")
    ax.set_xlabel("per second (log scale)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name
