"""`lungcnn`: the workbench command that mounts each stage's own command.

    lungcnn train   -> trainer.cli      (python -m lungcnn.trainer)
    lungcnn data    -> trainer.datacheck
    lungcnn convert -> convert.cli      (python -m lungcnn.convert)
    lungcnn bench   -> benchmarks.cli   (python -m lungcnn.benchmarks)
    lungcnn calibrate -> calibrate.cli (confidence calibration, abstention thresholds)
    lungcnn bundle  -> bundle           (a calibrated int8 model becomes the bundled model)
    lungcnn segmenter -> segmenter_cli  (the lung-field segmenter of contract v2)

Stages import TensorFlow inside their commands, so `lungcnn --help` stays fast.
"""

from __future__ import annotations

import typer

from lungcnn.archive.cli import classify_archive_command
from lungcnn.benchmarks.cli import bench_command
from lungcnn.benchmarks.loso_cli import loso_command
from lungcnn.benchmarks.probe import probe_command
from lungcnn.bundle import bundle_command
from lungcnn.convert.cli import convert_command
from lungcnn.edge.errors import NOTICE
from lungcnn.segmenter_cli import segmenter_command
from lungcnn.calibrate.cli import calibrate_command
from lungcnn.trainer.cli import train_command
from lungcnn.trainer.datacheck import data_app

app = typer.Typer(
    help=f"lungcnn workbench: train, check data, convert to TFLite and benchmark. {NOTICE}",
    no_args_is_help=True,
    add_completion=False,
)
app.command("train")(train_command)
app.command("convert")(convert_command)
app.command("bench")(bench_command)
app.command("calibrate")(calibrate_command)
app.command("loso")(loso_command)
app.command("probe")(probe_command)
app.command("bundle")(bundle_command)
app.command("segmenter")(segmenter_command)
app.add_typer(data_app, name="data")
app.command("classify-archive")(classify_archive_command)


def main() -> None:
    app()
