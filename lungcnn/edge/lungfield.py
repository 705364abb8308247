"""Where the lungs are, from the segmenter's per-pixel lung probabilities: the two largest
connected regions, their bounding box, and whether they are plausible lungs at all.

Only numpy and Pillow. The limits come from the segmenter's manifest (`lung_field`), fitted by
`lungcnn segmenter` on the training masks; `edge.contract` crops the scan to the box.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

_DILATION = 0.03  # of the segmenter's side: the lung border and opacities at its edge stay in

@dataclass(frozen=True)
class LungFieldSettings:
    """Threshold on the lung probability, and what a plausible pair of lungs looks like, as
    fractions of the segmenter's input: area of the two largest regions, width and height of
    their box."""

    threshold: float = 0.5
    min_area: float = 0.08
    max_area: float = 0.7
    min_width: float = 0.35
    min_height: float = 0.25

    @classmethod
    def from_json(cls, section: dict) -> LungFieldSettings:
        if not isinstance(section, dict):
            raise ValueError("lung_field must be an object")
        values = {}
        for name in cls.__dataclass_fields__:
            value = section.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not 0 < value < 1:
                raise ValueError(f"lung_field.{name} must be a number between 0 and 1")
            values[name] = float(value)
        if values["min_area"] >= values["max_area"]:
            raise ValueError("lung_field.min_area must be below max_area")
        return cls(**values)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LungField:
    """The lung box (left, top, right, bottom) as fractions of the scan, the lung area as a
    fraction of the scan, the number of regions found, and why the lungs are implausible
    (None when they are plausible)."""

    box: tuple[float, float, float, float]
    area: float
    regions: int
    problem: str | None = None

    def to_record(self) -> dict:
        return {"box": [round(v, 4) for v in self.box], "area": round(self.area, 4),
                "regions": self.regions, "found": self.problem is None}


def find_lung_field(probabilities: np.ndarray, settings: LungFieldSettings) -> LungField:
    """The lung field of one (side, side) probability map: the two largest 4-connected
    regions above the threshold."""
    lung = probabilities >= settings.threshold
    found = sorted(regions(lung), reverse=True)
    if not found:
        return LungField((0.0, 0.0, 1.0, 1.0), 0.0, 0, "no lung found")
    kept = found[:2]
    height, width = lung.shape
    box = (min(r[1] for r in kept) / width, min(r[2] for r in kept) / height,
           max(r[3] for r in kept) / width, max(r[4] for r in kept) / height)
    area = sum(r[0] for r in kept) / lung.size
    return LungField(box, area, len(found), _problem(box, area, settings))


def _problem(box, area: float, settings: LungFieldSettings) -> str | None:
    if area < settings.min_area:
        return f"lung area {area:.0%} of the scan, below {settings.min_area:.0%}"
    if area > settings.max_area:
        return f"lung area {area:.0%} of the scan, above {settings.max_area:.0%}"
    if box[2] - box[0] < settings.min_width:
        return f"lung box {box[2] - box[0]:.0%} of the width, below {settings.min_width:.0%}"
    if box[3] - box[1] < settings.min_height:
        return f"lung box {box[3] - box[1]:.0%} of the height, below {settings.min_height:.0%}"
    return None


def regions(lung: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """(pixels, left, top, right, bottom) of every 4-connected region of a boolean image: the
    runs of each row, joined with the overlapping runs of the row above (label propagation
    with pointer jumping, all in numpy)."""
    width = lung.shape[1] + 1
    changes = np.diff(np.pad(lung, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(changes == 1)
    ends = np.nonzero(changes == -1)[1]
    if not len(rows):
        return []
    # The runs of the row above that overlap run k are the slice lo[k]:hi[k] (runs are
    # ordered by row, then column).
    above = (rows - 1) * width
    lo = np.searchsorted(rows * width + ends, above + starts, side="right")
    hi = np.searchsorted(rows * width + starts, above + ends, side="left")
    counts = np.maximum(hi - lo, 0)
    lower = np.repeat(np.arange(len(rows)), counts)
    upper = lo[lower] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    labels = np.arange(len(rows))
    while True:
        joined = labels.copy()
        smallest = np.minimum(labels[lower], labels[upper])
        np.minimum.at(joined, lower, smallest)
        np.minimum.at(joined, upper, smallest)
        joined = joined[joined]
        if np.array_equal(joined, labels):
            break
        labels = joined
    _, region = np.unique(labels, return_inverse=True)
    count = region.max() + 1
    pixels = np.bincount(region, weights=ends - starts, minlength=count).astype(int)
    left, top = np.full(count, lung.shape[1]), np.full(count, lung.shape[0])
    right, bottom = np.zeros(count, int), np.zeros(count, int)
    np.minimum.at(left, region, starts)
    np.minimum.at(top, region, rows)
    np.maximum.at(right, region, ends)
    np.maximum.at(bottom, region, rows + 1)
    return list(zip(*(values.tolist() for values in (pixels, left, top, right, bottom))))


def lung_pixels(lung: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """The lung mask (a boolean map over the whole scan) dilated by _DILATION of its side,
    cut to `box` (scan fractions) and resized to (size, size): the pixels a model input keeps
    when the rest is masked."""
    side = lung.shape[0]
    grown = Image.fromarray(dilated(lung, round(_DILATION * side)).astype(np.uint8) * 255)
    left, top, right, bottom = (v * side for v in box)
    cut = grown.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, right, bottom))
    return np.asarray(cut) > 127


def dilated(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` grown by a (2 radius + 1)-pixel square, within the image: a row pass, then a
    column pass (the same as Pillow's MaxFilter, at a fraction of its cost)."""
    grown = mask.copy()
    for axis in (0, 1):
        source = grown.copy()
        for shift in range(1, radius + 1):
            ahead = [slice(None)] * 2
            behind = [slice(None)] * 2
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            grown[tuple(behind)] |= source[tuple(ahead)]
            grown[tuple(ahead)] |= source[tuple(behind)]
    return grown


def margin_box(field: LungField, margin: float) -> tuple[float, float, float, float]:
    """The lung box grown by `margin` of its own size on every side, within the scan."""
    left, top, right, bottom = field.box
    grow_x, grow_y = margin * (right - left), margin * (bottom - top)
    return (max(0.0, left - grow_x), max(0.0, top - grow_y),
            min(1.0, right + grow_x), min(1.0, bottom + grow_y))
