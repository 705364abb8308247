"""Writing the site acceptance report (`edge.validate`): report.md, report.json and two PNG
plots, the reliability diagram and the risk-coverage curve, drawn with Pillow (no
matplotlib on a device). Every file carries the not-a-medical-device notice."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from lungcnn.edge.errors import NOTICE
from lungcnn.edge.manifest import write_bytes_atomic, write_json_atomic

RELIABILITY_PNG = "reliability.png"
RISK_COVERAGE_PNG = "risk_coverage.png"
_SIDE, _MARGIN = 360, 48


def write_site_report(report: dict, out: Path) -> list[Path]:
    """Write the report's files into `out` (created); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    calibration, curve = report["calibration"], report["risk_coverage"]
    bars = [(i / len(calibration["reliability"]), row["accuracy"])
            for i, row in enumerate(calibration["reliability"]) if row["scans"]]
    return [
        write_json_atomic(out / "report.json", report),
        write_bytes_atomic(out / "report.md", markdown(report).encode()),
        _save(_plot("Reliability: accuracy per confidence bin", "confidence", "accuracy",
                    bars=bars, width=1 / len(calibration["reliability"]), diagonal=True),
              out / RELIABILITY_PNG),
        _save(_plot("Risk-coverage: most confident answers first", "coverage", "risk",
                    line=list(zip(curve["coverage"], curve["risk"]))), out / RISK_COVERAGE_PNG),
    ]


def markdown(report: dict) -> str:
    names = report["confusion"]["classes"]
    lines = [f"# Site acceptance report: {report['model']}", "", f"> {NOTICE}", "",
             f"**Verdict: {report['verdict']['text']}.**", "",
             f"Criteria: {report['verdict']['criteria']}.", "",
             f"Site: `{report['site']}`; {report['scans']} scans read"
             + (f", {len(report['unreadable'])} unreadable (listed below)"
                if report["unreadable"] else "") + ".", "",
             f"Accuracy: {_ci(report['accuracy'])} on {report['scans']} scans; 95% Wilson "
             "intervals in brackets.", "",
             "| class | scans | recall | precision | one-vs-rest accuracy |", "|---|---|---|---|---|"]
    for name, row in report["per_class"].items():
        lines.append(f"| {name} | {row['scans']} | {_ci(row['recall'])} | "
                     f"{_ci(row['precision'])} | {_ci(row['accuracy'])} |")
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class):", "",
              "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, report["confusion"]["matrix"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    flags = report["flags"]
    lines += ["", f"Calibration: ECE {_number(report['calibration']['ece'])} "
              f"({report['calibration']['bins']} bins of calibrated confidence); "
              f"![reliability diagram]({RELIABILITY_PNG})", "",
              "Flags: " + ", ".join(f"{flag} {share:.0%}" for flag, share in flags.items())
              + f". Accuracy of accepted (ok) answers {_ci(report['accepted'])} against "
              f"{_ci(report['accuracy'])} for all answers.", "",
              f"Risk-coverage: area {_number(report['risk_coverage']['area'])} (mean risk "
              f"over coverages, lower is better); ![risk-coverage curve]({RISK_COVERAGE_PNG})",
              ""]
    if report["unreadable"]:
        lines += ["Unreadable scans:", ""] + [f"- {line}" for line in report["unreadable"]]
        lines.append("")
    lines += [f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def _ci(proportion: dict) -> str:
    if proportion["value"] is None:
        return "-"
    return (f"{proportion['value']:.2f} ({proportion['low']:.2f}-{proportion['high']:.2f}, "
            f"n={proportion['n']})")


def _number(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _plot(title: str, x_name: str, y_name: str, *, bars=(), width: float = 0.0, line=(),
          diagonal: bool = False) -> Image.Image:
    """A unit-square plot: bars (left edge, height), a polyline, the diagonal."""
    size = _SIDE + 2 * _MARGIN
    image = Image.new("RGB", (size, size + 16), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()

    def point(x: float, y: float) -> tuple[float, float]:
        return _MARGIN + x * _SIDE, _MARGIN + (1 - y) * _SIDE

    for x, height in bars:
        draw.rectangle([point(x, height), point(x + width, 0)], fill=(90, 140, 200),
                       outline="white")
    if diagonal:
        draw.line([point(0, 0), point(1, 1)], fill=(200, 60, 60), width=2)
    if len(line) > 1:
        draw.line([point(x, y) for x, y in line], fill=(40, 40, 40), width=2)
    draw.rectangle([point(0, 1), point(1, 0)], outline="black")
    for tick in (0.0, 0.5, 1.0):
        draw.text((point(tick, 0)[0] - 8, _MARGIN + _SIDE + 4), f"{tick:.1f}", fill="black",
                  font=font)
        draw.text((8, point(0, tick)[1] - 6), f"{tick:.1f}", fill="black", font=font)
    draw.text((_MARGIN, 14), title, fill="black", font=font)
    draw.text((_MARGIN + _SIDE // 2 - 20, _MARGIN + _SIDE + 18), x_name, fill="black",
              font=font)
    draw.text((4, _MARGIN - 20), y_name, fill="black", font=font)
    draw.text((8, size - 2), "Not a medical device.", fill=(120, 120, 120), font=font)
    return image


def _save(image: Image.Image, path: Path) -> Path:
    info = PngInfo()
    info.add_text("Disclaimer", NOTICE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return write_bytes_atomic(path, buffer.getvalue())
