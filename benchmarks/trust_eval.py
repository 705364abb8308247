"""How much the trust flags of `edge.trust` can be trusted: measured on test/ and on proxies.

For one .tflite model whose manifest carries "calibration" and "trust" (`lungcnn calibrate`):
  - test split: accuracy overall, abstain rate, accuracy of accepted scans, share of wrong
    answers flagged, risk-coverage (accuracy of the most stable scans vs share accepted);
  - acquisition-shift proxies: the test scans downscaled to 128 px and re-encoded as JPEG
    quality 30, and each change of `benchmarks.robustness`: same numbers;
  - non-X-ray images (`benchmarks.ood_images`): share refused as out_of_distribution;
  - ECE before/after temperature scaling on test; occlusion heatmap time on one thread.
Thresholds are never fitted here. Run: python -m benchmarks.trust_eval MODEL.tflite
"""

from __future__ import annotations

import json
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

from benchmarks.ood_images import write_non_xray_images
from benchmarks.robustness import ACQUISITION_CHANGES, jpeg_roundtrip, shrink_longest_side
from benchmarks.timing import distribution_ms, time_calls
from edge.contract import read_grayscale, resize_gray
from edge.heatmap import occlusion_heatmap
from edge.manifest import read_manifest
from edge.runtime import TFLiteClassifier
from edge.trust import (
    FLAG_OK,
    FLAG_OUT_OF_DISTRIBUTION,
    TrustSettings,
    apply_temperature,
    assess,
    assess_file,
    classifier_run_fn,
    file_colourfulness,
)
from trainer.calibration import expected_calibration_error
from trainer.dataset import label_of

COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
LOW_RESOLUTION_SIDE = 128
LOW_RESOLUTION_JPEG_QUALITY = 30
HEATMAP_CALLS = 10


def low_resolution_jpeg(gray: np.ndarray, size: int) -> np.ndarray:
    """A re-encoded low-resolution copy: longest side 128 px, JPEG quality 30."""
    small = shrink_longest_side(Image.fromarray(gray), LOW_RESOLUTION_SIDE)
    return np.asarray(jpeg_roundtrip(small, LOW_RESOLUTION_JPEG_QUALITY), dtype=np.uint8)


def risk_coverage(correct: np.ndarray, scores: np.ndarray) -> list[dict]:
    """Accuracy of the `coverage` share of scans with the highest scores, for each coverage."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    correct = np.asarray(correct, dtype=bool)[order]
    rows = []
    for coverage in COVERAGES:
        kept = max(1, int(round(coverage * len(correct))))
        rows.append({"coverage": coverage, "accuracy": float(correct[:kept].mean()),
                     "min_score": float(np.asarray(scores)[order][kept - 1])})
    return rows


def summarize(assessments: list, labels: np.ndarray) -> dict:
    """Accuracy, abstain rate and how well the flags catch wrong answers."""
    predicted = np.array([a.label for a in assessments])
    flags = np.array([a.flag for a in assessments])
    correct = predicted == labels
    accepted = flags == FLAG_OK
    wrong = ~correct
    return {
        "n": int(len(labels)),
        "accuracy": float(correct.mean()),
        "abstain_rate": float((~accepted).mean()),
        "out_of_distribution_rate": float((flags == FLAG_OUT_OF_DISTRIBUTION).mean()),
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None,
        "wrong_flagged": float((~accepted[wrong]).mean()) if wrong.any() else None,
        "n_wrong": int(wrong.sum()),
        "risk_coverage": risk_coverage(correct, [a.stability for a in assessments]),
    }


def evaluate_trust(
    model_path: Path,
    split: dict[str, list[str]],
    data_dir: Path,
    proxies: bool = True,
    echo: Callable[[str], None] = lambda line: None,
) -> dict:
    classifier = TFLiteClassifier(model_path)
    manifest = read_manifest(model_path)
    settings = TrustSettings.from_manifest(manifest)
    size = classifier.input_size
    run_fn = classifier_run_fn(classifier)
    class_names = list(classifier.class_names)
    test = [(data_dir / rel, label_of(rel, class_names)) for rel in split["test"]]
    grays = [read_grayscale(path) for path, _ in test]
    colours = [file_colourfulness(path) for path, _ in test]
    labels = np.array([label for _, label in test])

    def assess_all(change=None) -> list:
        return [assess(run_fn, gray if change is None else change(gray, size), size, settings,
                       colour) for gray, colour in zip(grays, colours)]

    clean = assess_all()
    report = {"model": str(model_path), "thresholds": {
        "temperature": settings.temperature, "min_confidence": settings.min_confidence},
        "calibration": manifest.get("calibration", {}), "test": summarize(clean, labels)}
    raw = np.stack([a.raw_probabilities for a in clean])
    report["test"]["ece_before"] = expected_calibration_error(raw, labels)
    report["test"]["ece_after"] = expected_calibration_error(
        apply_temperature(raw, settings.temperature), labels)
    dedup = set(split.get("test_dedup") or [])
    if dedup:
        keep = np.array([rel in dedup for rel in split["test"]])
        report["test_dedup"] = summarize([a for a, k in zip(clean, keep) if k], labels[keep])
    echo(_line("test", report["test"]))
    if proxies:
        changes = {"low_resolution_128_jpeg_q30": low_resolution_jpeg,
                   **{name: _as_gray_change(change) for name, change in
                      ACQUISITION_CHANGES.items()}}
        report["shift_proxies"] = {}
        for name, change in changes.items():
            report["shift_proxies"][name] = summarize(assess_all(change), labels)
            echo(_line(name, report["shift_proxies"][name]))
    report["non_xray"] = non_xray_refusal(run_fn, size, settings)
    echo(f"non-X-ray images: {report['non_xray']['refused_rate']:.0%} refused as "
         f"out_of_distribution, {report['non_xray']['flagged_rate']:.0%} flagged "
         f"(n={report['non_xray']['n']})")
    report["heatmap_ms_one_thread"] = heatmap_time(model_path, grays[:HEATMAP_CALLS], size)
    echo(f"heatmap p50 {report['heatmap_ms_one_thread']['p50']:.0f} ms on one thread")
    return report


def _as_gray_change(change):
    """A robustness change returns the model input; as a 2-D scan it decodes to itself."""
    return lambda gray, size: change(gray, size)[:, :, 0]


def non_xray_refusal(run_fn, size: int, settings: TrustSettings) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        paths = write_non_xray_images(folder)
        results = {path.stem: assess_file(run_fn, path, size, settings) for path in paths}
    flags = {name: a.flag for name, a in results.items()}
    return {
        "n": len(flags),
        "refused_rate": float(np.mean([f == FLAG_OUT_OF_DISTRIBUTION for f in flags.values()])),
        "flagged_rate": float(np.mean([f != FLAG_OK for f in flags.values()])),
        "not_refused": sorted(n for n, f in flags.items() if f != FLAG_OUT_OF_DISTRIBUTION),
    }


def heatmap_time(model_path: Path, grays: list[np.ndarray], size: int) -> dict:
    """Occlusion heatmap latency with a one-thread interpreter (percentiles in ms)."""
    run_fn = classifier_run_fn(TFLiteClassifier(model_path, threads=1))
    inputs = [resize_gray(gray, size) for gray in grays]
    samples = time_calls(lambda i: occlusion_heatmap(run_fn, inputs[i % len(inputs)]),
                         calls=len(inputs), warmup=1)
    return distribution_ms(samples)


def _line(name: str, summary: dict) -> str:
    accepted = summary["accepted_accuracy"]
    wrong = summary["wrong_flagged"]
    return (f"{name}: accuracy {summary['accuracy']:.0%}, abstain {summary['abstain_rate']:.0%}"
            f" (OOD {summary['out_of_distribution_rate']:.0%}), accepted accuracy "
            f"{'-' if accepted is None else f'{accepted:.0%}'}, wrong flagged "
            f"{'-' if wrong is None else f'{wrong:.0%}'} of {summary['n_wrong']}")


def main(
    model: Annotated[Path, typer.Argument(help="A .tflite model calibrated by lungcnn calibrate.")],
    run_manifest: Annotated[
        Path | None,
        typer.Option(help="Run manifest with the split lists.",
                     show_default="manifest.json beside the model"),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Dataset root.",
                                                  show_default="the run's data_dir")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
    proxies: Annotated[
        bool, typer.Option(help="Also assess the acquisition-shift proxies.")
    ] = True,
) -> None:
    """Measure the trust flags of MODEL on test/, shift proxies and non-X-ray images.
    Not a medical device: do not use for diagnosis without a clinical study."""
    run = json.loads((run_manifest or model.parent / "manifest.json").read_text())
    report = evaluate_trust(model, run["split"], Path(data_dir or run["data_dir"]), proxies,
                            echo=typer.echo)
    if out:
        from edge.manifest import write_json_atomic

        report["command"] = shlex.join(
            ["python", "-m", "benchmarks.trust_eval", str(model), "--out", str(out)]
            + ([] if proxies else ["--no-proxies"])
        )
        write_json_atomic(out, report)
        typer.echo(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
