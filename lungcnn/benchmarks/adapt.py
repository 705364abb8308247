"""Adaptation benchmark, leave-one-source-out: for each held-out source S, start from the
fold model trained without S (`lungcnn loso`), adapt it on k scans per class of S
(`edge.adapt`, exactly what `edge-classify adapt` fits; 5 fixed seeds per k), and test on
the rest of S; also the accuracy on the other sources' validation scans (the fold's own
validation split) before and after, to show what was forgotten. Then the trade-off at
k = 20: the same draws adapted with each site share of TRADE_OFF_SHARES, and a ceiling per
share, the head fitted on every scan of S.

    python -m lungcnn.benchmarks.adapt --runs runs/loso --data data/covid19-dataset \\
        --data ../shared/data/multisource --out benchmarks/results --name adapt

Each scan goes through the fold's int8 model once; every adaptation is then fitted on the
stored features (the network is frozen, so its features do not change).
"""

from __future__ import annotations

import shlex
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lungcnn.benchmarks.adapt_report import (
    GOAL_K,
    markdown,
    write_plot,
    write_trade_off_plot,
)
from lungcnn.benchmarks.loso import all_samples
from lungcnn.edge.adapt import AdaptSettings, fit_adaptation, site_head
from lungcnn.edge.api import Classifier
from lungcnn.edge.errors import NOTICE, fail
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.edge.site import SiteScan, site_outputs
from lungcnn.trainer.dataset import DatasetError, label_of

KS = (0, 5, 10, 20, 40)
SEEDS = (0, 1, 2, 3, 4)
TRADE_OFF_SHARES = (0.05, 0.1, 0.2, 0.3, 0.5)  # the site's share of the fitting weight
MODEL = "model_int8.tflite"
PROG = "lungcnn.benchmarks.adapt"


def fold_scans(model: Path, site: list[SiteScan]) -> tuple[Classifier, dict]:
    """The fold model and its groups of scans: its training scans (replay), its validation
    scans (the other sources) and the held-out source's scans."""
    classifier = Classifier(model)
    training = classifier.manifest["training"]
    root = Path(training["data_dir"])
    return classifier, {
        "replay": split_scans(root, training["split"]["train"], classifier.class_names),
        "val": split_scans(root, training["split"]["val"], classifier.class_names),
        "site": site}


def fold_outputs(model: Path, site: list[SiteScan]) -> dict:
    """The fold model's probabilities, features and labels on each group of `fold_scans`."""
    classifier, groups = fold_scans(model, site)
    outputs = {}
    for name, scans in groups.items():
        probabilities, features = site_outputs(classifier, scans)
        outputs[name] = (probabilities, features, np.array([s.label for s in scans]))
    return outputs


def split_scans(root: Path, files: list[str], class_names) -> list[SiteScan]:
    return [SiteScan(root / rel, label_of(rel, class_names)) for rel in files]


def held_out_folds(runs: Path, data: list[Path], marker: str,
                   prog: str) -> Iterator[tuple[Path, list[SiteScan]]]:
    """Each fold run RUNS/<source>/ holding `marker` whose source has scans in `data`, with
    those scans (linked in a temporary folder that lasts while the folds are iterated)."""
    with tempfile.TemporaryDirectory(prefix="adapt-links-") as links:  # RUNS is only read
        try:
            root, samples = all_samples(data, Path(links))
        except DatasetError as error:
            fail(str(error), prog=prog)
        for run in sorted(path.parent for path in runs.glob(f"*/{marker}")):
            site = [SiteScan(root / s.rel_path, s.label) for s in samples
                    if s.source == run.name]
            if site:
                typer.echo(f"fold {run.name}: {len(site)} held-out scans", err=True)
                yield run, site


def command_line(prog: str, runs: Path, data: list[Path], out: Path, name: str) -> str:
    """The command that regenerates a fold benchmark's results."""
    options = ["--runs", str(runs), *(a for path in data for a in ("--data", str(path))),
               "--out", str(out), "--name", name]
    return shlex.join(["python", "-m", prog, *options])


def run_fold(outputs: dict, classes: int, settings: AdaptSettings) -> dict:
    """Accuracy on the rest of the site and on the other sources' validation scans, for
    every k and seed."""
    site_p, site_x, site_y = outputs["site"]
    val_p, val_x, val_y = outputs["val"]
    _, replay_x, replay_y = outputs["replay"]
    rows, seconds = [], []
    for k in KS:
        for seed in SEEDS if k else SEEDS[:1]:
            chosen = draw(site_y, k, seed)
            rest = np.setdiff1d(np.arange(len(site_y)), chosen)
            row = {"k": k, "seed": seed, "test_scans": len(rest),
                   "site_before": accuracy(site_p[rest], site_y[rest]),
                   "val_before": accuracy(val_p, val_y)}
            if k:
                started = time.perf_counter()
                head = fit_adaptation(replay_x, replay_y, site_x[chosen], site_y[chosen],
                                      classes, settings).head
                seconds.append(time.perf_counter() - started)
                site_after, val_after = head.probabilities(site_x[rest]), head.probabilities(val_x)
            else:
                site_after, val_after = site_p[rest], val_p
            row.update(site_after=accuracy(site_after, site_y[rest]),
                       val_after=accuracy(val_after, val_y))
            rows.append(row)
    return {"rows": rows, "classes": [int(c) for c in np.unique(site_y)],
            "scans": len(site_y), "val_scans": len(val_y), "replay_scans": len(replay_y),
            "fit_seconds_median": float(np.median(seconds)) if seconds else None}


def run_trade_off(outputs: dict, classes: int, settings: AdaptSettings) -> list[dict]:
    """For each site share: accuracy on the rest of the site and on the other sources'
    validation scans after adapting on GOAL_K scans per class (the seeds' draws), and the
    ceiling: the head fitted on every scan of the site, measured on those same scans."""
    _, site_x, site_y = outputs["site"]
    _, val_x, val_y = outputs["val"]
    _, replay_x, replay_y = outputs["replay"]
    rows = []
    for share in TRADE_OFF_SHARES:
        changed = replace(settings, site_share=share)
        row = {"site_share": share, "site_after": [], "val_after": []}
        for seed in SEEDS:
            chosen = draw(site_y, GOAL_K, seed)
            rest = np.setdiff1d(np.arange(len(site_y)), chosen)
            head = site_head(replay_x, replay_y, site_x[chosen], site_y[chosen], classes, changed)
            row["site_after"].append(accuracy(head.probabilities(site_x[rest]), site_y[rest]))
            row["val_after"].append(accuracy(head.probabilities(val_x), val_y))
        ceiling = site_head(replay_x, replay_y, site_x, site_y, classes, changed)
        row.update(ceiling_site=accuracy(ceiling.probabilities(site_x), site_y),
                   ceiling_val=accuracy(ceiling.probabilities(val_x), val_y))
        rows.append(row)
    return rows


def draw(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k scans of every class present, drawn with a fixed seed (all but one if fewer)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:min(k, (labels == c).sum() - 1)]
              for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen)).astype(int)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probabilities).argmax(axis=1) == labels).mean())


def adapt_command(
    runs: Annotated[Path, typer.Option(help="Folder of the `lungcnn loso` fold runs "
                                       "(RUNS/<source>/model_int8.tflite).")],
    data: Annotated[list[Path], typer.Option(
        metavar="DATASET", help="The datasets the folds were made from (repeat).")],
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("benchmarks/results"),
    name: Annotated[str, typer.Option(help="Results file stem.")] = "adapt",
) -> None:
    """Adapt each fold model on k = 0, 5, 10, 20, 40 scans per class of its held-out
    source (5 seeds) and test on the rest of it and on the other sources' validation scans;
    then, at k = 20, the trade-off of the site's share of the fitting weight.

    Writes OUT/NAME.json, OUT/NAME.md, OUT/NAME.png and OUT/NAME-trade-off.png. Exit
    codes: 0 done; 2 no fold model or unreadable dataset."""
    settings = AdaptSettings()
    folds = {}
    for run, site in held_out_folds(runs, data, MODEL, PROG):
        outputs = fold_outputs(run / MODEL, site)
        classes = outputs["site"][0].shape[1]  # the probabilities' width
        folds[run.name] = {**run_fold(outputs, classes, settings),
                           "trade_off": run_trade_off(outputs, classes, settings)}
    if not folds:
        fail(f"{runs}: no */{MODEL} of a source in the data", prog=PROG)
    result = {"command": command_line(PROG, runs, data, out, name),
              "notice": NOTICE, "ks": KS, "seeds": SEEDS, "trade_off_shares": TRADE_OFF_SHARES,
              "settings": {"site_share": settings.site_share, "l2": settings.l2,
                           "folds": settings.folds}, "folds": folds}
    write_json_atomic(out / f"{name}.json", result)
    write_plot(result, out / f"{name}.png")
    write_trade_off_plot(result, out / f"{name}-trade-off.png")
    text = markdown(result, f"{name}.png", f"{name}-trade-off.png")
    (out / f"{name}.md").write_text(text)
    typer.echo(text)


if __name__ == "__main__":
    typer.run(adapt_command)
