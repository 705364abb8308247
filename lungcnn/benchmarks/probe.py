"""Shortcut probe: how well a linear classifier on a model's features tells the source or
the age group of a scan. A model that looks at the lungs should not make that easy.

For each model: logistic regression on the features its classifier layer reads (the
`features_output` of the int8 file), scored by balanced accuracy in stratified 5-fold
cross-validation (chance is 1 / number of groups). Probes: the source and the age group of
every scan; the age group of the Normal scans (adult vs pediatric: the shortcut that calls adult normals Covid);
the source of the Covid scans. A probe on 16x16 thumbnails of the raw pixels shows how much
of each cue the images carry before any model.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lungcnn.edge.api import Classifier
from lungcnn.edge.contract import CLASS_NAMES, load_scan
from lungcnn.edge.decode import ScanError
from lungcnn.edge.errors import fail
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.edge.model import run_all
from lungcnn.edge.runtime import ModelError
from lungcnn.trainer.dataset import DatasetError, Sample
from lungcnn.trainer.tf_log import quiet_tensorflow

FOLDS = 5
THUMBNAIL = 16
PROBES: dict[str, tuple[Callable[[Sample], bool], Callable[[Sample], str]]] = {
    "source (all scans)": (lambda s: True, lambda s: s.source),
    "age group (all scans)": (lambda s: True, lambda s: s.age_group),
    "age group (Normal scans)": (lambda s: CLASS_NAMES[s.label] == "Normal",
                                 lambda s: s.age_group),
    "source (Covid scans)": (lambda s: CLASS_NAMES[s.label] == "Covid", lambda s: s.source),
}


def model_features(model: Path, root: Path, samples: Sequence[Sample]) -> np.ndarray:
    """The features output of a .tflite model for each scan (ModelError without one)."""
    runtime = Classifier(model).runtime
    if runtime.features_dim is None:
        raise ValueError(f"{model}: no features output to probe")
    return run_all(runtime, (runtime.model_input(runtime.preprocessor.decode(root / s.rel_path).gray)
                             for s in samples))[1]


def pixel_features(root: Path, samples: Sequence[Sample]) -> np.ndarray:
    return np.stack([load_scan(root / s.rel_path, THUMBNAIL).ravel()
                     for s in samples]).astype(np.float64)


def probe_scores(features: np.ndarray, samples: Sequence[Sample], seed: int = 0) -> dict:
    """Balanced accuracy (mean and per fold) and chance of each probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = {}
    for name, (keep, target) in PROBES.items():
        rows = [i for i, s in enumerate(samples) if keep(s)]
        groups = np.array([target(samples[i]) for i in rows])
        kinds, counts = np.unique(groups, return_counts=True)
        if len(kinds) < 2 or counts.min() < FOLDS:
            scores[name] = None
            continue
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
        fold_scores = cross_val_score(probe, features[rows], groups, cv=folds,
                                      scoring="balanced_accuracy")
        scores[name] = {
            "balanced_accuracy": float(fold_scores.mean()),
            "folds": [round(float(v), 4) for v in fold_scores],
            "chance": 1 / len(kinds),
            "groups": {str(k): int(c) for k, c in zip(kinds, counts)},
        }
    return scores


def probe_command(
    model: Annotated[list[Path], typer.Option(
        metavar="MODEL", help="A .tflite model with a features output; repeat to compare.")],
    data: Annotated[list[Path], typer.Option(
        metavar="DATASET", help="A dataset (as for `lungcnn train --data`); repeat for each.")],
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("benchmarks/results"),
    name: Annotated[str, typer.Option(help="Results file stem.")] = "probe",
) -> None:
    """Probe models' features (and the raw pixels) for source and age-group shortcuts.

    Writes OUT/NAME.json and OUT/NAME.md. Exit codes: 0 done; 2 usage error (a model
    without features output, an unreadable dataset)."""
    quiet_tensorflow()
    from lungcnn.benchmarks.loso import all_samples

    try:
        with tempfile.TemporaryDirectory(prefix="lungcnn-probe-") as links:
            root, samples = all_samples(data, Path(links))
            rows = {"raw pixels (16x16)": probe_scores(pixel_features(root, samples), samples)}
            for path in model:
                rows[str(path)] = probe_scores(model_features(path, root, samples), samples)
    except (DatasetError, ModelError, ScanError, ValueError) as error:
        fail(str(error))
    result = {"command": "lungcnn " + shlex.join(["probe", *sys.argv[2:]]),
              "scans": len(samples), "folds": FOLDS, "probes": rows}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{name}.json", result)
    (out / f"{name}.md").write_text(format_markdown(result))
    typer.echo(format_markdown(result))


def format_markdown(result: dict) -> str:
    names = list(PROBES)
    lines = [
        "# Shortcut probe", "", f"Regenerate: `{result['command']}`", "",
        f"Balanced accuracy of a logistic regression on each model's features "
        f"({result['folds']}-fold cross-validation over {result['scans']} scans); lower is "
        "better, chance in brackets.", "",
        "| features | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row, scores in result["probes"].items():
        cells = ["-" if scores[n] is None else
                 f"{scores[n]['balanced_accuracy']:.3f} ({scores[n]['chance']:.2f})"
                 for n in names]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])
