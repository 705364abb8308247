"""Bounded load benchmark of `edge-classify serve`, against 127.0.0.1 only.

    python -m lungcnn.benchmarks.serve_load --clients 1,2,4,5,8,16 --requests 100 \
        --out benchmarks/results/serve_load

Starts the server in a subprocess (workers and queue limit as given), then for each client
count N runs N threads that each keep one request in flight (POST /v1/classify with one
committed test scan) until a fixed number of requests is done or the time limit passes.
Reports p50/p99 latency of answered requests, throughput, 503s, other errors and the
server's peak resident memory. At or below the server's capacity (workers + queue limit)
every request must succeed; above it the only failures allowed are 503s. Exit status 1 when
that does not hold. Timings on a shared machine are noisy: compare levels of one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lungcnn.benchmarks.serve_process import HOST, REPO_ROOT, ServerProcess
from lungcnn.edge.errors import NOTICE as DEVICE_NOTICE

SCANS_DIR = REPO_ROOT / "tests" / "scans"
BOUNDARY = "lungcnn-load-boundary"
NOTICE = f"These numbers describe software, not diagnostic performance. {DEVICE_NOTICE}"


@dataclass
class LevelResult:
    clients: int
    requests: int = 0
    ok: int = 0
    busy_503: int = 0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    stopped_by_time: bool = False
    p50_ms: float | None = None
    p99_ms: float | None = None
    busy_p50_ms: float | None = None
    throughput_rps: float = 0.0
    server_peak_rss_mib: float | None = None
    expectation_met: bool = True


def multipart_body(path: Path) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
    return head.encode() + path.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


class _Client(threading.Thread):
    """One client: one keep-alive connection, one request in flight at a time."""

    def __init__(self, port: int, path: str, bodies: list[bytes], level: "_Level",
                 backoff: float):
        super().__init__(daemon=True)
        self._port, self._path, self._bodies, self._level = port, path, bodies, level
        self._backoff = backoff

    def run(self) -> None:
        connection = None
        while (number := self._level.take()) is not None:
            connection = connection or http.client.HTTPConnection(HOST, self._port, timeout=120)
            started = time.perf_counter()
            try:
                connection.request("POST", self._path, body=self._bodies[number % len(
                    self._bodies)], headers={"Content-Type":
                                             f"multipart/form-data; boundary={BOUNDARY}"})
                response = connection.getresponse()
                payload = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                connection = None
                status, payload = None, f"{type(error).__name__}: {error}".encode()
            self._level.record(status, payload, time.perf_counter() - started)
            if status == 503:
                time.sleep(self._backoff)
        if connection is not None:
            connection.close()


class _Level:
    """Shared state of one client count: the request budget and the outcomes."""

    def __init__(self, requests: int, deadline: float):
        self._remaining, self._deadline = requests, deadline
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self.busy_latencies: list[float] = []
        self.errors: list[str] = []
        self.stopped_by_time = False

    def take(self) -> int | None:
        with self._lock:
            if time.monotonic() > self._deadline:
                self.stopped_by_time = self._remaining > 0
                return None
            if self._remaining <= 0:
                return None
            self._remaining -= 1
            return self._remaining

    def record(self, status: int | None, payload: bytes, seconds: float) -> None:
        with self._lock:
            if status == 200:
                self.latencies.append(seconds)
            elif status == 503:
                self.busy_latencies.append(seconds)
            else:
                self.errors.append(f"{status}: {payload[:200].decode(errors='replace')}")


def run_level(server: ServerProcess, clients: int, requests: int, max_seconds: float,
              path: str, bodies: list[bytes], capacity: int, backoff: float) -> LevelResult:
    level = _Level(requests, time.monotonic() + max_seconds)
    threads = [_Client(server.port, path, bodies, level, backoff) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + 180)
    wall = time.perf_counter() - started
    result = LevelResult(clients=clients, wall_s=round(wall, 3),
                         stopped_by_time=level.stopped_by_time)
    result.ok, result.busy_503, result.errors = (len(level.latencies),
                                                 len(level.busy_latencies), len(level.errors))
    result.requests = result.ok + result.busy_503 + result.errors
    result.error_examples = level.errors[:3]
    result.p50_ms, result.p99_ms = _percentiles_ms(level.latencies)
    result.busy_p50_ms = _percentiles_ms(level.busy_latencies)[0]
    result.throughput_rps = round(result.ok / wall, 2) if wall > 0 else 0.0
    rss = server.peak_rss_bytes()
    result.server_peak_rss_mib = round(rss / 2**20, 1) if rss else None
    within = clients <= capacity
    result.expectation_met = result.errors == 0 and (result.busy_503 == 0 if within else True)
    return result


def _percentiles_ms(seconds: list[float]) -> tuple[float | None, float | None]:
    if not seconds:
        return None, None
    if len(seconds) == 1:
        return round(seconds[0] * 1000, 1), round(seconds[0] * 1000, 1)
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return round(statistics.median(seconds) * 1000, 1), round(cuts[98] * 1000, 1)


def write_reports(out: Path, command: str, setup: dict, levels: list[LevelResult]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "setup": setup, "levels": [asdict(l) for l in levels],
               "notice": NOTICE}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(command, setup, levels))


def markdown(command: str, setup: dict, levels: list[LevelResult]) -> str:
    lines = ["# Load benchmark of `edge-classify serve`", "", "Regenerate with:", "",
             "```bash", command, "```", "",
             f"{setup['started']} on {setup['machine']}; server: `{setup['server_args']}` "
             f"(capacity {setup['capacity']} = workers + queue limit); each request uploads "
             f"one of {setup['scans']} committed test scans (heatmap: {setup['heatmap']}); "
             f"127.0.0.1 only. Load average {setup['load_before']} before, "
             f"{setup['load_after']} after (shared machine: compare levels of this run).", "",
             f"> {NOTICE}", "",
             "| clients | requests | ok | 503 | other errors | p50 ms | p99 ms | 503 p50 ms "
             "| throughput req/s | server peak RSS MiB | as expected |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for level in levels:
        lines.append("| " + " | ".join(str(v if v is not None else "-") for v in (
            level.clients, level.requests, level.ok, level.busy_503, level.errors,
            level.p50_ms, level.p99_ms, level.busy_p50_ms, level.throughput_rps,
            level.server_peak_rss_mib, "yes" if level.expectation_met else "NO")) + " |")
    lines += ["", "Expected: no failed request at or below the capacity, and above it only "
              "clean 503s (no connection errors, no 5xx other than 503). A client that gets "
              f"a 503 waits {setup['busy_backoff_ms']:g} ms, then sends its next request; "
              "503s count in the level's request budget; latency percentiles are over "
              "answered (200) requests. Peak RSS is the "
              "server's high-water mark so far (it only grows across levels)."]
    return "\n".join(lines) + "\n"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,2,4,5,8,16",
                        help="comma-separated client counts, one level each")
    parser.add_argument("--requests", type=int, default=100, help="requests per level")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="time limit per level")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--queue-limit", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--heatmap", choices=("none", "id"), default="none")
    parser.add_argument("--busy-backoff-ms", type=float, default=100.0,
                        help="a client's pause after a 503 before its next request")
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    parser.add_argument("--out", type=Path, help="write OUT.md and OUT.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    if not clients or min(clients) < 1 or args.requests < 1:
        print("serve_load: error: --clients and --requests must be positive", file=sys.stderr)
        return 2
    server_args = ["--workers", str(args.workers), "--queue-limit", str(args.queue_limit),
                   "--threads", str(args.threads)]
    if args.model:
        server_args += ["--model", str(args.model)]
    scans = sorted(p for p in SCANS_DIR.iterdir() if p.suffix in (".jpg", ".png"))
    bodies = [multipart_body(path) for path in scans]
    capacity = args.workers + args.queue_limit
    path = "/v1/classify" + ("" if args.heatmap == "none" else f"?heatmap={args.heatmap}")
    command = "python -m lungcnn.benchmarks.serve_load " + shlex.join(argv or sys.argv[1:])
    setup = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "server_args": shlex.join(
        server_args), "capacity": capacity, "scans": len(scans), "heatmap": args.heatmap,
        "busy_backoff_ms": args.busy_backoff_ms,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_before": round(os.getloadavg()[0], 2)}
    levels = []
    with ServerProcess(server_args) as server:
        for count in clients:
            level = run_level(server, count, args.requests, args.max_seconds, path, bodies,
                              capacity, args.busy_backoff_ms / 1000)
            levels.append(level)
            print(f"serve_load: {count} clients: {level.ok} ok, {level.busy_503} x 503, "
                  f"{level.errors} errors, p50 {level.p50_ms} ms, p99 {level.p99_ms} ms, "
                  f"{level.throughput_rps} req/s, peak RSS {level.server_peak_rss_mib} MiB",
                  file=sys.stderr)
    setup["load_after"] = round(os.getloadavg()[0], 2)
    if args.out:
        write_reports(args.out, command, setup, levels)
    return 0 if all(level.expectation_met for level in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
