"""Folder throughput of `edge-classify DIR --json` (all trust checks on), measured side by
side against an earlier revision, and whether both give the same answers.

    python -m lungcnn.benchmarks.throughput --baseline-rev 26e331d

The baseline is checked out into a temporary git worktree and run with the same Python (its
own layout: `python -m edge` for revisions before the `lungcnn` package). Two folders: the
vendored test split, and large scans (1-3k px) made by upscaling the vendored training scans
into a temporary folder. The two revisions run in turn, interleaved, each call in a fresh
process (start-up included); the result is the median wall time of each and their ratio.
Then the current revision runs once more under cProfile, so the result names what limits it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lungcnn.benchmarks.record_diff import differences
from lungcnn.benchmarks.throughput_report import ONE_SCAN, write_results

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "data" / "covid19-dataset"
LARGE_SIDES = (1000, 3000)
LARGE_JPEG_QUALITY = 90
DEFAULT_OUT = REPO / "benchmarks" / "results" / "throughput"
PROFILE_ROWS = 12


@dataclass(frozen=True)
class Revision:
    name: str
    root: Path
    module: str  # what `python -m` runs
    model: Path | None = None  # None: the revision's own bundled model

    def command(self, folder: Path) -> list[str]:
        model = ["--model", str(self.model)] if self.model else []
        return [sys.executable, "-m", self.module, str(folder), "--json", *model]

    def run(self, folder: Path) -> tuple[float, float, list[dict]]:
        """(wall seconds, CPU seconds of the process: user + system, records)."""
        env = {**os.environ, "PYTHONPATH": str(self.root)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(self.command(folder), env=env, cwd=self.root,
                              capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{self.name}: exit {done.returncode}: {done.stderr.strip()}")
        return seconds, cpu, [json.loads(line) for line in done.stdout.splitlines()]


def edge_module(root: Path) -> str:
    return "lungcnn.edge" if (root / "lungcnn" / "edge").is_dir() else "edge"  # old layout


@contextmanager
def baseline_worktree(rev: str):
    """The revision `rev` checked out (detached) into a temporary worktree, removed after."""
    folder = Path(tempfile.mkdtemp(prefix="lungcnn-baseline-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), rev],
                   check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)],
                       check=False, capture_output=True)


def write_large_scans(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` training scans upscaled (bicubic) so their width is 1-3k px, each in its
    source's format (JPEG quality 90, or PNG)."""
    sources = sorted(p for p in (DATASET / "train").rglob("*") if p.is_file())
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        source = sources[index % len(sources)]
        with Image.open(source) as image:
            image = image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode)
            width = rng.randint(*LARGE_SIDES)
            size = (width, max(1, round(width * image.height / image.width)))
            big = image.resize(size, Image.Resampling.BICUBIC)
        path = folder / f"{index:04d}{'.png' if source.suffix.lower() == '.png' else '.jpeg'}"
        big.save(path, **({} if path.suffix == ".png" else {"quality": LARGE_JPEG_QUALITY}))
        written.append(path)
    return written


def measure(revisions: list[Revision], folders: dict[str, Path], repeats: int,
            echo) -> dict:
    """Interleaved runs: per repetition, each folder, each revision (order alternating)."""
    seconds = {f: {r.name: [] for r in revisions} for f in folders}
    cpu_seconds = {f: {r.name: [] for r in revisions} for f in folders}
    outputs: dict[str, dict[str, list[dict]]] = {f: {} for f in folders}
    for repetition in range(repeats):
        order = revisions if repetition % 2 == 0 else revisions[::-1]
        for label, folder in folders.items():
            for revision in order:
                took, cpu, records = revision.run(folder)
                seconds[label][revision.name].append(took)
                cpu_seconds[label][revision.name].append(cpu)
                outputs[label][revision.name] = records
                echo(f"  {label} {revision.name} #{repetition + 1}: {took:.2f} s wall, "
                     f"{cpu:.2f} s CPU", flush=True)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "outputs": outputs}


def profile_current(revision: Revision, folder: Path) -> list[dict]:
    """Where the current revision spends its time on `folder` (cProfile, in this process,
    one worker)."""
    sys.path.insert(0, str(revision.root))
    from lungcnn.edge.cli import main

    profiler = cProfile.Profile()
    sink, saved = io.StringIO(), sys.stdout
    sys.stdout = sink
    try:
        # one worker: cProfile sees only the thread it runs in
        profiler.runcall(_exit_code, main, [str(folder), "--json", "--workers", "1"])
    finally:
        sys.stdout = saved
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:PROFILE_ROWS]
    return [{"function": _function_name(key), "calls": value[1],
             "own_s": round(value[2], 3), "share": round(value[2] / total, 3)}
            for key, value in rows]


def _exit_code(main, argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def _function_name(key: tuple) -> str:
    filename, line, name = key
    where = Path(filename)
    return name if filename == "~" else f"{where.parent.name}/{where.name}:{line}({name})"


def summary(result: dict, names: list[str], counts: dict[str, int]) -> dict:
    rows = {}
    for label, by_revision in result["seconds"].items():
        medians = {name: statistics.median(by_revision[name]) for name in names}
        cpu = {name: statistics.median(result["cpu_seconds"][label][name]) for name in names}
        rows[label] = {
            "scans": counts[label],
            "median_s": medians,
            "median_cpu_s": cpu,
            "scans_per_s": {name: counts[label] / medians[name] for name in names},
            "speedup": medians[names[0]] / medians[names[1]],
            "cpu_speedup": cpu[names[0]] / cpu[names[1]],
            "differences": differences(*(result["outputs"][label][name] for name in names)),
        }
    return rows


def _commit(root: Path) -> str:
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lungcnn.benchmarks.throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-rev", required=True, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=5, help="calls per revision and folder")
    parser.add_argument("--large", type=int, default=300, help="number of large scans")
    parser.add_argument("--model", type=Path, help="run both revisions with this model "
                        "(default: each revision's bundled model)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="results path without suffix (.md and .json are written)")
    args = parser.parse_args(argv)
    command = ("python -m lungcnn.benchmarks.throughput --baseline-rev "
               f"{args.baseline_rev} --repeats {args.repeats} --large {args.large}"
               + (f" --model {args.model}" if args.model else ""))
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    with baseline_worktree(args.baseline_rev) as base_root, \
            tempfile.TemporaryDirectory(prefix="lungcnn-large-") as large:
        one, big = Path(large) / "one", Path(large) / "large"
        folders = {ONE_SCAN: one, "test split (640 px)": DATASET / "test",
                   f"large scans (1-3k px, n={args.large})": big}
        write_large_scans(big, args.large)
        one.mkdir()
        shutil.copy(min((DATASET / "test").rglob("*.jpeg")), one)
        model = args.model.resolve() if args.model else None
        baseline = Revision(args.baseline_rev, base_root, edge_module(base_root), model)
        current = Revision("current", REPO, edge_module(REPO), model)
        counts = {label: sum(1 for p in folder.rglob("*") if p.is_file())
                  for label, folder in folders.items()}
        result = measure([baseline, current], folders, args.repeats, print)
        print("profiling the current revision", flush=True)
        report = {
            "command": command,
            "repeats": args.repeats,
            "model": str(args.model) if args.model else None,
            "baseline": {"name": baseline.name, "commit": _commit(base_root)},
            "current": {"name": current.name, "commit": _commit(REPO)},
            "folders": summary(result, [baseline.name, current.name], counts),
            "seconds": result["seconds"],
            "cpu_seconds": result["cpu_seconds"],
            "profile": {label: profile_current(current, folder)
                        for label, folder in folders.items() if label != ONE_SCAN},
        }
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "load_before": load_before,
                         "load_after": " ".join(f"{v:.1f}" for v in os.getloadavg())}
    write_results(args.out, report)
    for label, row in report["folders"].items():
        print(f"{label}: {row['speedup']:.2f}x wall, {row['cpu_speedup']:.2f}x CPU "
              f"({len(row['differences'])} records differ)")


if __name__ == "__main__":
    main()
