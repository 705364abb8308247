"""How the lung-field segmenter does on every source, masks or no masks: how often the lungs
it finds are implausible (the device then flags the scan) or fragmented, and a contact sheet.

    python -m lungcnn.benchmarks.lung_sheet --segmenter runs/lungseg/lungseg_int8.tflite \\
        --data data/covid19-dataset --data ../shared/data/multisource --out benchmarks/results

writes OUT/lung_sheet.{json,md,png}. Sources whose images may not be redistributed (openist,
jsrt: see the multi-source README) are drawn as the predicted mask alone, without the scan.
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
from PIL import Image, ImageDraw

from lungcnn.edge.contract import segmenter_input
from lungcnn.edge.decode import read_grayscale
from lungcnn.edge.errors import NOTICE
from lungcnn.edge.lungfield import find_lung_field, regions
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.edge.segmenter import LungSegmenter
from lungcnn.trainer.datasets import combine, read_dataset

NOT_SHOWN = ("openist", "jsrt")  # no redistribution license: never drawn
PER_SOURCE = 8
FRAGMENT = 0.01  # a region of at least this share of the scan counts as a fragment


def lung_sheet(segmenter_path: Path, data: list[Path], out: Path) -> dict:
    segmenter = LungSegmenter(segmenter_path)
    with tempfile.TemporaryDirectory() as links:
        root, samples = combine([read_dataset(path) for path in data], Path(links))
        return _measure(segmenter, root, samples, out)


def _measure(segmenter: LungSegmenter, root: Path, samples, out: Path) -> dict:
    by_source = defaultdict(list)
    for sample in samples:
        by_source[sample.source].append(sample.rel_path)
    drawn = {rel for rels in by_source.values()
             for rel in rels[:: max(1, len(rels) // PER_SOURCE)][:PER_SOURCE]}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    shown: dict[str, list] = defaultdict(list)
    for sample in samples:
        image = segmenter_input(read_grayscale(root / sample.rel_path), segmenter.side)
        probabilities = segmenter.probabilities(image)
        field = find_lung_field(probabilities, segmenter.settings)
        lung = probabilities >= segmenter.settings.threshold
        fragments = sum(r[0] >= FRAGMENT * lung.size for r in regions(lung))
        row = counts[sample.source]
        row["scans"] += 1
        row["implausible"] += field.problem is not None
        row["fragmented"] += fragments > 2
        row["one_region"] += fragments == 1
        if sample.rel_path in drawn:
            shown[sample.source].append(_panel(image, lung, field, sample.source))
    _sheet(shown).save(out / "lung_sheet.png")
    return {"segmenter": str(segmenter.model_path), "sha256": segmenter.sha256,
            "limits": segmenter.settings.to_json(), "fragment_share": FRAGMENT,
            "by_source": {source: dict(row) for source, row in sorted(counts.items())}}


def _panel(image: np.ndarray, lung: np.ndarray, field, source: str) -> Image.Image:
    base = np.zeros_like(image) if source in NOT_SHOWN else image
    rgb = np.stack([base] * 3, axis=-1).astype(np.float32)
    rgb[lung] = rgb[lung] * 0.5 + np.array([0, 200, 80]) * 0.5
    panel = Image.fromarray(rgb.astype(np.uint8))
    side = image.shape[0]
    left, top, right, bottom = (v * side for v in field.box)
    colour = (255, 60, 60) if field.problem else (255, 220, 0)
    ImageDraw.Draw(panel).rectangle((left, top, right - 1, bottom - 1), outline=colour)
    return panel


def _sheet(shown: dict[str, list]) -> Image.Image:
    side = next(iter(shown.values()))[0].size[0]
    label = 90
    sheet = Image.new("RGB", (label + PER_SOURCE * side, len(shown) * side), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (source, panels) in enumerate(sorted(shown.items())):
        draw.text((4, row * side + side // 2 - 6), source, fill="black")
        for column, panel in enumerate(panels):
            sheet.paste(panel, (label + column * side, row * side))
    return sheet


def format_markdown(result: dict, command: str) -> str:
    lines = ["# Lung-field segmenter on every source", "", f"Regenerate: `{command}`", "",
             "Implausible: the device flags the scan (limits in the segmenter's manifest). "
             f"Fragmented: more than two regions of at least {FRAGMENT:.0%} of the scan. "
             "One region: both lungs merged, or one lung missed.", "",
             "| source | scans | implausible | fragmented | one region |", "|---|---|---|---|---|"]
    for source, row in result["by_source"].items():
        lines.append(f"| {source} | {row['scans']} | {row.get('implausible', 0)} "
                     f"| {row.get('fragmented', 0)} | {row.get('one_region', 0)} |")
    lines += ["", "![predicted lung masks (green) and lung boxes (yellow; red when implausible)]"
              "(lung_sheet.png)", "",
              f"Rows {', '.join(NOT_SHOWN)}: the predicted mask only, on black (those images may "
              "not be redistributed). Base set images: CC BY-SA 4.0 (Covid-19 Image Dataset, "
              "P. Raikote); covid-cxnet: CC BY 4.0 (A. Haghanifar et al.), down-scaled.", "",
              NOTICE, ""]
    return "\n".join(lines)


def main(
    segmenter: Annotated[Path, typer.Option(help="The segmenter (.tflite with its manifest).")],
    data: Annotated[list[Path], typer.Option(help="A dataset (repeatable).")],
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("benchmarks/results"),
) -> None:
    """Count implausible and fragmented lung fields per source; draw a contact sheet."""
    out.mkdir(parents=True, exist_ok=True)
    result = lung_sheet(segmenter, data, out)
    command = "python -m lungcnn.benchmarks.lung_sheet " + shlex.join(sys.argv[1:])
    write_json_atomic(out / "lung_sheet.json", {**result, "command": command})
    (out / "lung_sheet.md").write_text(format_markdown(result, command))
    typer.echo(format_markdown(result, command))


if __name__ == "__main__":
    typer.run(main)
