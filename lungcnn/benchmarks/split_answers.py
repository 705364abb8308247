"""Device answers of several .tflite models on the base test split, side by side.

    python -m lungcnn.benchmarks.split_answers OLD.tflite NEW.tflite [--data DIR] [--out FILE.md]

For each model and for the full test split and its leak-free subset (the test scans that
copy no training scan): accuracy, the share of scans flagged, the wrong answers flagged, and
the accuracy of the accepted answers, every scan classified by `lungcnn.edge.api.Classifier`
exactly as `edge-classify` would. Nothing is tuned here.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lungcnn.edge.api import Classifier
from lungcnn.edge.report import NOTICE
from lungcnn.trainer.dataset import default_data_dir, leak_free_test
from lungcnn.trainer.datasets import read_dataset


def answers(model: Path, root: Path) -> list[dict]:
    """One row per test scan: leak-free or not, right or not, flagged or not."""
    classifier = Classifier(model)
    dedup = {s.rel_path for s in leak_free_test(root)}
    rows = []
    for sample in (s for s in read_dataset(root).samples if s.split == "test"):
        record = classifier.classify(root / sample.rel_path).to_dict()
        rows.append({"leak_free": sample.rel_path in dedup,
                     "right": record["label"] == sample.class_name,
                     "flagged": record["flag"] != "ok"})
    return rows


def summary(rows: list[dict]) -> dict:
    n = len(rows)
    flagged = sum(r["flagged"] for r in rows)
    accepted_right = sum(r["right"] and not r["flagged"] for r in rows)
    return {"n": n, "accuracy": sum(r["right"] for r in rows) / n, "flagged": flagged / n,
            "wrong": sum(not r["right"] for r in rows),
            "wrong_flagged": sum(not r["right"] and r["flagged"] for r in rows),
            "accepted_accuracy": accepted_right / (n - flagged) if n > flagged else None}


def markdown(models: list[Path], root: Path, command: str) -> str:
    lines = ["# Bundled-model candidates on the base test split", "",
             f"Regenerate: `{command}`", "",
             "| model | split | n | accuracy | flagged | wrong answers flagged "
             "| accepted accuracy |", "|---|---|---|---|---|---|---|"]
    for model in models:
        rows = answers(model, root)
        for name, subset in (("test", rows), ("leak-free test", [r for r in rows
                                                                 if r["leak_free"]])):
            s = summary(subset)
            accepted = "-" if s["accepted_accuracy"] is None else f"{s['accepted_accuracy']:.3f}"
            lines.append(f"| {model} | {name} | {s['n']} | {s['accuracy']:.3f} "
                         f"| {s['flagged']:.2f} | {s['wrong_flagged']} of {s['wrong']} "
                         f"| {accepted} |")
    return "\n".join(lines + ["", NOTICE, ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL.tflite")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, help="Also write the table to this file.")
    args = parser.parse_args(argv)
    command = "python -m lungcnn.benchmarks.split_answers " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    text = markdown(args.models, args.data, command)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
