"""The trust section of `lungcnn bench`: how much the flags of `edge.trust` can be trusted.

For one .tflite model whose manifest carries "calibration" and "trust" (`lungcnn calibrate`,
which the benchmark runs first when they are missing), on the benchmark's own test set:
  - accuracy overall, abstain rate, accuracy of accepted scans, share of wrong answers
    flagged, risk-coverage (accuracy of the most stable scans vs share accepted), on the
    test scans and on their leak-free subset;
  - acquisition-shift proxies: the test scans downscaled to 128 px and re-encoded as JPEG
    quality 30, and each change of `edge.acquisition.ACQUISITION_CHANGES`: same numbers;
  - non-X-ray images (`benchmarks.ood_images`): share refused as out_of_distribution;
  - ECE before/after temperature scaling on test; occlusion heatmap time on one thread.
Thresholds are never fitted here: the test scans are only read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from lungcnn.benchmarks.config import HEATMAP_CALLS
from lungcnn.benchmarks.testset import TestSet
from lungcnn.benchmarks.timing import distribution_ms, time_calls
from lungcnn.calibrate.temperature import expected_calibration_error
from lungcnn.edge.acquisition import (
    ACQUISITION_CHANGES,
    Change,
    jpeg_roundtrip,
    shrink_longest_side,
)
from lungcnn.edge.contract import Preprocessor
from lungcnn.edge.decode import DecodedScan
from lungcnn.edge.heatmap import occlusion_heatmap
from lungcnn.edge.runtime import TFLiteClassifier
from lungcnn.edge.trust import (
    FLAG_OK,
    FLAG_OUT_OF_DISTRIBUTION,
    apply_temperature,
    assess,
)

COVERAGES = (1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
LOW_RESOLUTION_SIDE = 128
LOW_RESOLUTION_JPEG_QUALITY = 30
LOW_RESOLUTION_PROXY = "low_resolution_128_jpeg_q30"


def low_resolution_jpeg(gray: np.ndarray, contract) -> np.ndarray:
    """A re-encoded low-resolution copy: longest side 128 px, JPEG quality 30."""
    small = shrink_longest_side(Image.fromarray(gray), LOW_RESOLUTION_SIDE)
    return np.asarray(jpeg_roundtrip(small, LOW_RESOLUTION_JPEG_QUALITY), dtype=np.uint8)


def shift_proxies(changes: dict[str, Change] | None = None) -> dict[str, Change]:
    """Every shift proxy as `(gray, contract) -> 2-D gray scan`: the low-resolution copy, then
    each acquisition change (`changes`, e.g. the benchmark's cached ones)."""
    changes = ACQUISITION_CHANGES if changes is None else changes
    return {LOW_RESOLUTION_PROXY: low_resolution_jpeg,
            **{name: _as_gray_change(change) for name, change in changes.items()}}


def _as_gray_change(change: Change) -> Change:
    """A robustness change as a 2-D scan: the changed scan under contract 1 at the side the
    contract decodes at (its model input side for contract 1, so it decodes to itself)."""
    def changed_scan(gray: np.ndarray, contract: int | Preprocessor) -> np.ndarray:
        spec = contract.spec if isinstance(contract, Preprocessor) else None
        side = contract if spec is None else (spec.decode_side or spec.size)
        return change(gray, side)[:, :, 0]
    return changed_scan


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
        "n_wrong_flagged": int((~accepted[wrong]).sum()),
        "risk_coverage": risk_coverage(correct, [a.stability for a in assessments]),
    }


def evaluate_trust(
    model_path: Path,
    test_set: TestSet,
    non_xray: list[Path],
    proxies: dict[str, Change] | None = None,
    threads: int | None = None,
    heatmap_calls: int = HEATMAP_CALLS,
    echo: Callable[[str], None] = lambda line: None,
) -> dict:
    """The trust report of one calibrated .tflite model on `test_set` and the `non_xray`
    image files (`benchmarks.ood_images.write_non_xray_images`); `proxies` as from
    `shift_proxies` (default: all of them), `threads` for the model (the heatmap: one).

    Every scan is assessed as `edge-classify` assesses it (`assess_scan`: the thresholds
    of the model's manifest, the colour of the scan's file), so a check added to
    `edge.trust` is measured here too."""
    classifier = TFLiteClassifier(model_path, threads=threads)
    settings, labels = classifier.trust_settings, test_set.labels
    contract = classifier.preprocessor
    colours = [contract.decode(path).colourfulness for path in test_set.paths]

    def assess_all(change: Change | None = None) -> list:
        return [assess_scan(classifier, DecodedScan(gray if change is None
                                                    else change(gray, contract), colour))
                for gray, colour in zip(test_set.grays, colours)]

    clean = assess_all()
    raw = np.stack([a.raw_probabilities for a in clean])
    report = {
        "thresholds": {"temperature": settings.temperature,
                       "min_confidence": settings.of("stability").min_confidence},
        "test": summarize(clean, labels),
        "ece_before": expected_calibration_error(raw, labels),
        "ece_after": expected_calibration_error(apply_temperature(raw, settings.temperature),
                                                labels),
    }
    keep = test_set.leak_free
    report["test_dedup"] = (summarize([a for a, k in zip(clean, keep) if k], labels[keep])
                            if keep.any() else None)
    echo(_line("test", report["test"]))
    report["shift_proxies"] = {}
    for name, change in (shift_proxies() if proxies is None else proxies).items():
        report["shift_proxies"][name] = summarize(assess_all(change), labels)
        echo(_line(name, report["shift_proxies"][name]))
    report["non_xray"] = non_xray_refusal(classifier, non_xray)
    echo(f"non-X-ray images: {report['non_xray']['refused_rate']:.0%} refused as "
         f"out_of_distribution, {report['non_xray']['flagged_rate']:.0%} flagged "
         f"(n={report['non_xray']['n']})")
    report["heatmap_ms_one_thread"] = heatmap_time(model_path, test_set.grays[:heatmap_calls])
    echo(f"heatmap p50 {report['heatmap_ms_one_thread']['p50']:.0f} ms on one thread")
    return report


def non_xray_refusal(classifier: TFLiteClassifier, paths: list[Path]) -> dict:
    """How many of the non-X-ray image files `paths` are refused or flagged."""
    flags = {path.stem: assess_scan(classifier, classifier.preprocessor.decode(path)).flag
             for path in paths}
    return {
        "n": len(flags),
        "refused_rate": float(np.mean([f == FLAG_OUT_OF_DISTRIBUTION for f in flags.values()])),
        "flagged_rate": float(np.mean([f != FLAG_OK for f in flags.values()])),
        "not_refused": sorted(n for n, f in flags.items() if f != FLAG_OUT_OF_DISTRIBUTION),
    }


def heatmap_time(model_path: Path, grays: list[np.ndarray]) -> dict:
    """Occlusion heatmap latency with a one-thread interpreter (percentiles in ms)."""
    model = TFLiteClassifier(model_path, threads=1)
    inputs = [model.model_input(gray) for gray in grays]
    samples = time_calls(lambda i: occlusion_heatmap(model, inputs[i % len(inputs)]),
                         calls=len(inputs), warmup=1)
    return distribution_ms(samples)


def assess_scan(classifier: TFLiteClassifier, scan: DecodedScan):
    """`assess` of a decoded scan as `edge-classify` does it."""
    return assess(classifier, scan.gray, classifier.trust_settings, scan.colourfulness)


def _line(name: str, summary: dict) -> str:
    accepted = summary["accepted_accuracy"]
    wrong = summary["wrong_flagged"]
    return (f"{name}: accuracy {summary['accuracy']:.0%}, abstain {summary['abstain_rate']:.0%}"
            f" (OOD {summary['out_of_distribution_rate']:.0%}), accepted accuracy "
            f"{'-' if accepted is None else f'{accepted:.0%}'}, wrong flagged "
            f"{'-' if wrong is None else f'{wrong:.0%}'} of {summary['n_wrong']}")
