"""`python -m lungcnn.benchmarks.adapt_speed`: how long `edge-classify adapt` and
`edge-classify validate` take on a site of N labelled scans, each a fresh process, side by
side in alternating rounds with `edge-classify --workers 1` classifying the same scans (the
reading and inference every command does once per scan), so the ratios say what adapting and
validating add. Writes NAME.json and NAME.md under --out.

The site: N scans drawn evenly from the class folders of a labelled dataset (symlinks, fixed
seed); by default the base set's training scans.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lungcnn.benchmarks.machine import machine_info, regenerate_command
from lungcnn.benchmarks.timing import alternating_rounds
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.edge.report import NOTICE

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
DEFAULT_DATA = REPO / "data" / "covid19-dataset" / "train"
EDGE = [sys.executable, "-m", "lungcnn.edge"]


def make_site(data: Path, scans: int, folder: Path, seed: int = 0) -> dict[str, int]:
    """SITE/<class>/ symlinks to `scans` scans of `data/<class>/`, drawn evenly across its
    class folders with a fixed seed."""
    classes = sorted(path for path in data.iterdir() if path.is_dir())
    rng = np.random.default_rng(seed)
    counts = {}
    for index, source in enumerate(classes):
        files = sorted(path for path in source.iterdir() if path.is_file())
        share = scans // len(classes) + (index < scans % len(classes))
        (folder / source.name).mkdir(parents=True)
        for number in rng.permutation(len(files))[:share]:
            path = files[number]
            (folder / source.name / path.name).symlink_to(path.resolve())
        counts[source.name] = min(share, len(files))
    return counts


def commands(site: Path, out: Path) -> dict[str, list[str]]:
    return {"classify": [*EDGE, "--json", "--workers", "1", str(site)],
            "adapt": [*EDGE, "adapt", "--data", str(site), "--out", str(out / "adapted")],
            "validate": [*EDGE, "validate", "--data", str(site), "--out", str(out / "report")]}


def main(
    scans: Annotated[int, typer.Option(
        min=15, help="Scans in the site (at least 5 per class).")] = 100,
    repeats: Annotated[int, typer.Option(min=1, help="Alternating rounds.")] = 5,
    data: Annotated[Path, typer.Option(help="Labelled dataset the site is drawn from.")]
    = DEFAULT_DATA,
    out: Annotated[Path, typer.Option(help="Folder for NAME.json and NAME.md.")]
    = REPO / "benchmarks" / "results",
    name: Annotated[str, typer.Option(help="Base name of the result files.")] = "adapt_speed",
) -> None:
    """Time adapt and validate against classifying the same scans (medians of fresh runs)."""
    command = regenerate_command("lungcnn.benchmarks.adapt_speed", (
        ("scans", scans, 100), ("repeats", repeats, 5), ("name", name, "adapt_speed")))
    load_start, date = os.getloadavg(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="adapt-speed-") as scratch:
        site = Path(scratch) / "site"
        counts = make_site(data, scans, site)
        runs = commands(site, Path(scratch))
        # validate exits 1 on a verdict other than fit
        times = alternating_rounds(runs, repeats, cwd=REPO, env=ENV, exit_codes=(0, 1))
    medians = {label: statistics.median(values) for label, values in times.items()}
    result = {"name": name, "command": command, "date": date, "repeats": repeats,
              "site": counts, "seconds": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
              "median_s": {k: round(v, 2) for k, v in medians.items()},
              "ratio_to_classify": {k: round(medians[k] / medians["classify"], 2)
                                    for k in ("adapt", "validate")},
              "machine": machine_info(load_start), "notice": NOTICE}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{name}.json", result)
    (out / f"{name}.md").write_text(markdown(result))
    print(f"wrote {out / (name + '.md')}: median s {result['median_s']}")


def markdown(result: dict) -> str:
    machine, medians = result["machine"], result["median_s"]
    rows = "\n".join(f"| {label} | {medians[label]} | "
                     f"{result['ratio_to_classify'].get(label, 1.0)} | {values} |"
                     for label, values in result["seconds"].items())
    site = ", ".join(f"{name} {count}" for name, count in result["site"].items())
    return f"""# `edge-classify adapt` and `validate` on {sum(result['site'].values())} scans

Regenerate: `{result['command']}` ({result['date']}; {machine['cpu_model']},
{machine['cores']} cores, load average {machine['load_average_start']} at the start and
{machine['load_average_end']} at the end).

The bundled model; the site's scans per class: {site}. Each command a fresh process
(start-up, model load, every scan read once), {result['repeats']} alternating rounds:
`edge-classify --json --workers 1 SITE` (classify), `edge-classify adapt --data SITE`,
`edge-classify validate --data SITE`.

| command | median s | ratio to classify | all runs s |
|---|---|---|---|
{rows}

{result['notice']}
"""


if __name__ == "__main__":
    typer.run(main)
