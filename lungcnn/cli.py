"""`lungcnn`: the workbench command that mounts each stage's own command.

    lungcnn train   -> trainer.cli      (python -m lungcnn.trainer)
    lungcnn data    -> trainer.datacheck
    lungcnn convert -> convert.cli      (python -m lungcnn.convert)
    lungcnn bench   -> benchmarks.cli   (python -m lungcnn.benchmarks)
    lungcnn calibrate -> calibrate.cli (confidence calibration, abstention thresholds)
    lungcnn loso    -> benchmarks.loso_cli (leave-one-source-out; loso-report: its report)
    lungcnn loso-ensemble -> benchmarks.ensemble_cli (members without each pair of sources)
    lungcnn bundle  -> bundle           (a calibrated int8 model becomes the bundled model)
    lungcnn segmenter -> segmenter_cli  (the lung-field segmenter of contract v2)

Stages import TensorFlow inside their commands, so `lungcnn --help` stays fast.
"""

from __future__ import annotations

from lungcnn.edge.interrupt import ctrl_c_ends_startup

with ctrl_c_ends_startup("lungcnn"):
    import typer

    from lungcnn.archive.cli import classify_archive_command
    from lungcnn.benchmarks.cli import bench_command
    from lungcnn.benchmarks.ensemble_cli import loso_ensemble_command
    from lungcnn.benchmarks.loso_cli import loso_command, loso_report_command
    from lungcnn.benchmarks.probe import probe_command
    from lungcnn.bundle import bundle_command
    from lungcnn.calibrate.cli import calibrate_command
    from lungcnn.convert.cli import convert_command
    from lungcnn.edge.errors import NOTICE, run_app
    from lungcnn.segmenter_cli import segmenter_command
    from lungcnn.trainer.cli import train_command
    from lungcnn.trainer.datacheck import data_app

app = typer.Typer(
    help=f"lungcnn workbench: train, check data, convert to TFLite and benchmark. {NOTICE}",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: paragraphs rewrapped to the terminal, no type tags
)
_COMMANDS = (  # name, command, its line in `lungcnn --help`
    ("train", train_command, "Train an architecture and write its run directory."),
    ("convert", convert_command, "Convert a trained Keras model to TFLite, with manifests."),
    ("bench", bench_command, "Benchmark each run's models: quality, speed, cost, robustness "
                             "and trust (docs/benchmarks.md)."),
    ("calibrate", calibrate_command, "Fit calibrated confidence and abstention thresholds."),
    ("loso", loso_command, "Leave each source out in turn and classify it on the device."),
    ("loso-report", loso_report_command, "Recompute a leave-one-source-out report, with its "
                                         "selective-prediction figures, without training."),
    ("loso-ensemble", loso_ensemble_command, "Score the disagreement of members trained "
                                             "without each pair of sources, on LOSO folds."),
    ("probe", probe_command, "Probe models' features for source and age shortcuts."),
    ("bundle", bundle_command, "Make a run's calibrated int8 model the bundled model."),
    ("segmenter", segmenter_command, "Train and convert the lung-field segmenter."),
    ("classify-archive", classify_archive_command,
     "Classify every scan of an archive on a Ray cluster."),
)
for name, command, short_help in _COMMANDS:
    app.command(name, short_help=short_help)(command)
app.add_typer(data_app, name="data")


def main(argv: list[str] | None = None) -> None:
    run_app(app, argv, "lungcnn")
