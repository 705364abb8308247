"""`python -m lungcnn.benchmarks.memory`: the peak memory (RSS) of `edge-classify --json` on
the largest scan the decoder accepts, for every format and mode, each case in a fresh process
(`os.wait4` gives that process's own peak); plus scans over the memory budget, which must be
refused from their header. Optionally the same cases with another commit of this repository
(`--baseline REV`, extracted with `git archive`), side by side in the same run.

    python -m lungcnn.benchmarks.memory --out benchmarks/results --baseline 882e403
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from lungcnn.benchmarks.large_scans import LARGE_SCANS, accepted_pixels
from lungcnn.edge.errors import NOTICE, fail
from lungcnn.edge.pixels import DECODE_BUDGET, MAX_PIXELS

GOAL_MB = 400  # the goal for any input within the pixel limit (a Pi 4 has 1-8 GB)
# Scans at the pixel limit whose decoding would exceed the memory budget: refused, cheaply.
OVER_BUDGET = ("tiff-float32", "jpeg-rgb-progressive", "webp-rgb-lossless")
AT_LIMIT = "@pixel-limit"
_REPO = Path(__file__).resolve().parents[2]


def peak_rss(command: list[str], env: dict, stdout: Path) -> dict:
    """Run `command` to completion; its exit code, peak RSS (MB) and wall time."""
    start = time.perf_counter()
    with open(stdout, "wb") as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=stdout.parent)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace").strip().splitlines()
    return {"exit": process.returncode, "peak_mb": usage.ru_maxrss / 1024,
            "seconds": time.perf_counter() - start, "stderr": stderr[-1] if stderr else ""}


def measure(folder: Path, checkouts: dict[str, Path], cases: list[str], model: Path | None,
            echo, repeats: int = 1) -> list[dict]:
    """Each case `repeats` times per checkout, the checkouts taking turns (side by side under
    the same load): the highest peak and the median wall time of each."""
    rows = []
    for name in ["startup-64px-png", *cases]:
        path, pixels = _write_case(folder, name)
        row = {"case": name, "pixels": pixels, "file_mb": path.stat().st_size / 1e6}
        runs: dict[str, list[dict]] = {label: [] for label in checkouts}
        for _ in range(repeats):
            for label, checkout in checkouts.items():
                result = _run_case(path, checkout, model, folder / "out.jsonl")
                runs[label].append(result)
                echo(f"{name} [{label}]: {result['peak_mb']:.0f} MB, exit {result['exit']}, "
                     f"{result['seconds']:.1f} s {result['stderr'][:100]}")
        for label, results in runs.items():
            row[label] = {**results[0], "peak_mb": max(r["peak_mb"] for r in results),
                          "seconds": statistics.median(r["seconds"] for r in results),
                          "runs": len(results)}
        path.unlink()
        rows.append(row)
    return rows


def _run_case(path: Path, checkout: Path, model: Path | None, out: Path) -> dict:
    command = [sys.executable, "-m", "lungcnn.edge", "--json", str(path)]
    command += ["--model", str(model)] if model else []
    result = peak_rss(command, {**os.environ, "PYTHONPATH": str(checkout)}, out)
    return {**result, "status": _status(out)}


def _write_case(folder: Path, name: str) -> tuple[Path, int]:
    """Written by another process: on Linux a child's peak RSS starts at its parent's peak
    (it is carried across fork and exec), so this process must never hold a large image."""
    if name == "startup-64px-png":
        scan, pixels = "png-gray-8bit", 64 * 64
    else:
        scan = name.removesuffix(AT_LIMIT)
        pixels = MAX_PIXELS if name.endswith(AT_LIMIT) else accepted_pixels(scan)
    path = folder / f"{scan}-{LARGE_SCANS[scan][0]}"
    subprocess.run([sys.executable, "-m", "lungcnn.benchmarks.large_scans", scan, str(path),
                    str(pixels)], check=True, env={**os.environ, "PYTHONPATH": str(_REPO)})
    return path, pixels


def _extract(revision: str, folder: Path) -> Path:
    """The tree of `revision` in `folder` (`git archive`), to import instead of this one."""
    folder.mkdir()
    # piped straight into tar: this process must stay small (see _write_case)
    archive = subprocess.Popen(["git", "-C", str(_REPO), "archive", revision],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    subprocess.run(["tar", "-x", "-C", str(folder)], stdin=archive.stdout, check=False)
    archive.stdout.close()
    if archive.wait() != 0 or not (folder / "lungcnn").is_dir():
        fail(f"--baseline {revision}: not a revision of {_REPO} with a lungcnn package")
    return folder


def _status(path: Path) -> str:
    lines = path.read_text().splitlines()
    return json.loads(lines[0]).get("status", "?") if lines else "no output"


def write_report(rows: list[dict], labels: list[str], out: Path, name: str, info: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({**info, "cases": rows}, indent=2) + "\n")
    header = ["case", "pixels", "file MB"] + [f"peak RSS MB ({label})" for label in labels]
    header += [f"median wall s ({label})" for label in labels]
    header += ["status", f"within {GOAL_MB} MB"]
    lines = ["# Peak memory of one edge-classify call on the largest scan of each format\n",
             f"Regenerate: `{info['command']}`\n",
             f"{info['machine']}; Python {info['python']}; {info['date']}. Each case is a "
             f"fresh `python -m lungcnn.edge --json FILE` process (bundled model, all trust "
             f"checks), {info['repeats']} run(s) per checkout taking turns; the highest peak "
             f"RSS (`os.wait4`) and the median wall time, start-up included. Each scan has the "
             f"most pixels the decoder "
             f"accepts for its format and mode (pixel limit {MAX_PIXELS:,}, decode budget "
             f"{DECODE_BUDGET // 2**20} MiB); `{AT_LIMIT}` cases are over the budget and must "
             f"be refused. A child's peak includes at least its parent's on Linux; the "
             f"measuring process peaked at {info['measuring_process_peak_mb']:.0f} MB. Load "
             f"average {info['load_average'][0]:.2f} before, {info['load_average'][1]:.2f} "
             "after (a shared machine: compare the columns of one run).\n",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        measured = [row[label] for label in labels]
        current = measured[0]
        cells = [row["case"], f"{row['pixels']:,}", f"{row['file_mb']:.1f}"]
        cells += [f"{m['peak_mb']:.0f}" + ("" if m["exit"] == 0 else f" (exit {m['exit']})")
                  for m in measured]
        cells += [f"{m['seconds']:.2f}" for m in measured]
        status = current["status"] + (f": {current['stderr'].split(': ', 3)[-1]}"
                                      if current["status"] == "error" else "")
        cells += [status, "yes" if current["peak_mb"] <= GOAL_MB else "**no**"]
        lines.append("| " + " | ".join(cells) + " |")
    worst = max(rows, key=lambda row: row[labels[0]]["peak_mb"])
    lines.append(f"\nLargest peak ({labels[0]}): {worst[labels[0]]['peak_mb']:.0f} MB "
                 f"({worst['case']}).\n\n{NOTICE}\n")
    (out / f"{name}.md").write_text("\n".join(lines))


app = typer.Typer(add_completion=False, help=f"Peak memory per input format. {NOTICE}")


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Folder for NAME.json and NAME.md.")] = Path(
        "benchmarks/results"),
    name: Annotated[str, typer.Option(help="Result file name.")] = "memory",
    baseline: Annotated[str | None, typer.Option(
        help="A git revision of this repository to measure side by side (e.g. the commit "
        "before the decoder's memory fixes).")] = None,
    case: Annotated[list[str] | None, typer.Option(
        help="Only these cases (repeat); default every one.")] = None,
    model: Annotated[Path | None, typer.Option(
        help=".tflite model; default the bundled one.", show_default=False)] = None,
    repeats: Annotated[int, typer.Option(
        min=1, help="Runs of each case per checkout (median wall time).")] = 1,
) -> None:
    cases = list(case or [*LARGE_SCANS, *(name + AT_LIMIT for name in OVER_BUDGET)])
    unknown = sorted({c.removesuffix(AT_LIMIT) for c in cases} - set(LARGE_SCANS))
    if unknown:
        fail(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(LARGE_SCANS)}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lungcnn-memory-") as folder:
        checkouts = {"this checkout": _REPO}
        if baseline:
            checkouts[baseline] = _extract(baseline, Path(folder) / "baseline")
        rows = measure(Path(folder), checkouts, cases, model,
                       echo=lambda line: typer.echo(line, err=True), repeats=repeats)
    words = ["python", "-m", "lungcnn.benchmarks.memory", "--out", str(out), "--name", name]
    words += ["--baseline", baseline] if baseline else []
    words += [w for c in (case or []) for w in ("--case", c)]
    words += ["--repeats", str(repeats)] if repeats > 1 else []
    info = {"command": shlex.join(words), "machine": f"{platform.machine()} "
            f"{os.cpu_count()} cores", "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "goal_mb": GOAL_MB, "repeats": repeats,
            "load_average": [load_before, os.getloadavg()[0]],
            "measuring_process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    write_report(rows, list(checkouts), out, name, info)
    typer.echo(f"wrote {out / (name + '.md')} and {name}.json")


if __name__ == "__main__":
    app()
