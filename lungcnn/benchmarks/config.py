"""The benchmark's configuration: one frozen dataclass, saved resolved in every result."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_OUT = Path("benchmarks/results")
# Call counts that keep a full benchmark within its time budget (docs/benchmarks.md).
DEFAULT_TIMED_CALLS = 200
QUICK_TIMED_CALLS = 20
QUICK_SCANS_PER_CLASS = 2
QUICK_WARMUP_CALLS = 2
QUICK_KERAS_BATCH = 4
HEATMAP_CALLS = 10
QUICK_HEATMAP_CALLS = 2
# The shift proxies (benchmarks.trust.shift_proxies) a --quick trust section assesses.
QUICK_TRUST_PROXIES = ("low_resolution_128_jpeg_q30", "blur")


@dataclass(frozen=True)
class BenchConfig:
    runs: tuple[Path, ...]
    out_dir: Path = DEFAULT_OUT
    name: str = "latest"
    data_dir: Path | None = None  # None: each run's own test split from its manifest
    seeds: int = 0  # > 0: first train this many seeds per architecture (slow)
    open_set: bool = False  # also the open-set proxy: 3 trainings per architecture (slow)
    timed_calls: int = DEFAULT_TIMED_CALLS
    warmup_calls: int = 10
    rounds: int = 4  # timed calls are split into rounds that alternate between the models
    keras_batch: int = 16  # batch size of the labelled "Keras batched" timing
    quick: bool = False  # few scans per class: a smoke run, not a measurement
    threads: tuple[int, ...] = (1, os.cpu_count() or 1)
    heatmap_calls: int = HEATMAP_CALLS  # occlusion heatmaps timed per TFLite variant (trust)

    def __post_init__(self) -> None:
        problems = [
            message
            for failed, message in (
                (not self.runs, "no run directory to benchmark"),
                (self.timed_calls < 1, "--timed-calls must be >= 1"),
                (self.warmup_calls < 0, "warm-up calls must be >= 0"),
                (self.rounds < 1, "rounds must be >= 1"),
                (self.keras_batch < 1, "Keras batch must be >= 1"),
                (self.heatmap_calls < 1, "heatmap calls must be >= 1"),
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

    @property
    def trust_proxies(self) -> tuple[str, ...] | None:
        """The shift proxies of the trust section; None: all of them."""
        return QUICK_TRUST_PROXIES if self.quick else None

    def to_json(self) -> dict:
        payload = asdict(self)
        payload["runs"] = [str(run) for run in self.runs]
        payload["out_dir"] = str(self.out_dir)
        payload["data_dir"] = None if self.data_dir is None else str(self.data_dir)
        return payload
