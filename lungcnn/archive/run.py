"""One `classify-archive` run: list the sources, skip what the results folder already holds,
classify the rest on Ray, then check the counts and write the run manifest."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import ray

from lungcnn.edge.api import BUNDLED_MODEL, Classifier
from lungcnn.edge.manifest import library_versions, manifest_path, sha256_file
from lungcnn.archive.job import ModelFiles, classify_paths, ray_session
from lungcnn.archive.output import (
    PARTS_DIR,
    CountCheck,
    count_check,
    prepare_results,
    read_results,
    write_run_manifest,
)
from lungcnn.archive.sources import Listing, SourceError, list_sources

MAX_LISTED_FAILURES = 1000
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


@dataclass(frozen=True)
class ArchiveConfig:
    sources: tuple[str, ...]
    out: Path
    address: str = "local"
    model: Path | None = None
    batch_size: int = 64
    workers: int | None = None  # actors; None: one per CPU of the cluster


@dataclass(frozen=True)
class RunOutcome:
    listed: int
    skipped: int  # already in the results folder (resume)
    classified: int  # rows the pipeline returned in this run
    failed: int  # listed scans whose row is an error
    flagged: int  # listed scans classified but flagged (uncertain, out_of_distribution)
    check: CountCheck
    seconds: float

    @property
    def exit_code(self) -> int:
        if not self.check.passed:
            return EXIT_INCOMPLETE
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def summary(self, out: Path) -> str:
        text = (f"{self.listed} scans: {self.listed - self.failed - self.check.missing} "
                f"classified ({self.flagged} flagged), {self.failed} failed; "
                f"{self.skipped} already done, {self.classified} done now in "
                f"{self.seconds:.1f} s; {self.check.rows} rows in {out / PARTS_DIR}")
        if not self.check.passed:
            text += (f"; COUNT CHECK FAILED: {self.check.missing} missing, "
                     f"{self.check.duplicated} duplicated (re-run the same command to resume)")
        return text


def run_archive(config: ArchiveConfig) -> RunOutcome:
    """Raises ModelError, SourceError or ResultsError (usage errors) before any work, and
    job.ClusterError when Ray cannot be reached."""
    started = time.perf_counter()
    started_at = _now()
    model_path = config.model or BUNDLED_MODEL
    classifier = Classifier(model_path)  # validates model and manifest before any work
    model = ModelFiles.read(model_path)
    listing = list_sources(list(config.sources))
    if not listing.paths:
        raise SourceError("the sources list no scans")
    previous = prepare_results(config.out, model.sha256)
    base = _manifest_base(config, model_path, model.sha256, classifier)
    runs = list((previous or {}).get("runs", []))
    write_run_manifest(config.out, {"status": "running", "started": started_at, **base,
                                    "runs": runs})
    skipped, classified = _classify_remaining(config, listing, model)
    results = read_results(config.out, ["path", "status", "flag", "error"])
    check = count_check(results.column("path").to_pylist(), set(listing.paths))
    outcome = _outcome(results, listing.paths, skipped, classified, check,
                       time.perf_counter() - started)
    finished_at = _now()
    runs.append({"started": started_at, "finished": finished_at, "listed": outcome.listed,
                 "skipped": skipped, "classified": classified,
                 "duplicates_in_sources": listing.duplicates, "workers": config.workers,
                 "batch_size": config.batch_size, "address": config.address})
    write_run_manifest(config.out, {
        "status": "complete" if check.passed else "incomplete", "started": started_at,
        "finished": finished_at, "counts": _counts(results, outcome),
        "check": check.to_record(), "failures": _failures(results), **base, "runs": runs})
    return outcome


def _classify_remaining(config: ArchiveConfig, listing: Listing,
                        model: ModelFiles) -> tuple[int, int]:
    """Classify the listed scans the results folder does not hold yet (resume); how many
    were skipped and how many rows the pipeline returned."""
    done = set(read_results(config.out, ["path"]).column("path").to_pylist())
    todo = [(p, e) for p, e in zip(listing.paths, listing.errors) if p not in done]
    if not todo:
        return len(listing.paths), 0
    with ray_session(config.address, config.workers):
        classified = classify_paths([p for p, _ in todo], [e for _, e in todo], config.out,
                                    model, batch_size=config.batch_size,
                                    workers=config.workers)
    return len(listing.paths) - len(todo), classified


def _outcome(results: pa.Table, listed: tuple[str, ...], skipped: int, classified: int,
             check: CountCheck, seconds: float) -> RunOutcome:
    wanted = set(listed)
    failed = flagged = 0
    for path, status, flag in zip(*(results.column(c).to_pylist()
                                    for c in ("path", "status", "flag"))):
        if path in wanted:
            failed += status != "ok"
            flagged += status == "ok" and flag not in (None, "ok")
    return RunOutcome(len(listed), skipped, classified, failed, flagged, check, seconds)


def _manifest_base(config: ArchiveConfig, model_path: Path, model_sha256: str,
                   classifier: Classifier) -> dict:
    return {
        "model": {"path": str(Path(model_path).resolve()), "sha256": model_sha256,
                  "manifest_sha256": sha256_file(manifest_path(model_path)),
                  "class_names": list(classifier.class_names),
                  "input_size": classifier.input_size},
        "code_version": _code_version(),
        "versions": {**library_versions(), "ray": ray.__version__, "pyarrow": pa.__version__},
        "sources": list(config.sources),
        "results": str(Path(config.out).resolve() / PARTS_DIR),
        "row_fields": "path, sha256, then the edge-classify --json fields; probabilities is "
                      "a struct with one field per class",
    }


def _counts(results: pa.Table, outcome: RunOutcome) -> dict:
    statuses = Counter(results.column("status").to_pylist())
    flags = Counter(flag for flag in results.column("flag").to_pylist() if flag is not None)
    return {"listed": outcome.listed, "rows": outcome.check.rows, "ok": statuses["ok"],
            "error": statuses["error"], "flags": dict(sorted(flags.items())),
            "skipped_already_done": outcome.skipped, "classified_this_run": outcome.classified}


def _failures(results: pa.Table) -> dict:
    failed = [{"path": path, "error": error} for path, status, error in
              zip(*(results.column(c).to_pylist() for c in ("path", "status", "error")))
              if status != "ok"]
    return {"count": len(failed), "listed": failed[:MAX_LISTED_FAILURES],
            "all_listed": len(failed) <= MAX_LISTED_FAILURES}


def _code_version() -> str:
    try:
        return metadata.version("lungcnn")
    except metadata.PackageNotFoundError:
        return "unknown (lungcnn not installed as a package)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
