"""`lungcnn loso`: leave-one-source-out runs and their report (JSON and Markdown)."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lungcnn.benchmarks.conformal import conformal_report, has_probabilities
from lungcnn.benchmarks.loso import LosoConfig, run_loso
from lungcnn.benchmarks.loso_report import MAX_RIGHT_FLAGGED, loso_report
from lungcnn.benchmarks.ensemble import ensemble_lines
from lungcnn.benchmarks.selective import WITH_MEMBERS, WITH_SETS, helps, selective_report
from lungcnn.benchmarks.selective_report import selective_lines, write_risk_coverage_plot
from lungcnn.benchmarks.tables import two_decimals as _f
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.edge.errors import NOTICE, fail
from lungcnn.trainer.architectures import ARCHITECTURES
from lungcnn.trainer.dataset import DatasetError
from lungcnn.trainer.tf_log import quiet_tensorflow


def loso_command(
    data: Annotated[list[Path], typer.Option(
        metavar="DATASET", help="A dataset (as for `lungcnn train --data`); repeat for each.")],
    arch: Annotated[str, typer.Option(help="Architecture from the registry.")] = "dsconv-std-160",
    holdout: Annotated[list[str] | None, typer.Option(
        metavar="SOURCE", help="Hold out only these sources (repeatable; default: each).")] = None,
    balance_sources: Annotated[bool, typer.Option(
        "--balance-sources", help="Train with source-class balanced weights.")] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the recipe's epochs.")] = None,
    size: Annotated[int | None, typer.Option(min=8, help="Override the recipe's input side.")] = None,
    lung_field: Annotated[Path | None, typer.Option(
        metavar="SEGMENTER", help="Train with input contract 2 on this segmenter's lung fields "
        "(as `lungcnn train --lung-field`).")] = None,
    exclude_finding: Annotated[list[str] | None, typer.Option(
        metavar="VALUE", help="Leave out scans whose manifest finding is VALUE, from training "
        "and from the held-out records (repeatable).")] = None,
    equalize: Annotated[bool, typer.Option(
        "--equalize/--no-equalize", help="Contract 2: equalise the lung-field crop.")] = True,
    mask_outside: Annotated[bool, typer.Option(
        "--mask-outside", help="Contract 2: black out what lies outside the lungs.")] = False,
    attention: Annotated[Path | None, typer.Option(
        metavar="SEGMENTER", help="Measure the share of each held-out scan's heatmap inside "
        "the lungs this segmenter finds (default: the --lung-field segmenter).")] = None,
    runs: Annotated[Path, typer.Option(help="Folder of the fold runs (resumed).")] = Path(
        "runs/loso"),
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("benchmarks/results"),
    name: Annotated[str, typer.Option(help="Results file stem.")] = "loso",
) -> None:
    """Train without each source in turn and classify that source on the device path.

    Writes OUT/NAME.json, OUT/NAME.md and the risk-coverage plot OUT/NAME_risk_coverage.png.
    Exit codes: 0 done; 2 usage error (unknown architecture or source, unreadable dataset)."""
    if arch not in ARCHITECTURES:
        _fail(f"unknown architecture {arch!r}; one of {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    recipe = replace(spec.recipe, balance_sources=balance_sources,
                     lung_field=str(lung_field) if lung_field else None, equalize=equalize,
                     mask_outside=mask_outside,
                     exclude_findings=tuple(exclude_finding or ()),
                     **({"epochs": epochs} if epochs else {}),
                     **({"input_size": size} if size else {}))
    config = LosoConfig(arch, tuple(data), runs, recipe, tuple(holdout or ()),
                        attention or lung_field)
    quiet_tensorflow()
    try:
        result = run_loso(config, spec, log=lambda line: typer.echo(line, err=True))
    except (DatasetError, ValueError) as error:
        _fail(str(error))
    result["command"] = "lungcnn " + shlex.join(["loso", *sys.argv[2:]])
    typer.echo(write_results(result, out, name))


def loso_report_command(
    results: Annotated[Path, typer.Argument(
        metavar="RESULTS.json", help="A `lungcnn loso` results file; rewritten in place.")],
) -> None:
    """Recompute the report of a `lungcnn loso` results file from its held-out records.

    Rewrites RESULTS.json, its .md and its _risk_coverage.png beside it; trains nothing.
    Exit codes: 0 done; 2 unreadable or not a `lungcnn loso` results file."""
    try:
        result = json.loads(results.read_text())
        if not isinstance(result, dict) or not isinstance(result.get("folds"), dict):
            raise ValueError("no folds")
        typer.echo(write_results(result, results.parent, results.stem))
    except (OSError, ValueError, KeyError, TypeError) as error:
        _fail(f"{results}: not a readable lungcnn loso results file ({error})")


def write_results(result: dict, out: Path, name: str) -> str:
    """Compute the report of `result`, write OUT/NAME.json, .md and the plot; the Markdown."""
    folds = result["folds"]
    result["report"] = loso_report(result)
    result["selective"] = selective_report(result) if len(folds) > 1 else None
    result["conformal"] = (conformal_report(folds)
                           if len(folds) > 1 and has_probabilities(folds) else None)
    if result["conformal"]:  # on the device only when nested LOSO says it helps
        result["conformal"]["kept"] = helps(result["selective"], WITH_SETS)
    result["report_command"] = f"lungcnn loso-report {out / name}.json"
    out.mkdir(parents=True, exist_ok=True)
    if result["selective"]:
        write_risk_coverage_plot(result["selective"], out / f"{name}_risk_coverage.png",
                                 result["arch"])
    write_json_atomic(out / f"{name}.json", result)
    markdown = format_markdown(result)
    (out / f"{name}.md").write_text(markdown)
    return markdown


def format_markdown(result: dict) -> str:
    report = result["report"]
    lines = [
        f"# Leave-one-source-out: {result['arch']}",
        "",
        f"Regenerate: `{result['command']}` (resumes the fold runs); the report alone, "
        f"from the held-out records: `{result.get('report_command', '')}`",
        "",
        "Each row: trained on every other source, then every scan of the held-out source "
        "classified by the int8 model on the device path (`lungcnn.edge.api.Classifier`), "
        "flags from its own `lungcnn calibrate`. *Covered*: the class in that age group "
        "exists in the remaining sources; the rest are open-set cases.",
        "",
        "| held out | trained on | n | covered n | covered acc | open-set n | open-set flagged "
        "| acc all | acc accepted | wrong flagged | right flagged |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for source, fold in report["folds"].items():
        cov, open_set, every = fold["covered"], fold["open_set"], fold["all"]
        open_flagged = 1 - open_set["accepted"] / open_set["n"] if open_set["n"] else None
        lines.append(
            f"| {source} | {', '.join(report['trained_on'][source])} | {fold['n']} "
            f"| {cov['n']} | {_f(cov['accuracy'])} | {open_set['n']} | {_f(open_flagged)} "
            f"| {_f(every['accuracy'])} | {_f(every['accepted_accuracy'])} "
            f"| {_f(every['wrong_flagged'])} | {_f(every['right_flagged'])} |")
    lines += ["", "Per class and age group of the held-out source (predicted counts):", "",
              "| held out | class/age | n | acc | wrong flagged | right flagged | predicted |",
              "|---|---|---|---|---|---|---|"]
    for source, fold in report["folds"].items():
        for key, block in fold["by_class"].items():
            predicted = ", ".join(f"{k} {v}" for k, v in block["predicted"].items())
            lines.append(f"| {source} | {key} | {block['n']} | {_f(block['accuracy'])} "
                         f"| {_f(block['wrong_flagged'])} | {_f(block['right_flagged'])} "
                         f"| {predicted} |")
    nested = report["nested_trust"]
    if nested:
        lines += _nested_lines(nested)
    lines += _attention_lines(result)
    if result.get("selective"):
        lines += selective_lines(result["selective"], result.get("conformal"))
        lines += ["", f"![risk-coverage]({Path(result['report_command'].split()[-1]).stem}"
                  "_risk_coverage.png)"]
    if result.get("ensemble") and result.get("selective"):
        lines += ensemble_lines(result, helps(result["selective"], WITH_MEMBERS))
    lines += ["", NOTICE, ""]
    return "\n".join(lines)


def _nested_lines(nested: dict) -> list[str]:
    rule = nested["rule_on_all_folds"]
    lines = [
        "",
        f"Trust thresholds chosen on held-out sources (at most {MAX_RIGHT_FLAGGED:.0%} of right "
        "answers flagged), nested: each fold scored with the rule chosen on the other folds.",
        "",
        "| held out | distance factor | min confidence | acc all | acc accepted "
        "| wrong flagged | right flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for source, block in {**nested["per_fold"], "pooled": nested["pooled"]}.items():
        chosen = block.get("rule", {})
        lines.append(f"| {source} | {chosen.get('distance_factor', '')} "
                     f"| {chosen.get('min_confidence', '')} | {_f(block['accuracy'])} "
                     f"| {_f(block['accepted_accuracy'])} | {_f(block['wrong_flagged'])} "
                     f"| {_f(block['right_flagged'])} |")
    lines += ["", f"Rule chosen on all folds (for the model trained on every source): distance "
              f"factor {rule['distance_factor']}, min confidence {rule['min_confidence']}."]
    return lines


def _attention_lines(result: dict) -> list[str]:
    """Where each fold model looks on its held-out source (`benchmarks.lung_attention`)."""
    rows = []
    for source, fold in result["folds"].items():
        shares = [r.get("lung_share") for r in fold["records"] if r.get("lung_share") is not None]
        if shares:
            rows.append(f"| {source} | {len(shares)} | {_f(float(np.mean(shares)))} "
                        f"| {_f(float(np.median(shares)))} |")
    if not rows:
        return []
    return ["", "Share of the occlusion-heatmap mass (positive drops, 8x8 grid) inside the lung "
            "fields the reference segmenter finds on the whole scan:", "",
            "| held out | scans | mean | median |", "|---|---|---|---|", *rows]


def _fail(message: str) -> None:
    fail(message)
