"""Which edge-classify records two revisions disagree on, field by field (for
`benchmarks.throughput`), across the change of `confidence` from the raw to the calibrated
value (the raw one is now `raw_confidence`)."""

from __future__ import annotations

from pathlib import Path

# The fields of a record that must agree; "file" differs by folder, "notice" by wording.
COMPARED = ("status", "label", "confidence", "raw_confidence", "probabilities", "flag",
            "reason", "stable_confidence", "feature_distance", "error")


def _today(record: dict) -> dict:
    """Older records had the raw value as `confidence`; compare calibrated to 4 decimals."""
    if "calibrated_confidence" in record:
        record = {**record, "raw_confidence": record["confidence"],
                  "confidence": record["calibrated_confidence"]}
    value = record.get("confidence")
    return {**record, "confidence": round(value, 4) if isinstance(value, float) else value}


def differences(baseline: list[dict], current: list[dict]) -> list[dict]:
    """Records whose compared fields differ, matched by file name relative to the folder."""
    def by_name(records: list[dict]) -> dict[str, dict]:
        return {Path(r["file"]).name + "|" + Path(r["file"]).parent.name: r for r in records}

    old, new = by_name(list(map(_today, baseline))), by_name(list(map(_today, current)))
    found = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            found.append({"file": name, "missing_in": "baseline" if a is None else "current"})
            continue
        fields = {k: [a.get(k), b.get(k)] for k in COMPARED if a.get(k) != b.get(k)}
        if fields:
            found.append({"file": name, **fields})
    return found
