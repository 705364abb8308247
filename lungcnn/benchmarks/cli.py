"""`lungcnn bench` / `python -m lungcnn.benchmarks`: the Keras model and every TFLite variant side by
side. Heavy imports happen inside the command, so `lungcnn --help` stays fast."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from lungcnn.benchmarks.config import (
    DEFAULT_OUT,
    DEFAULT_TIMED_CALLS,
    QUICK_HEATMAP_CALLS,
    QUICK_KERAS_BATCH,
    QUICK_TIMED_CALLS,
    QUICK_WARMUP_CALLS,
)
from lungcnn.edge.errors import EXIT_FAILED, EXIT_USAGE, NOTICE, fail
from lungcnn.trainer.tf_log import quiet_tensorflow


def bench_command(
    run: Annotated[Optional[list[Path]], typer.Option(
        "--run", metavar="RUN_DIR",
        help="Trainer run directory (model.keras + manifest.json); repeat for several. Missing "
        "model_<quant>.tflite variants are converted first. Default: runs/reference-seed0 and "
        "the run the bundled lungcnn/edge/models/lungcnn_int8.tflite was converted from.",
        show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Option(
        metavar="DIR", help="Evaluate on every scan of DIR/test (leaks checked against "
        "DIR/train) instead of each run's own test split.", show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Folder for NAME.json, NAME.md and the PNG plots.")]
    = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="Base name of the result files.")] = "latest",
    seeds: Annotated[int, typer.Option(
        min=0, help="First train this many seeds (0..N-1) of each run's architecture and recipe "
        "and report their mean and spread; finished runs of the same recipe (runs/<arch>-seed<N>, "
        "runs/bench-seeds/) are reused. Slow: each missing seed is a full training.")] = 0,
    timed_calls: Annotated[Optional[int], typer.Option(
        min=1, help=f"Timed calls per latency distribution (default: {DEFAULT_TIMED_CALLS}, "
        f"{QUICK_TIMED_CALLS} with --quick).", show_default=False)] = None,
    open_set: Annotated[bool, typer.Option(
        "--open-set", help="Also measure the open-set proxy (benchmarks/open_set.py): for each "
        "class, train each run's architecture without it, fit the trust thresholds as "
        "`lungcnn calibrate` does, and count how many scans of the unseen class get flagged. "
        "Reads train/ only. Slow: three trainings per architecture.")] = False,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Smoke run: two test scans per class, fewer calls, two shift proxies. "
        "Not a measurement.")]
    = False,
) -> None:
    """Benchmark quality (accuracy and macro AUC with 95% intervals, per-class F1, agreement
    with Keras, on the test split and its leak-free subset), speed (invoke and end-to-end
    latency percentiles at 1 thread and all cores), cost (file size, load time, peak memory)
    and robustness (label stability under acquisition changes) of each run's Keras model and
    TFLite variants, and the trust flags of each TFLite variant (abstention, risk-coverage,
    wrong answers flagged, on the test split and shift proxies; non-X-ray images refused;
    ECE; heatmap time). A run whose models lack trust thresholds is calibrated first
    (`lungcnn calibrate`, train/validation only). How long it takes: docs/benchmarks.md.

    Exit codes: 0 written; 1 a measurement failed; 2 usage error (no run found, bad run
    directory or model, conversion or calibration failed, dataset missing, --out not
    writable, bad option).
    """
    quiet_tensorflow()
    from lungcnn.benchmarks.bench import BenchError, default_runs, run_benchmark, write_results
    from lungcnn.benchmarks.config import BenchConfig
    from lungcnn.benchmarks.testset import TestSetError
    from lungcnn.benchmarks.worker import WorkerError
    from lungcnn.edge.errors import first_line
    from lungcnn.edge.manifest import ManifestError
    from lungcnn.edge.runtime import ModelError
    from lungcnn.trainer.dataset import DatasetError, UnreadableScans

    runs = tuple(run) if run else tuple(default_runs())
    if not runs:
        fail("no run to benchmark: train one (`lungcnn train`) or pass --run RUN_DIR")
    try:
        config = BenchConfig(
            runs=runs, out_dir=out, name=name, data_dir=data, seeds=seeds, quick=quick,
            open_set=open_set,
            timed_calls=timed_calls or (QUICK_TIMED_CALLS if quick else DEFAULT_TIMED_CALLS),
            **({"warmup_calls": QUICK_WARMUP_CALLS, "keras_batch": QUICK_KERAS_BATCH,
                "heatmap_calls": QUICK_HEATMAP_CALLS} if quick else {}),
        )
    except ValueError as error:
        fail(f"invalid option: {error}", EXIT_USAGE)
    typer.echo(f"benchmarking {', '.join(str(r) for r in runs)}", err=True)
    try:
        measured = run_benchmark(config, command_line(config), log=lambda m: typer.echo(m, err=True))
    except (BenchError, ManifestError, ModelError, TestSetError, DatasetError, UnreadableScans) as error:
        fail(str(error), EXIT_USAGE)
    except WorkerError as error:
        fail(str(error), EXIT_FAILED)
    try:
        paths = write_results(measured, config.out_dir, config.name)
    except OSError as error:
        fail(f"cannot write the results into {config.out_dir}: {first_line(error)}", EXIT_USAGE)
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())} "
               f"in {measured.result['elapsed_s']:.0f} s")
    typer.echo(NOTICE)


def command_line(config) -> str:
    """The command that regenerates these results, with every choice spelled out."""
    words = ["lungcnn", "bench"]
    for run in config.runs:
        words += ["--run", str(run)]
    if config.data_dir is not None:
        words += ["--data", str(config.data_dir)]
    words += ["--out", str(config.out_dir), "--name", config.name,
              "--timed-calls", str(config.timed_calls)]
    words += ["--seeds", str(config.seeds)] if config.seeds else []
    words += ["--open-set"] if config.open_set else []
    words += ["--quick"] if config.quick else []
    return shlex.join(words)



app = typer.Typer(add_completion=False, help=f"lungcnn benchmarks. {NOTICE}")
app.command(help=bench_command.__doc__)(bench_command)
