"""`lungcnn data check DIR`: counts, unreadable files, duplicates and train/test leaks."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.edge.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail
from lungcnn.trainer.dataset import (
    NEAR_DUPLICATE_CORRELATION,
    SPLITS,
    THUMBNAIL_SIZE,
    DatasetError,
    find_duplicates,
    fingerprint_files,
    leaked_test_files,
)
from lungcnn.trainer.datasets import combine, counts_by_source, read_dataset
from lungcnn.trainer.fetch import fetch_command

EXIT_READABLE, EXIT_UNREADABLE, EXIT_LAYOUT = EXIT_OK, EXIT_FAILED, EXIT_USAGE

data_app = typer.Typer(no_args_is_help=True, add_completion=False)
data_app.command("fetch")(fetch_command)


@data_app.callback()
def data_group() -> None:
    """Check datasets before training, or fetch one from its public sources."""  # a callback keeps `check` a subcommand


@data_app.command("check")
def check_command(
    datasets: Annotated[
        list[Path],
        typer.Argument(
            metavar="DATASET...",
            help="Datasets: a folder DIR/{train,test}/<class>/, or a folder holding "
            "manifest.csv (or the CSV itself). Several are checked together.",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report counts, unreadable files, duplicates and train/test leaks.

    Decodes every file; counts scans per split, source, class, age group and finding;
    lists exact duplicates (identical bytes) and near duplicates (the same
    picture re-encoded, resized or re-windowed) within and across splits,
    sources and datasets, and the test files that copy a train file.

    Exit codes:
    0 every file readable (duplicates are findings, not errors);
    1 some files unreadable (each listed with the reason);
    2 a DATASET missing or not in a known layout.
    """
    try:
        report = check_dataset(datasets)
    except DatasetError as error:
        fail(str(error), EXIT_LAYOUT)
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    raise typer.Exit(EXIT_UNREADABLE if report["unreadable"] else EXIT_READABLE)


def check_dataset(paths: Path | Sequence[Path]) -> dict:
    """The data check as a JSON-ready dict; raises DatasetError on a wrong layout. Several
    datasets are read side by side, each file named <dataset>/<path>."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    datasets = [read_dataset(path) for path in paths]
    with tempfile.TemporaryDirectory(prefix="lungcnn-check-") as links:
        root, samples = combine(datasets, Path(links))
        prints, failures = fingerprint_files(root, [s.rel_path for s in samples])
    by_path = {s.rel_path: s for s in samples}
    duplicates = [_duplicate_record(d, by_path) for d in find_duplicates(prints)]
    by_split = {
        split: {s.rel_path: prints[s.rel_path] for s in samples
                if s.split == split and s.rel_path in prints}
        for split in SPLITS
    }
    leaks = leaked_test_files(by_split["test"], by_split["train"])
    tests = [s for s in samples if s.split == "test"]
    return {
        "root": ", ".join(str(path) for path in paths),
        "datasets": [dataset.describe() for dataset in datasets],
        "counts": {split: _counts([s for s in samples if s.split == split]) for split in SPLITS},
        "counts_by_source": counts_by_source(
            {split: [s for s in samples if s.split == split] for split in SPLITS}),
        "unreadable": [{"file": rel_path, "reason": reason} for rel_path, reason in failures],
        "near_duplicate": {
            "thumbnail_size": THUMBNAIL_SIZE,
            "min_correlation": NEAR_DUPLICATE_CORRELATION,
        },
        "duplicates": duplicates,
        "leaked_test_files": sorted(leaks),
        "leak_free_test_files": len(tests) - len(leaks),
    }


def _duplicate_record(duplicate, by_path: dict) -> dict:
    first, second = by_path[duplicate.first], by_path[duplicate.second]
    return {
        "first": duplicate.first,
        "second": duplicate.second,
        "kind": duplicate.kind,
        "similarity": duplicate.similarity,
        "scope": _scope(first.split, second.split),
        "same_class": first.label == second.label,
        "same_source": first.source == second.source,
    }


def format_report(report: dict) -> str:
    lines = [f"Dataset: {report['root']}", ""]
    lines += _count_table(report["counts"])
    lines += ["", "Scans per source (class/age group/finding, where a manifest gives one):"]
    lines += [f"  {split:<6}{source:<18}" + ", ".join(f"{k} {v}" for k, v in cells.items())
              for split, by in report["counts_by_source"].items()
              for source, cells in by.items()]
    unreadable = report["unreadable"]
    lines += ["", f"Unreadable files: {len(unreadable) or 'none'}"]
    lines += [f"  {item['file']}: {item['reason']}" for item in unreadable]
    near = report["near_duplicate"]
    for kind, title, sign in (
        ("exact", "Exact duplicates (identical bytes)", "=="),
        (
            "near",
            f"Near duplicates ({near['thumbnail_size']}x{near['thumbnail_size']} "
            f"thumbnail correlation >= {near['min_correlation']})",
            "~=",
        ),
    ):
        pairs = [d for d in report["duplicates"] if d["kind"] == kind]
        lines += ["", f"{title}: {len(pairs) or 'none'}"]
        lines += [_pair_line(d, sign) for d in pairs]
    total_test = report["counts"]["test"]["total"]
    leaked = report["leaked_test_files"]
    lines += [
        "",
        f"Test files leaked from train (exact or near copy of a train file): "
        f"{len(leaked)} of {total_test}; leak-free test subset: "
        f"{report['leak_free_test_files']} files.",
    ]
    lines += [f"  {rel_path}" for rel_path in leaked]
    return "\n".join(lines)


def _pair_line(duplicate: dict, sign: str) -> str:
    similarity = "" if duplicate["kind"] == "exact" else f"{duplicate['similarity']:.3f}  "
    warning = "" if duplicate["same_class"] else "  [DIFFERENT CLASSES]"
    warning += "" if duplicate["same_source"] else "  [DIFFERENT SOURCES]"
    return (
        f"  {duplicate['scope']:<14}{similarity}{duplicate['first']} {sign} "
        f"{duplicate['second']}{warning}"
    )


def _count_table(counts: dict) -> list[str]:
    columns = [*CLASS_NAMES, "total"]
    header = f"{'split':<7}" + "".join(f"{name:>{len(name) + 2}}" for name in columns)
    rows = [
        f"{split:<7}" + "".join(f"{counts[split][name]:>{len(name) + 2}}" for name in columns)
        for split in counts
    ]
    return [header, *rows]


def _counts(samples) -> dict[str, int]:
    counts = {name: 0 for name in CLASS_NAMES}
    for sample in samples:
        counts[sample.class_name] += 1
    return {**counts, "total": len(samples)}


def _scope(first_split: str, second_split: str) -> str:
    splits = sorted({first_split, second_split})
    return f"within {splits[0]}" if len(splits) == 1 else "train-test"
