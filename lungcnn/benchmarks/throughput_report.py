"""The report of `lungcnn.benchmarks.throughput`: its JSON and Markdown, including what the
start-up alone leaves for the scans of each folder against a speedup target."""

from __future__ import annotations

import json
from pathlib import Path

TARGET_SPEEDUP = 3.0  # issue 12's goal, against which the start-up floor is reported
ONE_SCAN = "one scan (start-up)"


def write_results(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))


def markdown(report: dict) -> str:
    base, current = report["baseline"]["name"], report["current"]["name"]
    model = report.get("model") or "each revision's bundled model"
    lines = [
        "# edge-classify folder throughput",
        "",
        f"Regenerate: `{report['command']}`",
        "",
        f"`edge-classify DIR --json`, all trust checks on, default workers, model: {model}, "
        f"one fresh process per call (start-up included); {report['repeats']} interleaved "
        f"calls of each revision per folder, median wall time. Baseline {base} "
        f"({report['baseline']['commit'][:10]}), current {current} "
        f"({report['current']['commit'][:10]}). Machine: {report['machine']['cpus']} CPUs, "
        f"load average {report['machine']['load_before']} before and "
        f"{report['machine']['load_after']} after, Python {report['machine']['python']}.",
        "",
        "Wall time is what a user waits for; on a shared machine it is noisy, so the CPU "
        "time of each process (user + system, median) is reported too.",
        "",
        f"| folder | scans | {base} median s | current median s | {base} scans/s | "
        f"current scans/s | speedup (wall) | {base} CPU s | current CPU s | speedup (CPU) | "
        "records that differ |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, row in report["folders"].items():
        lines.append(
            f"| {label} | {row['scans']} | {row['median_s'][base]:.2f} | "
            f"{row['median_s'][current]:.2f} | {row['scans_per_s'][base]:.1f} | "
            f"{row['scans_per_s'][current]:.1f} | {row['speedup']:.2f}x | "
            f"{row['median_cpu_s'][base]:.2f} | {row['median_cpu_s'][current]:.2f} | "
            f"{row['cpu_speedup']:.2f}x | {len(row['differences'])} |")
    lines += _floor(report, base, current)
    lines += ["", "Records that differ (label, flag, probabilities, confidences, distance, "
              "reason, error; file names matched):", ""]
    for label, row in report["folders"].items():
        listed = row["differences"][:10]
        lines.append(f"- {label}: {len(row['differences'])}"
                     + ("" if not listed else ": " + "; ".join(json.dumps(d) for d in listed)))
    for label, rows in report.get("profile", {}).items():
        lines += ["", f"Where the current revision spends its time on {label} (cProfile, one "
                  "worker, own time, top functions):", "", "| function | calls | own s | "
                  "share |", "|---|---|---|---|"]
        lines += [f"| `{r['function']}` | {r['calls']} | {r['own_s']:.3f} | {r['share']:.0%} |"
                  for r in rows]
    return "\n".join(lines) + "\n"


def _floor(report: dict, base: str, current: str) -> list[str]:
    """What a call of the current revision on one scan (imports, argument parsing, model
    load, one scan) leaves of each folder's time at TARGET_SPEEDUP."""
    one = report["folders"].get(ONE_SCAN)
    if one is None:
        return []
    start = one["median_s"][current]
    lines = ["", f"Start-up against a {TARGET_SPEEDUP:g}x target: one call on one scan takes "
             f"{start:.2f} s with the current revision. In the time {TARGET_SPEEDUP:g}x "
             "allows, that leaves for each further scan:", ""]
    for label, row in report["folders"].items():
        if label == ONE_SCAN:
            continue
        allowed = row["median_s"][base] / TARGET_SPEEDUP
        left = (allowed - start) / max(1, row["scans"] - 1)
        spent = (row["median_s"][current] - start) / max(1, row["scans"] - 1)
        lines.append(f"- {label}: {TARGET_SPEEDUP:g}x means {allowed:.2f} s per call; "
                     f"{1000 * left:.1f} ms per further scan is left (wall, all workers "
                     f"together); the current revision takes {1000 * spent:.1f} ms.")
    return lines
