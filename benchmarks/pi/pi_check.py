"""Helpers for benchmarks/pi/check.sh (the arm64 emulation check of the device path).

Subcommands:
  sources     print a private apt sources file (deb822) with the host's Debian bookworm entries
  constraints print name==version pins of lungcnn's runtime dependencies as installed here
  cpuinfo     write ROOT/proc/cpuinfo describing a Raspberry Pi core (LiteRT reads it)
  compare     compare the JSON lines of the host run with an emulated run
  time        median per-invoke time in ms of a model on one scan (host and emulated)

Runs on the host's Python and, for `time`, on the emulated one: only the standard library
at import time. Its parts: pi_sources.py (apt sources), pi_compare.py (the comparison),
pi_errors.py; they are imported from this script's folder.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

from pi_compare import FLOAT_TOLERANCE, compare_runs, output_is_quantized
from pi_errors import CheckError
from pi_sources import debian_sources

__all__ = ["CheckError", "compare_runs", "cpuinfo_text", "debian_sources", "runtime_pins"]

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


# ------------------------------------------------------------------------- constraints


PINNED_EXTRAS = ("serve",)  # installed in the emulated root too (check.sh serves from it)


def runtime_pins(distribution: str = "lungcnn") -> list[str]:
    """name==version for each unconditional requirement of `distribution`, and those of
    PINNED_EXTRAS, as installed."""
    from importlib import metadata

    pins = []
    for requirement in metadata.requires(distribution) or []:
        marker = requirement.partition(";")[2]
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if "extra" in marker and not (extra and extra.group(1) in PINNED_EXTRAS):
            continue
        name = re.match(r"^[A-Za-z0-9._-]+", requirement).group(0)
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            if not extra:
                raise  # an extra the host lacks is left unpinned
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


# -------------------------------------------------------------------------------- time


def invoke_times_ms(model_path: Path, scan_path: Path, repeats: int, warmup: int) -> list[float]:
    """Wall time of each of `repeats` single-threaded inferences of one scan, after warm-up."""
    import time

    from lungcnn.edge.runtime import TFLiteClassifier

    classifier = TFLiteClassifier(model_path, threads=1)
    scan = classifier.model_input(classifier.preprocessor.decode(scan_path).gray)
    batch = scan[None]
    for _ in range(warmup):
        classifier.run(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.run(batch)
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
