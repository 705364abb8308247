"""`python -m lungcnn.archive.two_nodes`: `classify-archive` across a real
two-node Ray cluster on this machine, with the second node killed in the middle of the job.

The cluster is `ray.cluster_utils.Cluster` on 127.0.0.1: a head and a second node, each a
raylet of its own with one CPU, so the two classifying actors run one on each node. When a
share of the batches is written, the second node is killed (its raylet and its actor
process, no graceful drain) and a fresh node joins, as an autoscaler would replace it. The
job must finish (or a re-run of the same command resume), and the results must hold every
listed scan exactly once. Writes NAME.json and NAME.md under --out.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from lungcnn.archive.cli import keep_ray_on_loopback
from lungcnn.benchmarks.archive_bench import build_archive
from lungcnn.benchmarks.machine import machine_info, regenerate_command
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.edge.report import NOTICE

REPO = Path(__file__).resolve().parents[2]
NODE_OBJECT_STORE_BYTES = 128 * 1024 * 1024
POLL_S = 0.05


def main(
    scans: Annotated[int, typer.Option(min=16, help="Archive size.")] = 1200,
    batch_size: Annotated[int, typer.Option(min=1, help="Scans per batch (and block).")] = 8,
    kill_at: Annotated[float, typer.Option(
        min=0.05, max=0.9, help="Share of the batches written when the node is killed.")]
    = 0.3,
    data: Annotated[Path, typer.Option(help="Where the scans are copied from.")]
    = REPO / "data" / "covid19-dataset",
    out: Annotated[Path, typer.Option(help="Folder for NAME.json and NAME.md.")]
    = REPO / "benchmarks" / "results",
    name: Annotated[str, typer.Option(help="Base name of the result files.")]
    = "archive_two_nodes",
) -> None:
    keep_ray_on_loopback()
    command = regenerate_command("lungcnn.archive.two_nodes", (
        ("scans", scans, 1200), ("batch-size", batch_size, 8), ("kill-at", kill_at, 0.3),
        ("name", name, "archive_two_nodes")))
    load_start, date = os.getloadavg(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="archive-two-nodes-") as scratch:
        archive, results = Path(scratch) / "archive", Path(scratch) / "results"
        build_archive(data, archive, scans)
        result = run_with_a_node_killed(archive, results, batch_size, kill_at)
    result.update({"name": name, "command": command, "date": date, "scans": scans,
                   "batch_size": batch_size, "kill_at": kill_at,
                   "machine": machine_info(load_start), "notice": NOTICE})
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{name}.json", result)
    (out / f"{name}.md").write_text(markdown(result))
    print(f"wrote {out / (name + '.md')} and {name}.json: {verdict(result)}")


def run_with_a_node_killed(archive: Path, results: Path, batch_size: int,
                           kill_at: float) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from lungcnn.archive.job import code_runtime_env
    from lungcnn.archive.run import ArchiveConfig, run_archive

    node_args = {"num_cpus": 1, "object_store_memory": NODE_OBJECT_STORE_BYTES}
    cluster = Cluster(initialize_head=True, head_node_args={
        **node_args, "include_dashboard": False})
    try:
        second = cluster.add_node(**node_args)
        ray.init(address=cluster.address, runtime_env=code_runtime_env())
        config = ArchiveConfig((str(archive),), results, cluster.address, None, batch_size, 2)
        blocks = -(-sum(1 for p in archive.rglob("*") if p.is_file()) // batch_size)
        job = Job(run_archive, config)
        job.start()  # the nodes are started and killed from this (the main) thread
        kill = kill_when_written(cluster, second, node_args, results / "parts",
                                 max(1, int(blocks * kill_at)), job)
        job.join()
        runs = [job.outcome()]
        if not runs[0]["check"]["passed"]:  # resume: the same command again
            runs.append(_timed(run_archive, config))
        alive = sum(node["Alive"] for node in ray.nodes())
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"blocks": blocks, "kill": kill, "runs": runs, "nodes_alive_at_end": alive,
            "final_check": runs[-1]["check"]}


class Job(threading.Thread):
    """One classify-archive run on a thread of its own."""

    def __init__(self, run_archive, config):
        super().__init__(daemon=True)
        self._run, self._config = run_archive, config
        self._outcome: dict | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._outcome = _timed(self._run, self._config)
        except BaseException as error:  # handed to the main thread by outcome()
            self._error = error

    def outcome(self) -> dict:
        if self._error is not None:
            raise self._error
        return self._outcome


def kill_when_written(cluster, node, node_args: dict, parts: Path, threshold: int,
                      job: Job) -> dict:
    """Kill `node` once `threshold` blocks are in `parts` (if the job is still running),
    then add a fresh node; what was written when."""
    started = time.perf_counter()
    while _count_parts(parts) < threshold and job.is_alive():
        time.sleep(POLL_S)
    if not job.is_alive():
        return {"threshold_blocks": threshold, "blocks_written_at_kill": None}
    cluster.remove_node(node, allow_graceful=False)
    record = {"threshold_blocks": threshold, "blocks_written_at_kill": _count_parts(parts),
              "seconds_after_start": round(time.perf_counter() - started, 2)}
    cluster.add_node(**node_args)
    return record


def _count_parts(parts: Path) -> int:
    try:
        return sum(1 for name in os.listdir(parts) if name.endswith(".parquet"))
    except FileNotFoundError:
        return 0


def _timed(run_archive, config) -> dict:
    started = time.perf_counter()
    outcome = run_archive(config)
    return {"listed": outcome.listed, "skipped": outcome.skipped,
            "classified": outcome.classified, "failed": outcome.failed,
            "check": outcome.check.to_record(), "exit_code": outcome.exit_code,
            "seconds": round(time.perf_counter() - started, 1)}


def verdict(result: dict) -> str:
    check, kill = result["final_check"], result["kill"]
    mid_job = 0 < (kill["blocks_written_at_kill"] or 0) < result["blocks"]
    ok = check["passed"] and mid_job
    return (f"{'PASSED' if ok else 'FAILED'}: node killed after {kill.get('blocks_written_at_kill')} "
            f"of {result['blocks']} blocks; {check['rows']} rows, {check['missing']} missing, "
            f"{check['duplicated']} duplicated, in {len(result['runs'])} run(s)")


def markdown(result: dict) -> str:
    rows = "\n".join(
        f"| {index + 1} | {run['listed']} | {run['skipped']} | {run['classified']} | "
        f"{run['failed']} | {run['check']['missing']} | {run['check']['duplicated']} | "
        f"{run['exit_code']} | {run['seconds']} |" for index, run in enumerate(result["runs"]))
    return f"""# classify-archive on two Ray nodes, the second killed mid-job

{verdict(result)}.

Regenerate: `{result['command']}` ({result['date']}, {result['machine']['cpu_model']},
{result['machine']['cores']} cores, load average at start {result['machine']['load_average_start']}).

A `ray.cluster_utils.Cluster` on 127.0.0.1: a head and a second node, one CPU each, so the
two actors run one per node. {result['scans']} scans in batches of {result['batch_size']}
({result['blocks']} blocks). After {result['kill'].get('blocks_written_at_kill')} blocks were
written the second node was removed without a graceful drain (its raylet and actor killed),
and a fresh node joined. Ray Data restarts the lost actor and retries its batches, which
rewrite the same deterministically named blocks.

| run | listed | already done | classified | failed | missing | duplicated | exit | s |
|---|---|---|---|---|---|---|---|---|
{rows}

{result['notice']}
"""


if __name__ == "__main__":
    typer.run(main)
