"""Heatmap PNGs of classified uploads: made by `Classifier.heatmap` and kept in a bounded
in-memory LRU under random ids (nothing is written to disk)."""

from __future__ import annotations

import base64
import io
import secrets
import threading
from collections import OrderedDict

from PIL.PngImagePlugin import PngInfo

from lungcnn.edge.api import Classifier
from lungcnn.edge.decode import ScanError
from lungcnn.edge.errors import first_line
from lungcnn.edge.heatmap import DEFAULT_GRID, DISCLAIMER, heatmap_caption
from lungcnn.edge.report import ScanResult

ID_PATTERN = r"^[A-Za-z0-9_-]{22}$"  # secrets.token_urlsafe(16)


class HeatmapStore:
    """At most `capacity` PNGs; the least recently used is dropped first."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._pngs: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, png: bytes) -> str:
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._pngs[key] = png
            while len(self._pngs) > self._capacity:
                self._pngs.popitem(last=False)
        return key

    def get(self, key: str) -> bytes | None:
        with self._lock:
            png = self._pngs.get(key)
            if png is not None:
                self._pngs.move_to_end(key)
            return png

    def __len__(self) -> int:
        return len(self._pngs)


def heatmap_png(classifier: Classifier, data: bytes, result: ScanResult) -> bytes:
    """The occlusion heatmap of an upload drawn over the scan, as PNG bytes carrying the
    same text chunks as `edge-classify --heatmap` files. Raises ScanError."""
    image = classifier.heatmap(data)
    info = PngInfo()
    caption = heatmap_caption(result.path, result.prediction.label,
                              result.prediction.confidence, DEFAULT_GRID)
    for key, value in {**caption, "Disclaimer": DISCLAIMER}.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def heatmap_entry(classifier: Classifier, data: bytes, result: ScanResult, mode: str,
                  store: HeatmapStore) -> dict | None:
    """What a response says about one record's heatmap: None (not asked for, or no
    prediction), {"id", "url"}, {"png_base64"} or {"error"}."""
    if mode == "none" or not result.ok:
        return None
    try:
        png = heatmap_png(classifier, data, result)
    except ScanError as error:
        return {"error": first_line(error)}
    if mode == "inline":
        return {"png_base64": base64.b64encode(png).decode("ascii")}
    key = store.put(png)
    return {"id": key, "url": f"/v1/heatmap/{key}"}
