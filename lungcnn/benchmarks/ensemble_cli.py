"""`lungcnn loso-ensemble`: members trained without each pair of sources, scored as a trust
signal and as a label on the folds of a `lungcnn loso` result (`benchmarks.ensemble`)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from lungcnn.benchmarks.ensemble import (
    EnsembleConfig,
    label_accuracy,
    train_members,
    with_members,
)
from lungcnn.benchmarks.loso_cli import write_results
from lungcnn.benchmarks.selective import WITH_MEMBERS, helps
from lungcnn.edge.errors import fail
from lungcnn.trainer.dataset import DatasetError


def loso_ensemble_command(
    results: Annotated[Path, typer.Argument(
        metavar="RESULTS.json", help="A `lungcnn loso` results file (read, not changed).")],
    epochs: Annotated[int, typer.Option(min=1, help="Each member's epochs.")] = 20,
    runs: Annotated[Path, typer.Option(help="Folder of the member runs (resumed).")] = Path(
        "runs/loso-ensemble"),
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("benchmarks/results"),
    name: Annotated[str, typer.Option(help="Results file stem.")] = "loso-ensemble",
) -> None:
    """Train a member without each pair of sources, then score the members' agreement with
    each fold's answer as a trust rule, nested, beside today's rule.

    Writes OUT/NAME.json, OUT/NAME.md and OUT/NAME_risk_coverage.png.
    Exit codes: 0 done; 2 unreadable results file or dataset."""
    try:
        loso = json.loads(results.read_text())
        members = train_members(EnsembleConfig(results, runs, epochs),
                                log=lambda line: typer.echo(line, err=True))
    except (OSError, ValueError, KeyError, DatasetError) as error:
        fail(f"{results}: {error}")
    result = with_members(loso, members)
    result["command"] = "lungcnn " + shlex.join(["loso-ensemble", *sys.argv[2:]])
    markdown = write_results(result, out, name)
    labels = label_accuracy(result)
    extra = _ensemble_lines(labels, helps(result["selective"], WITH_MEMBERS), epochs)
    (out / f"{name}.md").write_text(markdown.rstrip("\n") + "\n" + "\n".join(extra) + "\n")
    typer.echo("\n".join(extra))


def _ensemble_lines(labels: dict, kept: bool, epochs: int) -> list[str]:
    lines = ["", f"## Ensemble members ({epochs} epochs each, each without the held-out "
             "source and one more)", "",
             f"Ensemble support as a trust signal: {'kept' if kept else 'not kept'} "
             "(nested: more wrong answers flagged, at most the allowed share of right ones, "
             "and accepted answers more accurate than all on at least as many folds).", "",
             "Accuracy on answered held-out scans, by which model gives the label:", "",
             "| held out | n | fold model | members' mean | fold model and members |",
             "|---|---|---|---|---|"]
    for source, row in labels.items():
        lines.append(f"| {source} | {row['n']} | {_f(row['answer'])} | {_f(row['members'])} "
                     f"| {_f(row['all'])} |")
    return lines


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
