"""The Markdown of `lungcnn.benchmarks.adapt_limits`."""

from __future__ import annotations

import numpy as np

from lungcnn.benchmarks.adapt_report import GOAL_ACCURACY, GOAL_MAX_DROP, meets_goals
from lungcnn.edge.contract import CLASS_NAMES


def markdown(result: dict) -> str:
    k = result["k"]
    lines = ["# What limits adaptation by a refitted head", "", f"> {result['notice']}", "",
             f"Command: `{result['command']}`", "",
             "Heads fitted as `edge-classify adapt` fits them (frozen network, feature replay, "
             "L2 0.1) on features of each fold's Keras model (float, every ReLU output pooled "
             f"by global average), with k = {k} scans per class of the held-out source (seeds "
             f"{list(result['seeds'])}); tested on the rest of the source and on the other "
             "sources' validation scans (drop: points lost there). Mean over seeds (worst "
             "seed). Ceiling: half of the source to adapt on (a head fitted on each half, "
             "tested on the other) with the best setting (site shares "
             f"{list(result['ceiling_shares'])} x L2 {list(result['ceiling_l2'])}) among those "
             f"that lose at most {GOAL_MAX_DROP * 100:.0f} points on the other sources (mean "
             "of the two heads); chosen on the halves it is measured on, so an upper bound.",
             "",
             "| held-out source | classes | features | dim | "
             + " | ".join(f"share {s}: accuracy / drop" for s in result["shares"])
             + " | ceiling (share, L2) |",
             "|---|---|---|---|" + "---|" * len(result["shares"]) + "---|"]
    for source, fold in result["folds"].items():
        classes = ", ".join(CLASS_NAMES[c] for c in fold["classes"])
        for name, block in fold["feature_sets"].items():
            cells = [_at_k(row) for row in block["at_k"]]
            lines.append(f"| {source} | {classes} | {name} | {block['dim']} | "
                         + " | ".join(cells) + f" | {_ceiling(block['ceiling'])} |")
    lines += ["", f"Goals at k = {k} (worst seed): accuracy >= {GOAL_ACCURACY:.2f} and a drop "
              f"of at most {GOAL_MAX_DROP * 100:.0f} points, both at one share (and by the "
              "ceiling):"]
    lines += [f"- {source}: " + "; ".join(_verdict(name, block)
                                           for name, block in fold["feature_sets"].items())
              for source, fold in result["folds"].items()]
    lines += ["", "## A gate that routes the site's scans to their own head", "",
              f"A logistic regression (L2 {result['gate_l2']}) on the classifier's input, "
              f"fitted on the k = {k} site scans against the replay scans; its AUC at telling "
              "the rest of the site from the other sources' validation scans (1: always "
              "apart, 0.5: no better than chance). Mean over seeds (lowest).", "",
              "| held-out source | gate AUC |", "|---|---|"]
    lines += [f"| {source} | {np.mean(fold['gate_auc']):.2f} ({min(fold['gate_auc']):.2f}) |"
              for source, fold in result["folds"].items()]
    return "\n".join(lines) + "\n"


def _at_k(row: dict) -> str:
    site, drop = np.array(row["site"]), np.array(row["drop"]) * 100
    return f"{site.mean():.3f} ({site.min():.2f}) / {drop.mean():+.1f} ({drop.max():+.1f})"


def _ceiling(best: dict) -> str:
    if best["site"] is None:
        return "none within the drop"
    return f"{best['site']:.3f} ({best['site_share']}, {best['l2']})"


def _verdict(name: str, block: dict) -> str:
    met = [str(row["site_share"]) for row in block["at_k"]
           if meets_goals(min(row["site"]), max(row["drop"]))]
    top = block["ceiling"]["site"]
    ceiling = "met" if top is not None and top >= GOAL_ACCURACY else "not met"
    return f"{name} {'met at share ' + ', '.join(met) if met else 'not met'} (ceiling {ceiling})"
