"""`lungcnn train` / `python -m lungcnn.trainer`: train an architecture and write a run directory."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import typer

from lungcnn.edge.errors import EXIT_FAILED, NOTICE, fail, print_error
from lungcnn.edge.interpreter import ModelError
from lungcnn.trainer.architectures import ARCHITECTURES
from lungcnn.trainer.dataset import DatasetError, UnreadableScans, default_data_dir
from lungcnn.trainer.metrics import format_with_ci
from lungcnn.trainer.tf_log import quiet_tensorflow

EXIT_UNREADABLE = EXIT_FAILED  # some training files could not be read
ArchName = Literal[tuple(ARCHITECTURES)]  # the choices follow the registry


def train_command(
    arch: Annotated[
        ArchName,
        typer.Option(
            help="Architecture from the registry (lungcnn/trainer/architectures.py); it brings its "
            "default recipe, which the options below override."
        ),
    ] = "reference",
    data: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="DATASET",
            help="A dataset: a folder DIR/{train,test}/<class>/, or a folder holding "
            "manifest.csv (or the CSV itself). Repeat to train on several datasets at once. "
            "(default: the repository's data/covid19-dataset)",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN_DIR", help="Run directory to write. (default: runs/<arch>-seed<seed>)"
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, shuffling and augmentation.")] = 0,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            help="Fraction of each class of train/ held out for validation."
        ),
    ] = None,
    early_stopping: Annotated[
        bool | None,
        typer.Option(
            "--early-stopping/--no-early-stopping",
            help="Stop when validation AUC has not improved for 10 epochs (recipe: off "
            "for reference).",
            show_default=False,
        ),
    ] = None,
    dedup: Annotated[
        bool | None,
        typer.Option(
            "--dedup/--no-dedup",
            help="Drop validation files byte-identical to a training file. Test metrics are always "
            "reported on the full test split and on its leak-free subset. (recipe: off)",
            show_default=False,
        ),
    ] = None,
    limit_per_class: Annotated[
        int | None,
        typer.Option(
            min=2,
            metavar="N",
            help="Use only the first N files of each class of each split (fast smoke tests).",
        ),
    ] = None,
    exclude_source: Annotated[
        list[str] | None,
        typer.Option(metavar="SOURCE", help="Leave out every scan of this source (repeatable)."),
    ] = None,
    exclude_finding: Annotated[
        list[str] | None,
        typer.Option(
            metavar="VALUE",
            help="Leave out every scan whose manifest `finding` is VALUE, e.g. nodule "
            "(repeatable).",
        ),
    ] = None,
    balance_sources: Annotated[
        bool | None,
        typer.Option(
            "--balance-sources/--no-balance-sources",
            help="Weight training scans so that every source-class pair weighs the same.",
            show_default=False,
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            min=8, help="Input side in pixels (recipe: the architecture's, 512 for reference)."
        ),
    ] = None,
    lung_field: Annotated[
        Path | None,
        typer.Option(
            metavar="SEGMENTER", help="Input contract 2: the model sees the lung field this "
            "segmenter (.tflite from `lungcnn segmenter`) finds, cropped with a margin. "
            "(default: contract 1, the whole scan)"
        ),
    ] = None,
    equalize: Annotated[
        bool | None,
        typer.Option(
            "--equalize/--no-equalize",
            help="Contract 2: histogram-equalise the lung-field crop. (default: on)",
            show_default=False,
        ),
    ] = None,
    mask_outside: Annotated[
        bool | None,
        typer.Option(
            "--mask-outside/--no-mask-outside",
            help="Contract 2: set what lies outside the (dilated) lungs to black. (default: off)",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a model already in RUN_DIR.")
    ] = False,
) -> None:
    """Train an architecture and write its run directory.

    Validation is carved out of every dataset's train pool with a fixed seed,
    stratified by source and class, duplicates kept on one side; the test split
    never influences training or model selection. RUN_DIR receives
    model.keras (the epoch with the best validation accuracy), manifest.json,
    history.json, metrics.json (val, test, and test_dedup = test without the
    files leaked from train) and plots/.

    Exit codes:
    0 trained and saved;
    1 some scans unreadable (each listed; see `lungcnn data check DIR`);
    2 usage error: bad option, a DATASET missing or not in a known layout,
    RUN_DIR already holds a model (use --overwrite), or TensorFlow not installed.
    """
    spec = ARCHITECTURES[arch]
    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": lr,
        "val_fraction": val_fraction,
        "early_stopping": early_stopping,
        "dedup": dedup,
        "limit_per_class": limit_per_class,
        "input_size": size,
        "exclude_sources": tuple(exclude_source) if exclude_source else None,
        "exclude_findings": tuple(exclude_finding) if exclude_finding else None,
        "balance_sources": balance_sources,
        "lung_field": str(lung_field) if lung_field else None,
        "equalize": equalize,
        "mask_outside": mask_outside,
    }
    try:
        config = replace(
            spec.recipe, seed=seed, **{k: v for k, v in overrides.items() if v is not None}
        )
    except ValueError as error:
        fail(f"invalid option: {error}")
    data_dirs = data or [default_data_dir()]
    for data_dir in data_dirs:
        if not data_dir.exists():
            hint = "" if data else " (not a source checkout? pass --data DIR)"
            fail(f"dataset not found: {data_dir}{hint}")
    run_dir = out if out is not None else Path("runs") / f"{arch}-seed{seed}"
    if (run_dir / "model.keras").exists() and not overwrite:
        fail(f"{run_dir} already holds model.keras; pass --overwrite or another --out")
    _require_writable(run_dir)
    _require_tensorflow()

    from lungcnn.trainer.run import train_run

    try:
        result = train_run(spec, config, data_dirs, run_dir)
    except (DatasetError, ModelError) as error:
        fail(str(error))
    except UnreadableScans as error:
        for rel_path, reason in error.failures:
            print_error(f"{rel_path}: {reason}")
        fail(f"{len(error.failures)} unreadable file(s); run `lungcnn data check DATASET`",
             EXIT_UNREADABLE)
    _print_summary(arch, config.seed, result)


def _print_summary(arch: str, seed: int, result) -> None:
    typer.echo(
        f"\n{arch}, seed {seed}: kept epoch {result.best_epoch} of {result.epochs_run} "
        f"(best validation accuracy), wall time {result.wall_seconds:.0f} s"
    )
    rows = [(name, result.metrics[name]) for name in ("val", "test", "test_dedup")]
    rows += [(f"val {source}", metrics)
             for source, metrics in result.metrics["by_source"]["val"].items()]
    width = max(11, *(len(name) + 1 for name, _ in rows))
    typer.echo(f"{'':{width}}{'n':>4}  {'accuracy [95% CI]':<24}{'AUC macro [95% CI]'}")
    for name, metrics in rows:
        ci = metrics["ci95"]
        typer.echo(
            f"{name:<{width}}{metrics['n']:>4}  "
            f"{format_with_ci(metrics['accuracy'], ci['accuracy']):<24}"
            f"{format_with_ci(metrics['auc_macro'], ci['auc_macro'])}"
        )
    typer.echo(f"Run directory: {result.run_dir}")
    typer.echo(NOTICE)


def _require_writable(run_dir: Path) -> None:
    """Refuse an unusable RUN_DIR before training, not after it."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"{run_dir}: cannot create the run folder ({error.strerror or error})")
    if not os.access(run_dir, os.W_OK | os.X_OK):
        fail(f"{run_dir}: run folder is not writable")


def _require_tensorflow() -> None:
    quiet_tensorflow()
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        fail("TensorFlow is not installed: pip install 'lungcnn[train]'")

