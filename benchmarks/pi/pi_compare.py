"""`pi_check.py compare`: the host's and an emulated run's `edge-classify --json` lines,
record by record. Standard library only at import time."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from pi_errors import CheckError

FLOAT_TOLERANCE = 1e-5


# edge-classify's stability check re-encodes each scan (low-resolution JPEG, blur, reframing)
# before running the model again; Pillow's and libjpeg-turbo's SIMD paths differ between
# x86_64 and aarch64 by a grey level here and there, so that one derived confidence may move
# a little. The feature distance is float64 arithmetic on the model's (identical) features,
# summed in another order by the other architecture's BLAS: its rounded value may move by one
# last digit. The model's own outputs, the label and the flag must still match exactly.
FIELD_TOLERANCE = {"stable_confidence": 0.01, "feature_distance": 0.002}
# So a scan whose stable confidence sits at the model's minimum may be `ok` on one and
# `uncertain` on the other: tolerated (and counted) only when the `ok` side's confidence is
# the higher one and the two are within the tolerance above, that is when a threshold between
# them explains the flip. Its flag and reason are then not compared.
BORDERLINE_FLAGS = {"ok", "uncertain"}
# The reason quotes those values ("confidence over variants 0.63 < 0.66"): its words must
# match, its numbers are the fields above, compared with their own tolerance.
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def compare_runs(expected_path: Path, actual_path: Path, tolerance: float) -> str:
    """Compare two JSON-lines outputs record by record; returns a one-line summary."""
    expected = _json_lines(expected_path)
    actual = _json_lines(actual_path)
    if not expected:
        raise CheckError(f"{expected_path}: the host run printed no JSON lines")
    if len(expected) != len(actual):
        raise CheckError(
            f"{actual_path}: {len(actual)} JSON lines, the host run printed {len(expected)}"
        )
    worst, borderline = 0.0, 0
    for number, (want, got) in enumerate(zip(expected, actual), start=1):
        if _borderline(want, got):
            borderline += 1
            want, got = ({k: v for k, v in r.items() if k not in ("flag", "reason")}
                         for r in (want, got))
        worst = max(worst, _compare_values(want, got, tolerance, f"line {number}"))
    if worst == 0.0:
        summary = f"{len(expected)} records identical"
    else:
        summary = f"{len(expected)} records match, max |difference| {worst:.2e} <= {tolerance:g}"
    if borderline:
        summary += f"; {borderline} flag(s) ok/uncertain at the confidence threshold"
    return summary + _tolerated_fields_summary(expected, actual)


def _borderline(want, got) -> bool:
    """An ok/uncertain flip explained by a stable confidence at the threshold (see above)."""
    if not (isinstance(want, dict) and isinstance(got, dict)):
        return False
    flags = (want.get("flag"), got.get("flag"))
    confidences = (want.get("stable_confidence"), got.get("stable_confidence"))
    if flags[0] == flags[1] or set(flags) != BORDERLINE_FLAGS \
            or not all(_is_number(c) for c in confidences):
        return False
    ok, uncertain = (0, 1) if flags[0] == "ok" else (1, 0)
    return 0 < confidences[ok] - confidences[uncertain] <= FIELD_TOLERANCE["stable_confidence"]


def _tolerated_fields_summary(expected: list, actual: list) -> str:
    """How far the fields of FIELD_TOLERANCE moved (they are left out of the summary above)."""
    parts = []
    for field, limit in FIELD_TOLERANCE.items():
        moved = [abs(want[field] - got[field]) for want, got in zip(expected, actual)
                 if isinstance(want, dict) and _is_number(want.get(field))
                 and _is_number(got.get(field))]
        if moved:
            parts.append(f"{field} within {limit:g} (max {max(moved):.1e})")
    return f" ({'; '.join(parts)})" if parts else ""


def _json_lines(path: Path) -> list:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise CheckError(f"{path}:{number}: not a JSON line: {line[:120]!r}") from None
    return records


def _compare_values(want, got, tolerance: float, where: str) -> float:
    """Largest numeric difference found; raises CheckError on any other difference."""
    if isinstance(want, dict) and isinstance(got, dict):
        if want.keys() != got.keys():
            raise CheckError(f"{where}: keys differ: {sorted(want)} vs {sorted(got)}")
        label = f"{where} ({want.get('file', '')})" if "file" in want else where
        return max(
            [_compare_values(want[k], got[k], tolerance, f"{label}.{k}")
             for k in want if k not in FIELD_TOLERANCE and k != "reason"]
            + [_compare_values(*(_NUMBER.sub("#", str(r)) for r in (want[k], got[k])), 0.0,
                               f"{label}.{k}") for k in want if k == "reason"]
            + [_within(want[k], got[k], FIELD_TOLERANCE[k], f"{label}.{k}")
               for k in want if k in FIELD_TOLERANCE],
            default=0.0,
        )
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return max(
            [_compare_values(w, g, tolerance, f"{where}[{i}]")
             for i, (w, g) in enumerate(zip(want, got))],
            default=0.0,
        )
    if _is_number(want) and _is_number(got):
        difference = abs(float(want) - float(got))
        if not difference <= tolerance and not (math.isnan(want) and math.isnan(got)):
            raise CheckError(
                f"{where}: host {want!r} vs emulated {got!r} (|difference| {difference:.3g} "
                f"> tolerance {tolerance:g})"
            )
        return difference
    if want != got:
        raise CheckError(f"{where}: host {want!r} vs emulated {got!r}")
    return 0.0


def _within(want, got, limit: float, where: str) -> float:
    """Check a FIELD_TOLERANCE field; it does not count towards the worst difference."""
    _compare_values(want, got, limit, where)
    return 0.0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def output_is_quantized(model_path: Path) -> bool:
    """True for an int8/uint8 output tensor: then host and emulated outputs must be identical."""
    from lungcnn.edge.runtime import interpreter_class

    interpreter = interpreter_class()(model_path=str(model_path))
    return interpreter.get_output_details()[0]["dtype"].__name__ in ("int8", "uint8")
