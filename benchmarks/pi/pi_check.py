"""Helpers for benchmarks/pi/check.sh (the arm64 emulation check of the device path).

Subcommands:
  sources     print a private apt sources file (deb822) with the host's Debian bookworm entries
  constraints print name==version pins of lungcnn's runtime dependencies as installed here
  cpuinfo     write ROOT/proc/cpuinfo describing a Raspberry Pi core (LiteRT reads it)
  compare     compare the JSON lines of the host run with an emulated run
  time        median per-invoke time in ms of a model on one scan (host and emulated)

Runs on the host's Python and, for `time`, on the emulated one: only the standard library
at import time.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

DEBIAN_SUITES = ("bookworm", "bookworm-updates", "bookworm-security")
# The Raspberry Pi cores named by qemu's -cpu; `part` is the MIDR part number that LiteRT's
# cpuinfo parses (it segfaults in Interpreter() on the host's x86 text).
PI_CORES = {
    "cortex-a72": {
        "model": "Raspberry Pi 4 Model B Rev 1.4",
        "features": "fp asimd evtstrm crc32 cpuid",
        "variant": "0x0",
        "part": "0xd08",
        "revision": "3",
    },
    "cortex-a76": {
        "model": "Raspberry Pi 5 Model B Rev 1.0",
        "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
        "asimdrdm lrcpc dcpop asimddp",
        "variant": "0x4",
        "part": "0xd0b",
        "revision": "1",
    },
}
PI_CPU_COUNT = 4
FLOAT_TOLERANCE = 1e-5


class CheckError(Exception):
    """A failed check; the message is printed as one line."""


# ----------------------------------------------------------------------------- sources


def debian_sources(source_list: Path, source_parts: Path) -> str:
    """The host's Debian bookworm 'main' entries (one-line or deb822), as deb822 stanzas."""
    entries = []
    files = [source_list] if source_list.is_file() else []
    files += sorted(source_parts.glob("*.list")) + sorted(source_parts.glob("*.sources"))
    for path in files:
        parse = _parse_deb822 if path.suffix == ".sources" else _parse_one_line
        entries += [e for e in map(_bookworm_main, parse(path.read_text())) if e]
    if not entries:
        raise CheckError(
            f"no Debian bookworm 'main' entry in {source_list} or {source_parts}/; "
            "set LUNGCNN_PI_APT_SOURCES to a deb822 sources file for a Debian mirror"
        )
    return "\n".join(_to_deb822(entry) for entry in entries)


def _parse_one_line(text: str) -> list[dict]:
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        options = {}
        match = re.match(r"^(deb|deb-src)\s+\[([^\]]*)\]\s+(.*)$", line)
        if match:
            kind, raw_options, rest = match.groups()
            options = dict(o.split("=", 1) for o in raw_options.split() if "=" in o)
        elif line.startswith(("deb ", "deb-src ")):
            kind, rest = line.split(None, 1)
        else:
            continue
        uri, suite, *components = rest.split()
        entries.append(
            {
                "types": [kind],
                "uris": [uri],
                "suites": [suite],
                "components": components,
                "signed_by": options.get("signed-by"),
            }
        )
    return entries


def _parse_deb822(text: str) -> list[dict]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
            continue
        entries.append(
            {
                "types": fields.get("types", "").split(),
                "uris": fields["uris"].split(),
                "suites": fields.get("suites", "").split(),
                "components": fields.get("components", "").split(),
                "signed_by": fields.get("signed-by"),
            }
        )
    return entries


def _bookworm_main(entry: dict) -> dict | None:
    """The entry restricted to Debian's bookworm suites, or None if it has none of them."""
    suites = [suite for suite in entry["suites"] if suite in DEBIAN_SUITES]
    if "deb" not in entry["types"] or not suites or "main" not in entry["components"]:
        return None
    return {**entry, "suites": suites}


def _to_deb822(entry: dict) -> str:
    lines = [
        "Types: deb",
        f"URIs: {' '.join(entry['uris'])}",
        f"Suites: {' '.join(entry['suites'])}",
        "Components: main",
    ]
    if entry["signed_by"]:
        lines.append(f"Signed-By: {entry['signed_by']}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- constraints


def runtime_pins(distribution: str = "lungcnn") -> list[str]:
    """name==version for each unconditional requirement of `distribution`, as installed."""
    from importlib import metadata

    pins = []
    for requirement in metadata.requires(distribution) or []:
        marker = requirement.partition(";")[2]
        if "extra" in marker:
            continue
        name = re.match(r"^[A-Za-z0-9._-]+", requirement).group(0)
        pins.append(f"{name}=={metadata.version(name)}")
    return pins


# ----------------------------------------------------------------------------- cpuinfo


def cpuinfo_text(core: str) -> str:
    """/proc/cpuinfo as a 64-bit Raspberry Pi OS kernel prints it for `core`."""
    spec = PI_CORES[core]
    processor = (
        "processor\t: {index}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {variant}\n"
        "CPU part\t: {part}\nCPU revision\t: {revision}\n\n"
    )
    text = "".join(processor.format(index=i, **spec) for i in range(PI_CPU_COUNT))
    return text + f"Model\t\t: {spec['model']}\n"


# ----------------------------------------------------------------------------- compare


# edge-classify's stability check re-encodes each scan (low-resolution JPEG, blur, reframing)
# before running the model again; Pillow's and libjpeg-turbo's SIMD paths differ between
# x86_64 and aarch64 by a grey level here and there, so that one derived confidence may move
# a little. The feature distance is float64 arithmetic on the model's (identical) features,
# summed in another order by the other architecture's BLAS: its rounded value may move by one
# last digit. The model's own outputs, the label and the flag must still match exactly.
FIELD_TOLERANCE = {"stable_confidence": 0.01, "feature_distance": 0.002}


def compare_runs(expected_path: Path, actual_path: Path, tolerance: float) -> str:
    """Compare two JSON-lines outputs record by record; returns a one-line summary."""
    expected = _json_lines(expected_path)
    actual = _json_lines(actual_path)
    if not expected:
        raise CheckError(f"{expected_path}: the host run printed no JSON lines")
    if len(expected) != len(actual):
        raise CheckError(
            f"{actual_path}: {len(actual)} JSON lines, the host run printed {len(expected)}"
        )
    worst = 0.0
    for number, (want, got) in enumerate(zip(expected, actual), start=1):
        worst = max(worst, _compare_values(want, got, tolerance, f"line {number}"))
    if worst == 0.0:
        summary = f"{len(expected)} records identical"
    else:
        summary = f"{len(expected)} records match, max |difference| {worst:.2e} <= {tolerance:g}"
    return summary + _tolerated_fields_summary(expected, actual)


def _tolerated_fields_summary(expected: list, actual: list) -> str:
    """How far the fields of FIELD_TOLERANCE moved (they are left out of the summary above)."""
    parts = []
    for field, limit in FIELD_TOLERANCE.items():
        moved = [abs(want[field] - got[field]) for want, got in zip(expected, actual)
                 if isinstance(want, dict) and _is_number(want.get(field))
                 and _is_number(got.get(field))]
        if moved:
            parts.append(f"{field} within {limit:g} (max {max(moved):.1e})")
    return f" ({'; '.join(parts)})" if parts else ""


def _json_lines(path: Path) -> list:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise CheckError(f"{path}:{number}: not a JSON line: {line[:120]!r}") from None
    return records


def _compare_values(want, got, tolerance: float, where: str) -> float:
    """Largest numeric difference found; raises CheckError on any other difference."""
    if isinstance(want, dict) and isinstance(got, dict):
        if want.keys() != got.keys():
            raise CheckError(f"{where}: keys differ: {sorted(want)} vs {sorted(got)}")
        label = f"{where} ({want.get('file', '')})" if "file" in want else where
        return max(
            [_compare_values(want[k], got[k], tolerance, f"{label}.{k}")
             for k in want if k not in FIELD_TOLERANCE]
            + [_within(want[k], got[k], FIELD_TOLERANCE[k], f"{label}.{k}")
               for k in want if k in FIELD_TOLERANCE],
            default=0.0,
        )
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return max(
            [_compare_values(w, g, tolerance, f"{where}[{i}]")
             for i, (w, g) in enumerate(zip(want, got))],
            default=0.0,
        )
    if _is_number(want) and _is_number(got):
        difference = abs(float(want) - float(got))
        if not difference <= tolerance and not (math.isnan(want) and math.isnan(got)):
            raise CheckError(
                f"{where}: host {want!r} vs emulated {got!r} (|difference| {difference:.3g} "
                f"> tolerance {tolerance:g})"
            )
        return difference
    if want != got:
        raise CheckError(f"{where}: host {want!r} vs emulated {got!r}")
    return 0.0


def _within(want, got, limit: float, where: str) -> float:
    """Check a FIELD_TOLERANCE field; it does not count towards the worst difference."""
    _compare_values(want, got, limit, where)
    return 0.0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def output_is_quantized(model_path: Path) -> bool:
    """True for an int8/uint8 output tensor: then host and emulated outputs must be identical."""
    from lungcnn.edge.runtime import interpreter_class

    interpreter = interpreter_class()(model_path=str(model_path))
    return interpreter.get_output_details()[0]["dtype"].__name__ in ("int8", "uint8")


# -------------------------------------------------------------------------------- time


def invoke_times_ms(model_path: Path, scan_path: Path, repeats: int, warmup: int) -> list[float]:
    """Wall time of each of `repeats` single-threaded inferences of one scan, after warm-up."""
    import time

    from lungcnn.edge.contract import load_scan
    from lungcnn.edge.runtime import TFLiteClassifier

    classifier = TFLiteClassifier(model_path, threads=1)
    scan = load_scan(scan_path, classifier.input_size)
    for _ in range(warmup):
        classifier.probabilities(scan)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.probabilities(scan)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


# --------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sources = commands.add_parser("sources", help="private apt sources from the host's config")
    sources.add_argument("source_list", type=Path)
    sources.add_argument("source_parts", type=Path)
    commands.add_parser("constraints", help="pins of lungcnn's runtime dependencies")
    cpuinfo = commands.add_parser("cpuinfo", help="write ROOT/proc/cpuinfo for a Pi core")
    cpuinfo.add_argument("root", type=Path)
    cpuinfo.add_argument("core", choices=sorted(PI_CORES))
    compare = commands.add_parser("compare", help="compare host and emulated JSON lines")
    compare.add_argument("model", type=Path)
    compare.add_argument("host_jsonl", type=Path)
    compare.add_argument("emulated_jsonl", type=Path)
    timing = commands.add_parser("time", help="median per-invoke time in ms")
    timing.add_argument("model", type=Path)
    timing.add_argument("scan", type=Path)
    timing.add_argument("--repeats", type=int, default=5)
    timing.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        print(_run(args))
    except CheckError as error:
        print(f"pi-check: FAIL: {error}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> str:
    if args.command == "sources":
        return debian_sources(args.source_list, args.source_parts)
    if args.command == "constraints":
        return "\n".join(runtime_pins())
    if args.command == "cpuinfo":
        (args.root / "proc").mkdir(parents=True, exist_ok=True)
        (args.root / "proc" / "cpuinfo").write_text(cpuinfo_text(args.core))
        return f"{args.root}/proc/cpuinfo: {args.core}"
    if args.command == "compare":
        quantized = output_is_quantized(args.model)
        tolerance = 0.0 if quantized else FLOAT_TOLERANCE
        kind = "quantized output, must be identical" if quantized else "float output"
        return f"{compare_runs(args.host_jsonl, args.emulated_jsonl, tolerance)} ({kind})"
    times = invoke_times_ms(args.model, args.scan, args.repeats, args.warmup)
    return f"{statistics.median(times):.3f}"


if __name__ == "__main__":
    sys.exit(main())
