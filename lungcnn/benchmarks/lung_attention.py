"""Where a model looks, measured: the share of its occlusion-heatmap mass that falls inside
the lung fields a reference segmenter finds on the whole scan.

    python -m lungcnn.benchmarks.lung_attention --model M.tflite --segmenter S.tflite \
        --data data/covid19-dataset --data ../shared/data/multisource

(`lungcnn loso --attention` measures the same on every held-out scan.)

The same reference segmenter scores every model, whatever its contract: a contract 1 model's
heatmap covers the whole scan, a contract 2 model's covers its lung-field crop, and both are
placed on the scan before the lung share is taken. Only the positive drops count (covering
the cell made the predicted class less likely: evidence for the answer).
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

from lungcnn.edge.api import Classifier
from lungcnn.edge.contract import seen_box, segmenter_input
from lungcnn.edge.heatmap import DEFAULT_GRID, occlusion_heatmap
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.edge.segmenter import LungSegmenter
from lungcnn.trainer.datasets import combine, read_dataset


def lung_mask(segmenter: LungSegmenter, gray: np.ndarray) -> np.ndarray:
    """The reference lung mask of a whole scan, (side, side) bool."""
    probabilities = segmenter.probabilities(segmenter_input(gray, segmenter.side))
    return probabilities >= segmenter.settings.threshold


def lung_share(classifier: Classifier, gray: np.ndarray, mask: np.ndarray,
               grid: int = DEFAULT_GRID) -> float | None:
    """Share of the positive heatmap mass inside `mask`; None when nothing has positive mass."""
    prepared = classifier.runtime.prepare(gray)
    drops = occlusion_heatmap(classifier.runtime, prepared.model_input, grid)[0]
    positive = np.clip(drops, 0, None)
    if positive.sum() <= 0:
        return None
    box = seen_box(classifier.runtime.spec, prepared.lung_field)
    inside = _cell_lung_fractions(mask, box, grid)
    return float((positive * inside).sum() / positive.sum())


def _cell_lung_fractions(mask: np.ndarray, box, grid: int) -> np.ndarray:
    """Fraction of each heatmap cell (the grid over `box`, in scan fractions) inside `mask`."""
    side = mask.shape[0]
    left, top, right, bottom = (round(v * side) for v in box)
    region = mask[top:max(bottom, top + 1), left:max(right, left + 1)].astype(np.float32)
    resized = Image.fromarray(region, mode="F").resize((grid, grid), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float64)


def summarise(shares: list[float | None]) -> dict:
    values = np.array([s for s in shares if s is not None])
    if not len(values):
        return {"scans": 0, "mean": None, "median": None}
    return {"scans": int(len(values)), "mean": round(float(values.mean()), 4),
            "median": round(float(np.median(values)), 4)}


def attention_by_source(model: Path, segmenter: Path, data: list[Path], per_source: int | None
                        ) -> dict:
    """Lung share of `model`'s heatmaps on (the first `per_source` of) every source's scans."""
    classifier, reference = Classifier(model), LungSegmenter(segmenter)
    shares: dict[str, list] = defaultdict(list)
    with tempfile.TemporaryDirectory() as links:
        root, samples = combine([read_dataset(path) for path in data], Path(links))
        for sample in samples:
            if per_source is not None and len(shares[sample.source]) >= per_source:
                continue
            gray = classifier.decode(root / sample.rel_path).gray
            shares[sample.source].append(lung_share(classifier, gray, lung_mask(reference, gray)))
    return {source: summarise(values) for source, values in sorted(shares.items())}


def main(
    model: Annotated[list[Path], typer.Option(help="A .tflite classifier (repeatable).")],
    segmenter: Annotated[Path, typer.Option(help="The reference lung-field segmenter.")],
    data: Annotated[list[Path], typer.Option(help="A dataset (repeatable).")],
    per_source: Annotated[int | None, typer.Option(help="Scans per source (default: all).")] = None,
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path(
        "benchmarks/results/lung_attention.json"),
) -> None:
    """Share of each model's occlusion-heatmap mass inside the lungs, per source."""
    result = {"command": "python -m lungcnn.benchmarks.lung_attention " + shlex.join(sys.argv[1:]),
              "segmenter": str(segmenter),
              "models": {str(m): attention_by_source(m, segmenter, data, per_source)
                         for m in model}}
    write_json_atomic(out, result)
    for name, rows in result["models"].items():
        typer.echo(name)
        for source, row in rows.items():
            typer.echo(f"  {source}: mean {row['mean']}, median {row['median']} (n={row['scans']})")


if __name__ == "__main__":
    typer.run(main)
