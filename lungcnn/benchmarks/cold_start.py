"""`python -m lungcnn.benchmarks.cold_start`: how long a one-scan `edge-classify` takes from
a cold process, side by side with `python -c 'import tensorflow'` (what the device path
avoids), in alternating rounds of one run; plus where the classification's start-up goes,
from `python -X importtime`. Writes NAME.json and NAME.md under --out.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from lungcnn.benchmarks.machine import machine_info, regenerate_command
from lungcnn.benchmarks.timing import alternating_rounds
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.edge.report import NOTICE

REPO = Path(__file__).resolve().parents[2]
SCAN = REPO / "tests" / "scans" / "covid-0100.jpg"
# This checkout first; a PYTHONPATH given to the benchmark stays behind it.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
TOP_IMPORTS = 12
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def commands(scan: Path) -> dict[str, list[str]]:
    return {"edge-classify": [sys.executable, "-m", "lungcnn.edge", "--json", str(scan)],
            "import tensorflow": [sys.executable, "-c", "import tensorflow"]}


def main(
    repeats: Annotated[int, typer.Option(min=1, help="Alternating rounds.")] = 5,
    scan: Annotated[Path, typer.Option(help="The scan classified.")] = SCAN,
    out: Annotated[Path, typer.Option(help="Folder for NAME.json and NAME.md.")]
    = REPO / "benchmarks" / "results",
    name: Annotated[str, typer.Option(help="Base name of the result files.")] = "cold_start",
) -> None:
    command = regenerate_command("lungcnn.benchmarks.cold_start",
                                 (("repeats", repeats, 5), ("name", name, "cold_start")))
    load_start, date = os.getloadavg(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs = commands(scan)
    times = alternating_rounds(runs, repeats, cwd=REPO, env=ENV)
    medians = {label: statistics.median(values) for label, values in times.items()}
    result = {"name": name, "command": command, "date": date, "repeats": repeats,
              "scan": str(scan.relative_to(REPO) if scan.is_relative_to(REPO) else scan),
              "seconds": {label: [round(v, 3) for v in values] for label, values in times.items()},
              "median_s": {label: round(v, 3) for label, v in medians.items()},
              "ratio": round(medians["import tensorflow"] / medians["edge-classify"], 1),
              "imports": top_imports(runs["edge-classify"]),
              "machine": machine_info(load_start), "typer": _typer_version(),
              "notice": NOTICE}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{name}.json", result)
    (out / f"{name}.md").write_text(markdown(result))
    print(f"wrote {out / (name + '.md')}: edge-classify {result['median_s']['edge-classify']} s, "
          f"import tensorflow {result['median_s']['import tensorflow']} s, "
          f"ratio {result['ratio']}x")


def _typer_version() -> str:
    """The CLI library's version where the runs find it (its option parsing is part of the
    start-up: 0.29 imports pydantic to coerce options)."""
    code = "import typer; print(typer.__version__)"
    return subprocess.run([sys.executable, "-c", code], env=ENV, cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()


def top_imports(argv: list[str]) -> list[dict]:
    """The top-level imports of one run (`-X importtime`), by cumulative time."""
    completed = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=ENV, cwd=REPO,
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    rows = []
    for line in completed.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match and len(match.group(3)) <= 3:  # the run's own imports and theirs
            rows.append({"module": match.group(4), "cumulative_ms": int(match.group(2)) / 1000,
                         "depth": (len(match.group(3)) - 1) // 2})
    rows.sort(key=lambda row: row["cumulative_ms"], reverse=True)
    return rows[:TOP_IMPORTS]


def markdown(result: dict) -> str:
    medians, machine = result["median_s"], result["machine"]
    imports = "\n".join(f"| {row['module']} | {row['depth']} | {row['cumulative_ms']:.1f} |"
                        for row in result["imports"])
    return f"""# Cold start: a one-scan edge-classify against importing TensorFlow

Regenerate: `{result['command']}` ({result['date']}; {machine['cpu_model']},
{machine['cores']} cores, load average {machine['load_average_start']} at the start and
{machine['load_average_end']} at the end).

`edge-classify --json {result['scan']}` (start the interpreter, import, load the bundled
model, decode, classify with every trust check, print) and `python -c 'import tensorflow'`,
each a fresh process, {result['repeats']} alternating rounds; typer {result['typer']}.

| command | median s | all runs s |
|---|---|---|
| edge-classify | {medians['edge-classify']} | {result['seconds']['edge-classify']} |
| import tensorflow | {medians['import tensorflow']} | {result['seconds']['import tensorflow']} |

edge-classify is **{result['ratio']}x** faster than importing TensorFlow (ratio of medians).

Where its imports go (`python -X importtime`, one run): the slowest imports at depth 0 (the
run's own) or 1 (what those import), by cumulative time.

| module | depth | cumulative ms |
|---|---|---|
{imports}

{result['notice']}
"""


if __name__ == "__main__":
    typer.run(main)
