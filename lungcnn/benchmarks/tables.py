"""Formatting shared by the benchmark report's sections and plots: the rows (one per run and
variant), Markdown tables, and how numbers, shares and times are printed."""

from __future__ import annotations


def variant_rows(result: dict):
    for run in result["runs"]:
        for variant in run["variants"]:
            yield run, variant


def row_label(run: dict, variant: dict) -> list[str]:
    marks = " (bundled)" if variant["bundled"] else ""
    return [run["run"], f"{variant['variant']}{marks}"]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def two_decimals(value: float | None) -> str:
    """A share or rate in the LOSO reports; "-" when there is none."""
    return "-" if value is None else f"{value:.2f}"


def percent(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def percentiles(dist: dict) -> str:
    return " / ".join(ms(dist[key]) for key in ("p50", "p90", "p99"))


def ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def megabytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def spread(summary: dict) -> str:
    if summary["mean"] is None:
        return "n/a"
    return (f"{summary['mean']:.3f} ± {summary['std']:.3f} "
            f"({summary['min']:.3f}–{summary['max']:.3f})")
