"""`lungcnn segmenter`: train the lung-field segmenter, convert it to int8 and score it.

The model is trained on every mask but a held-out part of each site, and scored on that part
(int8, device runtime). `--cross-site` also trains on each mask site alone and scores it on the
other: the test of a segmenter meeting a hospital it never saw. Not a medical device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lungcnn.edge.errors import EXIT_USAGE
from lungcnn.edge.manifest import write_json_atomic


def segmenter_command(
    data: Annotated[list[Path], typer.Option(
        "--data", help="A dataset with lung masks (masks/<source>/<stem>.png beside the images "
        "its manifest.csv lists); repeatable.")],
    out: Annotated[Path, typer.Option(help="Run directory to write (model.keras, "
                                            "lungseg_int8.tflite and their manifests).")],
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 40,
    cross_site: Annotated[bool, typer.Option(
        "--cross-site", help="Also train on each mask site alone and score on the others.")] = False,
) -> None:
    """Train the lung-field segmenter (int8 TFLite, for contract v2). Not a medical device."""
    from lungcnn.trainer.segmenter import SegmenterConfig
    from lungcnn.trainer.segmenter_data import load_mask_pairs
    from lungcnn.trainer.tf_log import quiet_tensorflow

    quiet_tensorflow()
    config = SegmenterConfig(epochs=epochs)
    pairs = load_mask_pairs(list(data), config.input_size)
    if len({p.source for p in pairs}) < 1 or len(pairs) < 10:
        typer.echo(f"error: {len(pairs)} image/mask pairs found in --data; need 10 or more",
                   err=True)
        raise typer.Exit(EXIT_USAGE)
    path = _train_final(pairs, config, out)
    typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if cross_site:
        _record(path, "cross_site", _cross_site(pairs, config, out))


def _train_final(pairs, config, out: Path) -> Path:
    from lungcnn.convert.segmenter import fitted_limits, int8_dice, write_segmenter
    from lungcnn.trainer.segmenter import train_segmenter
    from lungcnn.trainer.segmenter_data import held_out_part

    held = held_out_part(pairs, config.held_out_fraction, config.seed)
    train = [p for p, h in zip(pairs, held) if not h]
    test = [p for p, h in zip(pairs, held) if h]
    model = train_segmenter(train, config, out, log=_log)
    images, masks = _arrays(train)
    path = write_segmenter(model, images, out, fitted_limits(masks), {
        "training": {"pairs": len(train), "by_source": _counts(train),
                     "config": config.to_json()},
        "cross_site": None,
    })
    dice = int8_dice(path, *_arrays(test))
    held_out = {"pairs": len(test), "by_source": _by_source(test, dice)}
    _record(path, "held_out_dice", held_out)
    typer.echo(f"held-out Dice (int8): {_describe(held_out)}")
    return path


def _cross_site(pairs, config, out: Path) -> dict:
    from lungcnn.convert.segmenter import fitted_limits, int8_dice, write_segmenter
    from lungcnn.trainer.segmenter import train_segmenter

    scores = {}
    for source in sorted({p.source for p in pairs}):
        train = [p for p in pairs if p.source == source]
        test = [p for p in pairs if p.source != source]
        fold = out / f"cross-site-{source}"
        model = train_segmenter(train, config, fold, log=_log)
        images, masks = _arrays(train)
        path = write_segmenter(model, images, fold, fitted_limits(masks), {})
        scores[source] = {"trained_on": source,
                          "scored_on": _by_source(test, int8_dice(path, *_arrays(test)))}
        typer.echo(f"trained on {source}: Dice (int8) {_describe(scores[source]['scored_on'])}")
    return scores


def _arrays(pairs) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([p.image for p in pairs]), np.stack([p.mask for p in pairs])


def _counts(pairs) -> dict[str, int]:
    return {s: sum(p.source == s for p in pairs) for s in sorted({p.source for p in pairs})}


def _by_source(pairs, dice: np.ndarray) -> dict:
    sources = np.array([p.source for p in pairs])
    return {s: {"pairs": int((sources == s).sum()),
                "mean_dice": round(float(dice[sources == s].mean()), 4),
                "p5_dice": round(float(np.percentile(dice[sources == s], 5)), 4)}
            for s in sorted(set(sources))}


def _describe(by_source: dict) -> str:
    rows = by_source.get("by_source", by_source)
    return ", ".join(f"{s} {v['mean_dice']:.3f} (n={v['pairs']})" for s, v in rows.items())


def _record(path: Path, key: str, value) -> None:
    import json

    manifest_file = path.with_suffix(".json")
    manifest = json.loads(manifest_file.read_text())
    manifest[key] = value
    write_json_atomic(manifest_file, manifest)


def _log(line: str) -> None:
    typer.echo(line, err=True)
