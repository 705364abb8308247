"""Open-set proxy: how many answers on a population the model never saw come flagged.

On scans from other hospitals, a model trained on this dataset is mostly wrong and confident
(adult Normal scans called Covid: every training Covid scan is adult, every Normal one
pediatric). No such scans may be used here, so this builds the same situation from the
training folder alone: for each class, train the architecture's recipe on the other two
classes (the usual train/validation split of their scans), fit the trust thresholds on those
exactly as `lungcnn calibrate` does, then assess every training scan of the held-out class,
which the model has never seen and cannot name. Holding out Covid is the closest analogue of
the external failure: a model that knows only pediatric scans meets adult ones.

Reported per held-out class: the share of its scans flagged (uncertain or
out_of_distribution), split by flag, and, for the in-distribution side, the share of the
seen classes' validation scans abstained and the accuracy of the accepted ones. test/ is
never read. Slow: three trainings of the recipe (see `lungcnn bench --open-set`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.edge.decode import decode_scan
from lungcnn.edge.trust import (
    FLAG_OK,
    FLAG_OUT_OF_DISTRIBUTION,
    FLAG_UNCERTAIN,
    TrustSettings,
    assess,
)
from lungcnn.trainer.architectures import ARCHITECTURES
from lungcnn.trainer.dataset import Sample, decode_scans, list_split
from lungcnn.trainer.split import split_train_val


def open_set_proxy(
    arch_name: str,
    data_dir: Path,
    log=print,
    epochs: int | None = None,
    held_out_classes: tuple[str, ...] = CLASS_NAMES,
) -> dict:
    """The open-set report of one architecture's default recipe (seed 0); `epochs` and
    `held_out_classes` shorten it (for tests)."""
    spec = ARCHITECTURES[arch_name]
    config = spec.recipe if epochs is None else replace(spec.recipe, epochs=epochs)
    scans = list_split(data_dir, "train")
    held_out = {}
    for label, name in enumerate(CLASS_NAMES):
        if name not in held_out_classes:
            continue
        log(f"open set: training {arch_name} without {name}")
        held_out[name] = held_out_class(spec, config, data_dir, scans, label)
        log(f"  {name}: {_line(held_out[name])}")
    return {
        "arch": arch_name,
        "config": {"epochs": config.epochs, "seed": config.seed, "split_seed": config.split_seed},
        "data_dir": str(data_dir),
        "held_out": held_out,
        "unseen_flagged_mean": float(np.mean([r["unseen"]["flagged"] for r in held_out.values()])),
        "rule": "thresholds fitted as by lungcnn calibrate on the seen classes' train/validation "
        "scans; unseen = every train/ scan of the held-out class; test/ is not read",
    }


def held_out_class(spec, config, data_dir: Path, scans: list[Sample], label: int) -> dict:
    """Train without class `label`, calibrate, and assess its scans and the validation scans."""
    from lungcnn.trainer import training
    from lungcnn.calibrate.calibration import calibrate_model
    from lungcnn.trainer.keras_model import KerasModel

    seen = [s for s in scans if s.label != label]
    unseen = [s for s in scans if s.label == label]
    train, val = split_train_val(seen, config.val_fraction, config.split_seed)
    size = config.input_size
    fitted = training.fit(spec.build, config, decode_scans(data_dir, train, size),
                          decode_scans(data_dir, val, size), verbose=0)
    model = KerasModel(fitted.model, CLASS_NAMES, size)
    split = {"train": [s.rel_path for s in train], "val": [s.rel_path for s in val]}
    calibration, trust = calibrate_model(model, data_dir, split)
    settings = TrustSettings.from_manifest({"calibration": calibration, "trust": trust},
                                           CLASS_NAMES)

    def assessed(samples: list[Sample]) -> dict:
        scans = (decode_scan(data_dir / s.rel_path) for s in samples)
        results = [assess(model, scan.gray, settings, scan.colourfulness) for scan in scans]
        return flag_summary(results, np.array([s.label for s in samples]))

    return {"unseen": assessed(unseen), "seen_val": assessed(val),
            "best_epoch": fitted.history["best_epoch"]}


def flag_summary(results: list, labels: np.ndarray) -> dict:
    flags = np.array([r.flag for r in results])
    correct = np.array([r.label for r in results]) == labels
    accepted = flags == FLAG_OK
    return {
        "n": len(results),
        "accuracy": float(correct.mean()),
        "flagged": float((~accepted).mean()),
        "uncertain": float((flags == FLAG_UNCERTAIN).mean()),
        "out_of_distribution": float((flags == FLAG_OUT_OF_DISTRIBUTION).mean()),
        "wrong_flagged": float((~accepted[~correct]).mean()) if (~correct).any() else None,
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None,
        "feature_distance_p50": _median([r.feature_distance for r in results]),
    }


def _median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def _line(report: dict) -> str:
    unseen, val = report["unseen"], report["seen_val"]
    return (f"unseen scans flagged {unseen['flagged']:.0%} (uncertain {unseen['uncertain']:.0%}, "
            f"out_of_distribution {unseen['out_of_distribution']:.0%}, n={unseen['n']}); "
            f"seen validation abstained {val['flagged']:.0%}, accepted accuracy "
            f"{val['accepted_accuracy'] if val['accepted_accuracy'] is None else round(val['accepted_accuracy'], 2)}")
