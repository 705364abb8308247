"""`lungcnn bundle RUN_DIR`: release a run's calibrated int8 model as the bundled model.

RUN_DIR/model_int8.tflite and its manifest become `lungcnn_int8.tflite` + `lungcnn_int8.json`
beside `lungcnn.edge.api.BUNDLED_MODEL` (or in `--to DIR`), with `model_file` renamed and
everything else unchanged, plus `lungcnn_int8.replay.npz`: the model's features of its
training scans (`lungcnn.edge.replay`), which `edge-classify adapt` refits the head on. The
copy is checked before it replaces anything: the file's SHA-256 equals the manifest's
`tflite_sha256`, the manifest carries `lungcnn calibrate`'s sections, and
`lungcnn.edge.api.Classifier` loads the pair.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from lungcnn.edge.errors import EXIT_OK, EXIT_USAGE, fail  # noqa: F401 - EXIT_OK too

EXIT_ERROR = EXIT_USAGE  # missing, uncalibrated or unusable model, or unwritable folder

# The device kernel (numpy, the TFLite runtime) is imported when the command runs, so that
# `lungcnn --help` stays fast.

SOURCE_NAME = "model_int8.tflite"
CALIBRATED_SECTIONS = ("calibration", "trust")


class BundleError(ValueError):
    """The run's model cannot be bundled (one line)."""


def bundle_model(run_dir: str | Path, to: str | Path | None = None,
                 data_dir: str | Path | None = None) -> Path:
    """Copy RUN_DIR's calibrated int8 model and its manifest into `to` (default: the bundled
    model's folder) under the bundled names, with the replay features of its training scans
    (read from `data_dir`, default the run's); returns the new .tflite. Raises BundleError."""
    from lungcnn.edge.api import BUNDLED_MODEL
    from lungcnn.edge.manifest import write_json_atomic
    from lungcnn.edge.replay import replay_path
    from lungcnn.edge.runtime import ModelError, companion_files

    source = Path(run_dir) / SOURCE_NAME
    target = Path(to) / BUNDLED_MODEL.name if to is not None else BUNDLED_MODEL
    manifest = _checked_manifest(source)
    manifest["model_file"] = target.name
    try:
        companions = companion_files(source)  # contract 2: its segmenter travels with it
    except ModelError as error:
        raise BundleError(str(error)) from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".bundle-") as staging:
            staged = Path(staging) / target.name
            shutil.copyfile(source, staged)
            write_json_atomic(staged.with_suffix(".json"), manifest)
            for path in companions:
                shutil.copyfile(path, Path(staging) / path.name)
            _check_loads(staged, source)
            write_replay_features(staged, manifest, data_dir)
            # The old manifest goes first: killed half-way, the new model has no manifest
            # (readers refuse it) rather than the old model's.
            target.with_suffix(".json").unlink(missing_ok=True)
            os.replace(replay_path(staged), replay_path(target))
            for path in companions:
                os.replace(Path(staging) / path.name, target.parent / path.name)
            os.replace(staged, target)
            os.replace(staged.with_suffix(".json"), target.with_suffix(".json"))
    except OSError as error:
        raise BundleError(f"cannot write {target}: {error.strerror or error}") from None
    return target


def _checked_manifest(source: Path) -> dict:
    from lungcnn.edge.manifest import ManifestError, read_manifest, sha256_file

    if not source.is_file():
        raise BundleError(f"{source}: not found (run `lungcnn convert` on the run first)")
    try:
        manifest = read_manifest(source)
    except ManifestError as error:
        raise BundleError(str(error)) from None
    if manifest.get("quantization") != "int8":
        raise BundleError(f"{source}: the manifest's quantization is "
                          f"{manifest.get('quantization')!r}, not int8")
    missing = [key for key in CALIBRATED_SECTIONS if not isinstance(manifest.get(key), dict)]
    if missing:
        raise BundleError(f"{source}: not calibrated (no {' or '.join(missing)} in its "
                          f"manifest); run `lungcnn calibrate {source.parent}` first")
    if manifest.get("tflite_sha256") != sha256_file(source):
        raise BundleError(f"{source}: SHA-256 differs from tflite_sha256 in its manifest")
    return manifest


def write_replay_features(model: Path, manifest: dict, data_dir: str | Path | None) -> Path:
    """Write `model`'s replay features: its features output on each training scan of its
    manifest's split, read from `data_dir` (default: the run's data folder)."""
    import numpy as np

    from lungcnn.edge.api import Classifier
    from lungcnn.edge.replay import Replay, write_replay
    from lungcnn.edge.site import SiteError, SiteScan, site_features
    from lungcnn.trainer.dataset import DatasetError, label_of

    training = manifest.get("training") or {}
    files = (training.get("split") or {}).get("train")
    root = Path(data_dir or training.get("data_dir") or ".")
    classifier = Classifier(model)
    if not files or classifier.runtime.features_dim is None:
        raise BundleError(f"{model.name}: no training split or no features output in the "
                          "manifest: no replay features for `edge-classify adapt`")
    try:
        scans = [SiteScan(root / rel, label_of(rel, classifier.class_names)) for rel in files]
        features = site_features(classifier, scans)
    except (DatasetError, SiteError) as error:
        raise BundleError(f"replay features: {error} (--data DIR: where the run's training "
                          "scans are)") from None
    return write_replay(model, Replay(features, np.array([s.label for s in scans]),
                                      manifest["tflite_sha256"]))


def _check_loads(staged: Path, source: Path) -> None:
    from lungcnn.edge.api import Classifier
    from lungcnn.edge.manifest import ManifestError
    from lungcnn.edge.runtime import ModelError

    try:
        Classifier(staged)
    except (ModelError, ManifestError, KeyError, ValueError) as error:
        raise BundleError(f"{source}: the bundled copy does not load ({error})") from None


def bundle_command(
    run_dir: Annotated[
        Path,
        typer.Argument(metavar="RUN_DIR",
                       help="A run directory whose model_int8.tflite `lungcnn calibrate` has "
                       "calibrated."),
    ],
    to: Annotated[
        Path | None,
        typer.Option("--to", metavar="DIR", file_okay=False,
                     help="Write into DIR instead of the package's bundled-model folder.",
                     show_default="lungcnn/edge/models"),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", metavar="DIR", file_okay=False,
                     help="Where the run's training scans are (split paths are relative to "
                     "it), for the replay features.",
                     show_default="the run's data_dir"),
    ] = None,
) -> None:
    """Make RUN_DIR's calibrated int8 model the bundled model of edge-classify and
    lungcnn.Classifier().

    Copies RUN_DIR/model_int8.tflite and its manifest to lungcnn_int8.tflite and
    lungcnn_int8.json (model_file renamed), with lungcnn_int8.replay.npz (the model's
    features of its training scans, for edge-classify adapt), after checking the file's
    SHA-256 against the manifest, that it is calibrated, and that it loads; the old pair is
    replaced only then.

    Exit codes: 0 bundled; 2 missing, uncalibrated or unusable model, or unwritable folder.
    Not a medical device (lungcnn.edge.errors.NOTICE)."""
    try:
        target = bundle_model(run_dir, to, data)
    except BundleError as error:
        fail(str(error), EXIT_ERROR, prog="lungcnn bundle")
    manifest = json.loads(target.with_suffix(".json").read_text())
    typer.echo(f"bundled {run_dir / SOURCE_NAME} as {target} "
               f"(sha256 {manifest['tflite_sha256'][:12]}, {target.stat().st_size} bytes)")
