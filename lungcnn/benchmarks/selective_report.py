"""The selective-prediction figures of a `lungcnn loso` result as Markdown and as a
risk-coverage plot (`benchmarks.selective` computes them; `benchmarks.conformal` the sets)."""

from __future__ import annotations

from pathlib import Path

from lungcnn.benchmarks.selective import gains
from lungcnn.benchmarks.tables import two_decimals as _f


def selective_lines(selective: dict, conformal: dict | None) -> list[str]:
    rules = selective["rules"]
    lines = [
        "",
        "## Selective prediction on held-out sources",
        "",
        "Each rule ranks a fold's answers from most to least trusted and flags some. *AURC*: "
        "area under the risk-coverage curve (mean error rate of the most trusted k answers "
        "over every k; lower is better), *best*: that of a perfect ranking of the same "
        "answers. Thresholds nested: each fold's from the other folds' held-out answers "
        f"(most wrong answers flagged with at most {selective['max_right_flagged']:.0%} of "
        "right ones). Every rule keeps the X-ray gate and the lung-field check. Today's rule "
        "is each fold's own "
        "`lungcnn calibrate` flags.",
        "",
        "| rule | AURC (best) | acc all | acc accepted | wrong flagged | right flagged "
        "| AURC per fold | acc accepted > all, folds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rule in rules.items():
        pooled, folds = rule["pooled"], rule["per_fold"]
        per_fold = ", ".join(f"{s} {_f(f['aurc'])}" for s, f in folds.items())
        better = [s for s, f in folds.items() if gains(f)]
        lines.append(f"| {name} | {_f(pooled['aurc'])} ({_f(pooled['best_aurc'])}) "
                     f"| {_f(pooled['accuracy'])} | {_f(pooled['accepted_accuracy'])} "
                     f"| {_f(pooled['wrong_flagged'])} | {_f(pooled['right_flagged'])} "
                     f"| {per_fold} | {len(better)} of {len(folds)} |")
    for name, reason in selective["not_measured"].items():
        lines.append(f"| {name} | not measured: {reason} | | | | | | |")
    lines += _fold_lines(rules) + _class_lines(rules)
    return lines + (_conformal_lines(conformal) if conformal else [])


def _fold_lines(rules: dict) -> list[str]:
    lines = ["", "Per held-out fold (acc all -> accepted; wrong / right flagged):", "",
             "| rule | " + " | ".join(next(iter(rules.values()))["per_fold"]) + " |",
             "|---|" + "---|" * len(next(iter(rules.values()))["per_fold"])]
    for name, rule in rules.items():
        cells = [f"{_f(f['accuracy'])} -> {_f(f['accepted_accuracy'])}; "
                 f"{_f(f['wrong_flagged'])} / {_f(f['right_flagged'])}"
                 for f in rule["per_fold"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _class_lines(rules: dict) -> list[str]:
    classes = list(next(iter(rules.values()))["by_class"])
    lines = ["", "Per class/age group, pooled over folds (wrong / right flagged):", "",
             "| rule | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for name, rule in rules.items():
        cells = [f"{_f(rule['by_class'][c]['wrong_flagged'])} / "
                 f"{_f(rule['by_class'][c]['right_flagged'])}" for c in classes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _conformal_lines(conformal: dict) -> list[str]:
    lines = ["", f"Conformal prediction sets at level {conformal['level']:.0%}, each fold "
             "calibrated on the other folds' covered held-out scans (a label enters the set "
             "when its calibrated probability is at least the minimum):", "",
             "| held out | min probability | covered n | coverage (covered) | coverage (all) "
             "| mean set size | singletons | empty |", "|---|---|---|---|---|---|---|---|"]
    rows = {**conformal["per_fold"], "pooled": conformal["pooled"],
            **{f"pooled at level {float(level):.0%}": block
               for level, block in conformal.get("other_levels", {}).items()}}
    for name, block in rows.items():
        lines.append(f"| {name} | {_f(block.get('min_probability'))} | {block['covered_n']} "
                     f"| {_f(block['coverage_covered'])} | {_f(block['coverage_all'])} "
                     f"| {_f(block['mean_set_size'])} | {_f(block['singletons'])} "
                     f"| {_f(block['empty'])} |")
    kept = ("kept: `lungcnn calibrate --loso` writes it into the manifest"
            if conformal.get("kept") else "not kept: nested LOSO says it does not help "
            "(more wrong answers flagged within the budget, on as many folds improved)")
    lines += ["", "Minimum probability from every fold (for the model trained on every "
              f"source): {conformal['min_probability_all_folds']:.3f}; {kept}."]
    return lines


def write_risk_coverage_plot(selective: dict, path: Path, title: str) -> Path:
    """One panel pooled and one per held-out fold: risk against coverage for every rule
    (per-fold AURC in the Markdown tables)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = selective["rules"]
    panels = ["pooled", *next(iter(rules.values()))["per_fold"]]
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4 * rows), squeeze=False)
    for axis, panel in zip(axes.flat, panels):
        for name, rule in rules.items():
            block = rule["pooled"] if panel == "pooled" else rule["per_fold"][panel]
            curve = block["curve"]
            axis.plot([p["coverage"] for p in curve], [p["risk"] for p in curve],
                      label=f"{name} ({_f(block['aurc'])})",
                      linestyle="--" if name.startswith("today") else "-")
        axis.set(title=f"held out: {panel}", xlabel="coverage (share accepted)",
                 ylabel="error rate of accepted", ylim=(0, 1.02))
    axes.flat[0].legend(fontsize=6, title="rule (pooled AURC)", title_fontsize=6,
                        loc="upper right")
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.suptitle(f"{title}: risk-coverage on held-out sources. Not a medical device.",
                    fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
