"""The benchmark's configuration: one frozen dataclass, saved resolved in every result."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_OUT = Path("benchmarks/results")
# A full benchmark must fit in 10 minutes on 2 shared cores; these call counts do.
DEFAULT_TIMED_CALLS = 200
QUICK_TIMED_CALLS = 20
QUICK_SCANS_PER_CLASS = 2
QUICK_WARMUP_CALLS = 2
QUICK_KERAS_BATCH = 4


@dataclass(frozen=True)
class BenchConfig:
    runs: tuple[Path, ...]
    out_dir: Path = DEFAULT_OUT
    name: str = "latest"
    data_dir: Path | None = None  # None: each run's own test split from its manifest
    seeds: int = 0  # > 0: first train this many seeds per architecture (slow)
    timed_calls: int = DEFAULT_TIMED_CALLS
    warmup_calls: int = 10
    rounds: int = 4  # timed calls are split into rounds that alternate between the models
    keras_batch: int = 16  # batch size of the labelled "Keras batched" timing
    quick: bool = False  # few scans per class: a smoke run, not a measurement
    threads: tuple[int, ...] = (1, os.cpu_count() or 1)

    def __post_init__(self) -> None:
        problems = [
            message
            for failed, message in (
                (not self.runs, "no run directory to benchmark"),
                (self.timed_calls < 1, "--timed-calls must be >= 1"),
                (self.warmup_calls < 0, "warm-up calls must be >= 0"),
                (self.rounds < 1, "rounds must be >= 1"),
                (self.keras_batch < 1, "Keras batch must be >= 1"),
                (self.seeds < 0, "--seeds must be >= 0"),
                (not self.name or "/" in self.name, "--name must be a plain file name"),
            )
            if failed
        ]
        if problems:
            raise ValueError("; ".join(problems))
        object.__setattr__(self, "threads", tuple(sorted(set(self.threads))))

    @property
    def scans_per_class(self) -> int | None:
        return QUICK_SCANS_PER_CLASS if self.quick else None

    def to_json(self) -> dict:
        payload = asdict(self)
        payload["runs"] = [str(run) for run in self.runs]
        payload["out_dir"] = str(self.out_dir)
        payload["data_dir"] = None if self.data_dir is None else str(self.data_dir)
        return payload
