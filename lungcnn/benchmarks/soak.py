"""`python -m lungcnn.benchmarks.soak`: one `edge-classify --json` call over 10,000 small
scans. Its memory (RSS) and open file descriptors are sampled from /proc as it runs: both
must stay flat. Then the same call is interrupted with SIGINT (Ctrl-C) at several points:
each run must exit 130 with every JSON line it wrote complete, and say how many it wrote.

    python -m lungcnn.benchmarks.soak --out benchmarks/results
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from PIL import Image

from lungcnn.edge.errors import NOTICE, fail

_REPO = Path(__file__).resolve().parents[2]
_SOURCE = _REPO / "data" / "covid19-dataset" / "test"
SIDE = 128  # small scans: the soak is about many files, not big ones
INTERRUPT_AFTER = (1, 10, 100, 1000, 3000)  # records written before each Ctrl-C


def write_scans(folder: Path, count: int) -> list[Path]:
    """`count` small PNG scans made from the vendored test split, in nested folders."""
    sources = sorted(p for p in _SOURCE.rglob("*") if p.suffix.lower() in (".png", ".jpg",
                                                                             ".jpeg"))
    if not sources:
        fail(f"no scans under {_SOURCE}")
    encoded = []
    for source in sources:
        with Image.open(source) as image:
            small = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        path = folder / f"source-{len(encoded)}.png"
        small.save(path)
        encoded.append(path.read_bytes())
        path.unlink()
    paths = []
    for index in range(count):
        path = folder / f"{index // 1000:02d}" / f"scan-{index:05d}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encoded[index % len(encoded)])
        paths.append(path)
    return paths


def _proc_sample(pid: int) -> tuple[float, float, int] | None:
    """(RSS MB, peak RSS MB, open file descriptors) of a running process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if line.startswith("Vm"))
    if "VmRSS" not in fields:  # exiting
        return None
    rss, peak = (int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
    return rss, peak, fds


def _start(folder: Path, model: Path | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "lungcnn.edge", "--json", str(folder)]
    command += ["--model", str(model)] if model else []
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=folder, env={**os.environ, "PYTHONPATH": str(_REPO)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def soak(folder: Path, count: int, model: Path | None, echo) -> dict:
    """The uninterrupted run: samples of (seconds, records, RSS, peak RSS, fds)."""
    process = _start(folder, model)
    records, samples, done = [0], [], threading.Event()

    def sample() -> None:
        start = time.perf_counter()
        while not done.is_set():
            measured = _proc_sample(process.pid)
            if measured:
                samples.append((time.perf_counter() - start, records[0], *measured))
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    sampler.start()
    complete = 0
    for line in process.stdout:
        complete += json.loads(line)["status"] == "ok"
        records[0] += 1
        if records[0] % 1000 == 0:
            echo(f"{records[0]} records, RSS {samples[-1][2] if samples else 0:.0f} MB")
    stderr = process.stderr.read().decode(errors="replace")
    process.wait()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    running = [s for s in samples if s[1] >= 1]  # after the first record: model loaded
    return {"exit": process.returncode, "records": records[0], "ok": complete,
            "seconds": elapsed, "scans_per_s": records[0] / elapsed, "stderr": stderr.strip(),
            "rss_start_mb": running[0][2], "rss_end_mb": running[-1][2],
            "rss_peak_mb": max(s[3] for s in running),
            "fds_start": running[0][4], "fds_max": max(s[4] for s in running),
            "fds_end": running[-1][4],
            "rss_by_records": _by_records(running, count)}


def _by_records(samples: list[tuple], count: int) -> list[dict]:
    marks = [1, *range(count // 10, count + 1, count // 10)]
    rows = []
    for mark in marks:
        sample = next((s for s in samples if s[1] >= mark), None)
        if sample:
            rows.append({"records": sample[1], "rss_mb": sample[2], "fds": sample[4]})
    return rows


def interrupted(folder: Path, after: int, model: Path | None) -> dict:
    """Ctrl-C once `after` records are out; what the run wrote and said."""
    process = _start(folder, model)
    lines = [process.stdout.readline() for _ in range(after)]
    process.send_signal(signal.SIGINT)
    lines += process.stdout.read().splitlines(keepends=True)
    stderr = process.stderr.read().decode(errors="replace").strip()
    process.wait()
    whole = 0
    for line in lines:
        try:
            json.loads(line)
            whole += line.endswith(b"\n")
        except ValueError:
            pass
    said = stderr.split("interrupted after ")[-1].split(" ")[0] if "interrupted" in stderr else ""
    return {"after": after, "exit": process.returncode, "lines": len(lines),
            "complete_lines": whole, "reported": int(said) if said.isdigit() else None,
            "stderr_lines": len(stderr.splitlines()), "traceback": "Traceback" in stderr}


def write_report(result: dict, out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    run = result["soak"]
    lines = [
        "# Soak: one edge-classify call over many small scans\n",
        f"Regenerate: `{result['command']}`\n",
        f"{result['machine']}; Python {result['python']}; {result['date']}. "
        f"{result['files']:,} PNG scans of {SIDE}x{SIDE} px (from the vendored test split) in "
        "one `python -m lungcnn.edge --json FOLDER` call, bundled model, all trust checks. "
        "RSS and open file descriptors sampled from /proc every 0.25 s.\n",
        f"Exit {run['exit']}; {run['records']:,} records ({run['ok']:,} ok) in "
        f"{run['seconds']:.0f} s ({run['scans_per_s']:.0f} scans/s).\n",
        "| | start (after the first record) | peak | end |", "|---|---|---|---|",
        f"| RSS MB | {run['rss_start_mb']:.0f} | {run['rss_peak_mb']:.0f} (VmHWM) | "
        f"{run['rss_end_mb']:.0f} |",
        f"| open file descriptors | {run['fds_start']} | {run['fds_max']} | {run['fds_end']} |\n",
        "| records written | RSS MB | open fds |", "|---|---|---|",
        *(f"| {row['records']:,} | {row['rss_mb']:.0f} | {row['fds']} |"
          for row in run["rss_by_records"]),
        "\nCtrl-C (SIGINT) after N records: every line written must be a complete JSON "
        "record, and the one stderr line must give their number.\n",
        "| Ctrl-C after | exit | lines written | complete JSON lines | stderr says | "
        "stderr lines | traceback |", "|---|---|---|---|---|---|---|",
        *(f"| {r['after']:,} | {r['exit']} | {r['lines']:,} | {r['complete_lines']:,} | "
          f"{r['reported']} | {r['stderr_lines']} | {'yes' if r['traceback'] else 'no'} |"
          for r in result["interrupted"]),
        f"\n{NOTICE}\n",
    ]
    (out / f"{name}.md").write_text("\n".join(lines))


app = typer.Typer(add_completion=False, help=f"Soak and Ctrl-C test of edge-classify. {NOTICE}")


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Folder for NAME.json and NAME.md.")] = Path(
        "benchmarks/results"),
    name: Annotated[str, typer.Option(help="Result file name.")] = "soak",
    files: Annotated[int, typer.Option(min=10, help="Number of scans.")] = 10_000,
    model: Annotated[Path | None, typer.Option(
        help=".tflite model; default the bundled one.", show_default=False)] = None,
) -> None:
    echo = lambda line: typer.echo(line, err=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="lungcnn-soak-") as folder:
        write_scans(Path(folder), files)
        echo(f"{files} scans written; soaking")
        run = soak(Path(folder), files, model, echo)
        stops = [interrupted(Path(folder), after, model) for after in INTERRUPT_AFTER
                 if after < files]
    words = ["python", "-m", "lungcnn.benchmarks.soak", "--out", str(out), "--name", name,
             "--files", str(files)] + (["--model", str(model)] if model else [])
    result = {"command": shlex.join(words), "machine": f"{platform.machine()} "
              f"{os.cpu_count()} cores", "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d"), "files": files, "soak": run,
              "interrupted": stops}
    write_report(result, out, name)
    typer.echo(f"wrote {out / (name + '.md')} and {name}.json")


if __name__ == "__main__":
    app()
