"""`edge-classify validate` and `edge-classify adapt`: a site checks the model on its own
labelled scans, and fits it to them, on the device (no TensorFlow). Not a medical device."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lungcnn.edge.adapt import AdaptError, AdaptSettings, check_site, fit_adaptation
from lungcnn.edge.adapted_model import adapted_manifest, write_adapted
from lungcnn.edge.api import BUNDLED_MODEL, Classifier
from lungcnn.edge.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    NOTICE,
    fail,
    first_line,
    print_error,
    run_app,
)
from lungcnn.edge.manifest import sha256_file
from lungcnn.edge.replay import ReplayError, read_replay
from lungcnn.edge.report import Progress
from lungcnn.edge.runtime import ModelError
from lungcnn.edge.site import SiteError, SiteScan, read_site, site_features
from lungcnn.edge.site_report import write_site_report
from lungcnn.edge.validate import Outcome, site_report

PROG = "edge-classify"
SITE_HELP = ("The site's labelled scans: a folder SITE/<class>/... (class folders named as the "
             "model's classes; a site may lack some) or a manifest CSV with the columns file "
             "and label (or a folder holding manifest.csv).")
MODEL_HELP = "A .tflite model with its manifest (same name, .json)."

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)


@app.command(help=f"""Check the model on a site's own labelled scans: the site acceptance report.

Writes OUT/report.md, OUT/report.json, OUT/reliability.png and OUT/risk_coverage.png: accuracy, per-class recall, precision and one-vs-rest accuracy with 95% Wilson intervals, the confusion matrix, ECE and the reliability diagram, flag rates and the accuracy of accepted answers against all, the risk-coverage curve, and a verdict with its criteria.

Exit codes: {EXIT_OK} report written, verdict "fit", every scan read; {EXIT_FAILED} report written, but the verdict is "not fit" or "inconclusive", or some scans could not be read (one line each on stderr, listed in the report); {EXIT_USAGE} nothing written: unusable model or site (no scans, a class the model does not know), no scan readable, OUT not writable; {EXIT_INTERRUPTED} interrupted (Ctrl-C), nothing written.

{NOTICE}""")
def validate(
    data: Annotated[Path, typer.Option("--data", metavar="SITE", help=SITE_HELP)],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Report folder.")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help=MODEL_HELP,
                                               show_default="the bundled model")] = None,
) -> None:
    try:
        code = _validate(data, out, model)
    except KeyboardInterrupt:
        fail("interrupted; nothing written", EXIT_INTERRUPTED, PROG)
    raise typer.Exit(code)


def _validate(data: Path, out: Path, model: Path | None) -> int:
    classifier = _classifier(model)
    scans = _site(data, classifier)
    outcomes, unreadable = [], []
    progress = Progress(sys.stderr, len(scans))
    for done, scan in enumerate(scans, start=1):
        result = classifier.classify(scan.path)
        if result.ok:
            outcomes.append(Outcome(scan.label, classifier.class_names.index(
                result.prediction.label), result.calibrated_confidence, result.trust["flag"]))
        else:
            progress.clear()
            print_error(f"{result.file}: {result.error}", PROG)
            unreadable.append(f"{result.file}: {result.error}")
        progress.update(done)
    progress.clear()
    if not outcomes:
        fail(f"{data}: no scan could be read", EXIT_USAGE, PROG)
    report = {"model": classifier.model_path.name, "site": str(data),
              "command": _command("validate", data, out, model),
              **site_report(outcomes, classifier.class_names), "unreadable": unreadable}
    try:
        write_site_report(report, out)
    except OSError as error:
        fail(f"{out}: cannot write the report ({error.strerror or first_line(error)})",
             EXIT_USAGE, PROG)
    typer.echo(f"{report['verdict']['text']}\nreport: {out / 'report.md'}\n{NOTICE}")
    fit = report["verdict"]["decision"] == "fit"
    return EXIT_OK if fit and not unreadable else EXIT_FAILED


@app.command(help=f"""Fit the model to a site: a new model, refitted on the site's labelled scans.

The network stays frozen. Its classifier head is refitted on the site's features together with the stored features of the original training scans (MODEL.replay.npz beside the model, so the training sources are not forgotten), the site's scans up-weighted; then the temperature and the confidence threshold are refitted. The site's classes become modes of the feature-distance check. The adapted model (a copy of the .tflite, its companion files and replay features, and a manifest carrying the head, the base model's hash, the site's scans per class and the new thresholds) is written to OUT under the model's name, and loads like any model (edge-classify --model, serve, the archive job). At least {AdaptSettings.min_per_class} scans are needed of each class the site has.

Exit codes: {EXIT_OK} adapted model written; {EXIT_USAGE} refused, nothing written: too few scans, a class the model does not know, an unreadable scan, a model without features output or replay features, OUT not writable, a --site-share not between 0 and 1; {EXIT_INTERRUPTED} interrupted (Ctrl-C), nothing written.

{NOTICE}""")
def adapt(
    data: Annotated[Path, typer.Option("--data", metavar="SITE", help=SITE_HELP)],
    out: Annotated[Path, typer.Option("--out", metavar="DIR",
                                      help="Folder of the adapted model.")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help=MODEL_HELP,
                                               show_default="the bundled model")] = None,
    site_share: Annotated[float, typer.Option(
        metavar="SHARE", help="The share of the fitting weight the site's scans carry "
        "together, between 0 and 1: more fits the site better and forgets more of the training "
        "sources (the trade-off: docs/adapt.md).")] = AdaptSettings.site_share,
) -> None:
    if not 0 < site_share < 1:
        fail(f"--site-share must lie between 0 and 1, got {site_share}", EXIT_USAGE, PROG)
    try:
        _adapt(data, out, model, AdaptSettings(site_share=site_share))
    except KeyboardInterrupt:
        fail("interrupted; nothing written", EXIT_INTERRUPTED, PROG)


def _adapt(data: Path, out: Path, model: Path | None, settings: AdaptSettings) -> None:
    classifier = _classifier(model)
    dim, names = classifier.runtime.features_dim, classifier.class_names
    if dim is None:
        fail(f"{classifier.model_path}: the model has no features output to refit a head on",
             EXIT_USAGE, PROG)
    scans = _site(data, classifier)
    labels = np.array([scan.label for scan in scans])
    try:
        replay = read_replay(classifier.model_path, sha256_file(classifier.model_path), dim,
                             len(names))
        check_site(labels, names, settings)
        features = _features(classifier, scans)
    except (ReplayError, AdaptError, SiteError) as error:
        fail(str(error), EXIT_USAGE, PROG)
    adaptation = fit_adaptation(replay.features, replay.labels, features, labels, len(names),
                                settings)
    manifest = adapted_manifest(classifier, adaptation, (features, labels), len(replay.labels),
                                settings)
    try:
        target = write_adapted(classifier, manifest, out)
    except ModelError as error:
        fail(str(error), EXIT_USAGE, PROG)
    except OSError as error:
        fail(f"{out}: cannot write the adapted model ({error.strerror or first_line(error)})",
             EXIT_USAGE, PROG)
    site = ", ".join(f"{name} {n}" for name, n in manifest["adaptation"]["site_scans"].items()
                     if n)
    typer.echo(f"adapted model: {target} (site scans: {site}; temperature "
               f"{adaptation.temperature:.3f}; min confidence "
               f"{manifest.get('trust', {}).get('min_confidence', '-')}; out-of-fold accuracy "
               f"site {adaptation.out_of_fold['site']:.2f}, training scans "
               f"{adaptation.out_of_fold['replay']:.2f})\n{NOTICE}")


def _features(classifier: Classifier, scans: list[SiteScan]) -> np.ndarray:
    progress = Progress(sys.stderr, len(scans))
    try:
        return site_features(classifier, scans, progress.update)
    finally:
        progress.clear()


def _classifier(model: Path | None) -> Classifier:
    try:
        return Classifier(model or BUNDLED_MODEL)
    except ModelError as error:
        fail(str(error), EXIT_USAGE, PROG)


def _site(data: Path, classifier: Classifier) -> list[SiteScan]:
    try:
        return read_site(data, classifier.class_names)
    except SiteError as error:
        fail(str(error), EXIT_USAGE, PROG)


def _command(name: str, data: Path, out: Path, model: Path | None) -> str:
    model_option = [] if model is None else ["--model", str(model)]
    return shlex.join([PROG, name, "--data", str(data), "--out", str(out), *model_option])


def main(args: list[str]) -> None:
    """`edge-classify validate ...` / `edge-classify adapt ...` (`args` starts with the
    command's name); a usage error is one line, exit code 2."""
    run_app(app, args, PROG)
