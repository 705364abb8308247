"""`lungcnn loso-ensemble`: members trained without each pair of sources, scored as a trust
signal and as a label on the folds of a `lungcnn loso` result (`benchmarks.ensemble`)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from lungcnn.benchmarks.ensemble import EnsembleConfig, train_members, with_members
from lungcnn.benchmarks.loso_cli import write_results
from lungcnn.edge.errors import fail
from lungcnn.trainer.dataset import DatasetError
from lungcnn.trainer.tf_log import quiet_tensorflow


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
    quiet_tensorflow()
    try:
        loso = json.loads(results.read_text())
        members = train_members(loso, EnsembleConfig(runs, epochs),
                                log=lambda line: typer.echo(line, err=True))
    except (OSError, ValueError, KeyError, DatasetError) as error:
        fail(f"{results}: {error}")
    result = {**with_members(loso, members), "ensemble": {"epochs": epochs,
                                                          "members": sorted(members)}}
    result["command"] = "lungcnn " + shlex.join(["loso-ensemble", *sys.argv[2:]])
    typer.echo(write_results(result, out, name))
