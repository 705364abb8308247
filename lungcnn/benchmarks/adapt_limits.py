"""What limits adaptation by a refitted head (issue 21): heads fitted exactly as
`edge-classify adapt` fits them (frozen network, feature replay, site share, L2), but on
richer frozen features than the classifier's input, and a gate that would route a site's scans
to their own head.

For each fold run of `lungcnn loso`, every ReLU output of the fold's Keras model is pooled
(global average) on its training scans (replay), its validation scans (the other sources) and
the held-out source's scans, each prepared by the fold model's own contract. Feature sets:
the classifier's input (what `adapt` uses), the output of every block, every ReLU output. For
each set: k = 20 scans per class (the adaptation benchmark's draws) at several site shares,
and a ceiling: half of the source to adapt on, the best setting (shares x L2) whose drop on
the other sources is within the goal. The gate is a logistic regression, site (k = 20) against
the replay scans, on the classifier's input; its AUC at telling the rest of the site from the
other sources' validation scans says whether routing could keep the other sources' answers.

    python -m lungcnn.benchmarks.adapt_limits --runs runs/loso --data data/covid19-dataset \\
        --data ../shared/data/multisource --out benchmarks/results --name adapt-limits

Needs TensorFlow (`[train]`): the features are the Keras models', not the int8 files'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lungcnn.benchmarks.adapt import (
    SEEDS,
    accuracy,
    command_line,
    draw,
    fold_scans,
    held_out_folds,
)
from lungcnn.benchmarks.adapt_limits_report import markdown
from lungcnn.benchmarks.adapt_report import GOAL_K, GOAL_MAX_DROP
from lungcnn.edge.adapt import AdaptSettings, site_head
from lungcnn.edge.api import Classifier
from lungcnn.edge.errors import NOTICE, fail
from lungcnn.edge.head import fit_head
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.edge.site import SiteScan

SHARES = (0.1, 0.3, 0.5)
CEILING_SHARES = (0.05, 0.1, 0.2, 0.3, 0.5)
CEILING_L2 = (0.01, 0.1, 1.0, 10.0)
GATE_L2 = 1.0
PROG = "lungcnn.benchmarks.adapt_limits"


def pooled_relus(run: Path, classifier: Classifier, scans: dict[str, list[SiteScan]]) -> dict:
    """Per group of scans, each prepared by `classifier`'s contract (the fold's int8 model,
    with its segmenter): the Keras model's probabilities, every rectified spatial output
    (a ReLU layer's, or a convolution's with a ReLU activation) pooled (scans, sum of
    widths), the labels; and the widths of those outputs in order."""
    import keras

    from lungcnn.trainer.keras_model import load_keras

    model = load_keras(run / "model.keras")
    relus = [layer.output for layer in model.layers if _rectified(layer, keras)
             and len(layer.output.shape) == 4]
    pooled = keras.Model(model.inputs, [model.outputs[0], *(
        keras.layers.GlobalAveragePooling2D(name=f"adapt_limits_pool_{i}")(t)
        for i, t in enumerate(relus))])
    outputs = {}
    for name, group in scans.items():
        pixels = np.stack([classifier.runtime.model_input(classifier.decode(s.path).gray)
                           for s in group]).astype(np.float32)
        probabilities, *features = pooled.predict(pixels, batch_size=32, verbose=0)
        outputs[name] = (probabilities, np.concatenate(features, axis=1).astype(np.float64),
                         np.array([s.label for s in group]))
    return {"outputs": outputs, "widths": [int(t.shape[-1]) for t in relus]}


def _rectified(layer, keras) -> bool:
    return (isinstance(layer, keras.layers.ReLU)
            or getattr(layer, "activation", None) is keras.activations.relu)


def feature_sets(widths: list[int]) -> dict[str, np.ndarray]:
    """Column indices of each feature set. The ReLU outputs come in the order of the
    depthwise-separable designs: the stem's, then a depthwise and a pointwise one per block,
    whose output is the pointwise one."""
    ends = np.cumsum(widths)
    columns = [np.arange(end - width, end) for width, end in zip(widths, ends)]
    block_outputs = columns[0::2] + ([columns[-1]] if len(columns) % 2 == 0 else [])
    return {"classifier input": columns[-1],
            "every block's output": np.concatenate(block_outputs),
            "every ReLU output": np.concatenate(columns)}


def with_columns(outputs: dict, columns: np.ndarray) -> dict:
    return {name: (p, x[:, columns], y) for name, (p, x, y) in outputs.items()}


def at_k(outputs: dict, classes: int, settings: AdaptSettings) -> dict:
    """Site accuracy (rest of the source) and drop on the other sources, per seed."""
    _, replay_x, replay_y = outputs["replay"]
    val_p, val_x, val_y = outputs["val"]
    _, site_x, site_y = outputs["site"]
    site, drop = [], []
    for seed in SEEDS:
        chosen = draw(site_y, GOAL_K, seed)
        rest = np.setdiff1d(np.arange(len(site_y)), chosen)
        head = site_head(replay_x, replay_y, site_x[chosen], site_y[chosen], classes, settings)
        site.append(accuracy(head.probabilities(site_x[rest]), site_y[rest]))
        drop.append(accuracy(val_p, val_y) - accuracy(head.probabilities(val_x), val_y))
    return {"site_share": settings.site_share, "site": site, "drop": drop}


def ceiling(outputs: dict, classes: int) -> dict:
    """With half the source to adapt on: the source split in two halves (stratified, fixed
    seed), a head fitted on each half and tested on the other; among the shares x L2 whose
    drop on the other sources (mean of the two heads) is within the goal, the best mean
    accuracy on the halves not fitted on. Choosing the best setting on those halves makes it
    an upper bound."""
    _, replay_x, replay_y = outputs["replay"]
    val_p, val_x, val_y = outputs["val"]
    _, site_x, site_y = outputs["site"]
    halves = _halves(site_y)
    best = {"site": None, "drop": None, "site_share": None, "l2": None}
    for share in CEILING_SHARES:
        for l2 in CEILING_L2:
            settings = AdaptSettings(site_share=share, l2=l2)
            site, drop = [], []
            for fitted, tested in (halves, halves[::-1]):
                head = site_head(replay_x, replay_y, site_x[fitted], site_y[fitted], classes,
                                 settings)
                site.append(accuracy(head.probabilities(site_x[tested]), site_y[tested]))
                drop.append(accuracy(val_p, val_y) - accuracy(head.probabilities(val_x), val_y))
            if np.mean(drop) <= GOAL_MAX_DROP and (best["site"] is None
                                                   or np.mean(site) > best["site"]):
                best = {"site": float(np.mean(site)), "drop": float(np.mean(drop)),
                        "site_share": share, "l2": l2}
    return best


def _halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    first = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:(labels == c).sum() // 2]
                            for c in np.unique(labels)])
    return np.sort(first), np.setdiff1d(np.arange(len(labels)), first)


def gate_auc(outputs: dict) -> list[float]:
    """Per seed: the AUC of a site-vs-replay gate at telling the rest of the site from the
    other sources' validation scans."""
    _, replay_x, _ = outputs["replay"]
    _, val_x, _ = outputs["val"]
    _, site_x, site_y = outputs["site"]
    aucs = []
    for seed in SEEDS:
        chosen = draw(site_y, GOAL_K, seed)
        rest = np.setdiff1d(np.arange(len(site_y)), chosen)
        x = np.concatenate([replay_x, site_x[chosen]])
        is_site = np.arange(len(x)) >= len(replay_x)
        weights = np.where(is_site, 0.5 / is_site.sum(), 0.5 / (~is_site).sum())
        gate = fit_head(x, is_site.astype(int), weights, 2, GATE_L2)
        aucs.append(auc(gate.probabilities(site_x[rest])[:, 1], gate.probabilities(val_x)[:, 1]))
    return aucs


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The probability that a positive scores above a negative (ties count half)."""
    greater = (positive[:, None] > negative[None, :]).mean()
    ties = (positive[:, None] == negative[None, :]).mean()
    return float(greater + 0.5 * ties)


def fold_limits(outputs: dict, widths: list[int], classes: int) -> dict:
    sets = {}
    for name, columns in feature_sets(widths).items():
        chosen = with_columns(outputs, columns)
        sets[name] = {"dim": len(columns), "ceiling": ceiling(chosen, classes),
                      "at_k": [at_k(chosen, classes, AdaptSettings(site_share=s))
                               for s in SHARES]}
    gate = gate_auc(with_columns(outputs, feature_sets(widths)["classifier input"]))
    return {"classes": [int(c) for c in np.unique(outputs["site"][2])], "feature_sets": sets,
            "gate_auc": gate}


def adapt_limits_command(
    runs: Annotated[Path, typer.Option(help="Folder of the `lungcnn loso` fold runs "
                                       "(RUNS/<source>/model.keras and model_int8.tflite).")],
    data: Annotated[list[Path], typer.Option(
        metavar="DATASET", help="The datasets the folds were made from (repeat).")],
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("benchmarks/results"),
    name: Annotated[str, typer.Option(help="Results file stem.")] = "adapt-limits",
) -> None:
    """Heads refitted as `edge-classify adapt` does on richer frozen features of each fold's
    Keras model, their ceiling, and a source gate's AUC. Writes OUT/NAME.json and OUT/NAME.md.
    Exit codes: 0 done; 2 no fold run or unreadable dataset."""
    from lungcnn.trainer.tf_log import quiet_tensorflow

    quiet_tensorflow()
    folds = {}
    for run, site in held_out_folds(runs, data, "model.keras", PROG):
        classifier, scans = fold_scans(run / "model_int8.tflite", site)
        pooled = pooled_relus(run, classifier, scans)
        folds[run.name] = fold_limits(pooled["outputs"], pooled["widths"],
                                      len(classifier.class_names))
    if not folds:
        fail(f"{runs}: no */model.keras of a source in the data", prog=PROG)
    result = {"command": command_line(PROG, runs, data, out, name), "notice": NOTICE,
              "k": GOAL_K, "seeds": SEEDS, "shares": SHARES, "ceiling_shares": CEILING_SHARES,
              "ceiling_l2": CEILING_L2, "gate_l2": GATE_L2, "folds": folds}
    write_json_atomic(out / f"{name}.json", result)
    text = markdown(result)
    (out / f"{name}.md").write_text(text)
    typer.echo(text)


if __name__ == "__main__":
    typer.run(adapt_limits_command)
