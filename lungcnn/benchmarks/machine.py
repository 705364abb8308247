"""What the benchmark ran on, and what it cost: the machine description saved in every
result, the command that regenerates it, and the CPU time of this process and its
children."""

from __future__ import annotations

import os
import platform
import resource
import shlex
from pathlib import Path


def regenerate_command(module: str, options: tuple[tuple[str, object, object], ...]) -> str:
    """`python -m MODULE` with the (flag, value, default) options whose value is not the
    default: the command a result names."""
    return f"python -m {module}" + "".join(
        f" --{flag} {shlex.quote(str(value))}" for flag, value, default in options
        if value != default)


def cpu_seconds() -> float:
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def machine_info(load_start: tuple[float, float, float]) -> dict:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "python": platform.python_version(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "note": "shared machine: other processes may have run during the measurement; "
        "compare variants through the ratios and percentiles of this one run",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None
