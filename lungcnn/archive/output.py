"""The results folder of `classify-archive`:

    RESULTS/parts/part-<digest>.parquet   one block of rows, named by the paths it holds
    RESULTS/run.json                      the run manifest (model, code version, counts, ...)

A row is one `edge-classify --json` record (`probabilities` kept as a struct with one field
per class) plus `path` (absolute, the join key) and `sha256` (of the bytes classified; null
when the file could not be read). A block is written to a temporary file and renamed, and
its name depends only on its paths, so a retried task rewrites the same file with the same
rows: a block is there whole or not at all, and never twice. Resume reads the `path` column
of the blocks already there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pyarrow import parquet

from lungcnn.edge.manifest import write_bytes_atomic, write_json_atomic
from lungcnn.edge.report import NOTICE, ScanResult

PARTS_DIR = "parts"
RUN_MANIFEST = "run.json"
RUN_FORMAT = "lungcnn-archive-run/1"
_FLOAT_FIELDS = frozenset({"confidence", "raw_confidence", "stable_confidence",
                           "feature_distance"})


class ResultsError(ValueError):
    """A results folder that cannot be written to or resumed (one line; a usage error)."""


def result_schema(class_names: tuple[str, ...]) -> pa.Schema:
    """`path`, `sha256`, then the fields of `ScanResult.to_dict()` in its order."""
    fields = [pa.field("path", pa.string(), nullable=False), pa.field("sha256", pa.string())]
    for key in ScanResult(Path()).to_dict():
        if key == "probabilities":
            fields.append(pa.field(key, pa.struct([(n, pa.float64()) for n in class_names])))
        elif key == "prediction_set":
            fields.append(pa.field(key, pa.list_(pa.string())))
        else:
            fields.append(pa.field(key, pa.float64() if key in _FLOAT_FIELDS else pa.string()))
    return pa.schema(fields, metadata={"notice": NOTICE})


def result_row(path: str, sha256: str | None, result: ScanResult) -> dict:
    return {"path": path, "sha256": sha256, **result.to_dict()}


def part_name(paths: list[str]) -> str:
    digest = hashlib.sha256("\0".join(paths).encode("utf-8")).hexdigest()
    return f"part-{digest[:32]}.parquet"


def write_part(out_dir: Path, rows: list[dict], schema: pa.Schema) -> str:
    """Write `rows` as one Parquet block, atomically, under its deterministic name."""
    name = part_name([row["path"] for row in rows])
    sink = pa.BufferOutputStream()
    parquet.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    write_bytes_atomic(out_dir / PARTS_DIR / name, sink.getvalue().to_pybytes())
    return name


def part_files(out_dir: Path) -> list[Path]:
    """The finished blocks (temporary files of interrupted writes start with '.')."""
    return sorted((out_dir / PARTS_DIR).glob("part-*.parquet"))


def read_results(out_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """Every row written so far under `out_dir` (all blocks, concatenated)."""
    tables = [parquet.read_table(path, columns=columns) for path in part_files(out_dir)]
    if not tables:
        return pa.table({name: pa.array([], pa.string()) for name in columns or ["path"]})
    return pa.concat_tables(tables, promote_options="permissive")


@dataclass(frozen=True)
class CountCheck:
    """The final check: every listed path has exactly one row."""

    rows: int
    unique_paths: int
    missing: int
    duplicated: int

    @property
    def passed(self) -> bool:
        return self.missing == 0 and self.duplicated == 0

    def to_record(self) -> dict:
        return {"rows": self.rows, "unique_paths": self.unique_paths, "missing": self.missing,
                "duplicated": self.duplicated, "passed": self.passed}


def count_check(result_paths: list[str], expected_paths: set[str]) -> CountCheck:
    unique = set(result_paths)
    return CountCheck(rows=len(result_paths), unique_paths=len(unique),
                      missing=len(expected_paths - unique),
                      duplicated=len(result_paths) - len(unique))


def prepare_results(out_dir: Path, model_sha256: str) -> dict | None:
    """Check that `out_dir` can take this run's results; the previous run manifest when it
    is a resume. Raises ResultsError for a file, a foreign folder or another model's results."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ResultsError(f"--out {out_dir}: not a folder")
    manifest_file = out_dir / RUN_MANIFEST
    if not manifest_file.exists():
        if out_dir.exists() and any(out_dir.iterdir()):
            raise ResultsError(f"--out {out_dir}: not empty and has no {RUN_MANIFEST} "
                               "(not a classify-archive results folder)")
        return None
    try:
        previous = json.loads(manifest_file.read_text())
        previous_sha = previous["model"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ResultsError(f"{manifest_file}: unreadable run manifest ({error})") from None
    if previous_sha != model_sha256:
        raise ResultsError(f"--out {out_dir} holds results of another model (sha256 "
                           f"{previous_sha[:12]}...); use a new --out for this model")
    return previous


def write_run_manifest(out_dir: Path, manifest: dict) -> Path:
    return write_json_atomic(out_dir / RUN_MANIFEST, {"format": RUN_FORMAT, "notice": NOTICE,
                                                       **manifest})
