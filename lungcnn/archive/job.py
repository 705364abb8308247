"""The Ray Data pipeline: a dataset of paths, classified in `map_batches` by a pool of actors
that each load the model once, each batch written by its actor as one Parquet block.

Fault tolerance is Ray Data's own (its actor pools default to max_restarts=-1 and
max_task_retries=-1): an actor that dies is restarted and its unfinished tasks are retried
with the same input blocks, so the same batches are formed again and rewrite the same
deterministically named blocks (`output.part_name`). A block whose task keeps failing is
left out rather than failing the job; the final count check then reports its paths missing
and a re-run of the same command classifies just those.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data

import lungcnn
from lungcnn.edge.api import Classifier
from lungcnn.edge.errors import first_line
from lungcnn.edge.manifest import manifest_path
from lungcnn.edge.quiet import drop_stderr_lines
from lungcnn.edge.report import ScanResult
from lungcnn.edge.runtime import companion_files
from lungcnn.archive.output import result_row, result_schema, write_part

LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
# Ray's core worker logs an `E` line for every actor of Ray Data's pool: their constructor
# arguments are object references while the actors may be restarted (ray-project/ray#53727).
# Those are Ray Data's own (its map transformer, holding our class and model reference, and
# its data context), held by its operator for the whole execution, and the driver holds the
# model's reference until the job ends (`classify_paths`): the line warns of nothing here.
ACTOR_ARGUMENTS_NOTICE = re.compile(
    rb"\[[\d-]+ [\d:,]+ E \d+ \d+\] core_worker\.cc:\d+: Actor with class name: "
    rb"'MapWorker\(MapBatches\(ArchiveClassifier\)\)' and ID: '\w+' has constructor "
    rb"arguments in the object store and max_restarts > 0\.")


class ClusterError(RuntimeError):
    """Ray could not be started or reached (one line)."""


@dataclass(frozen=True)
class ModelFiles:
    """The model and its manifest as bytes: what travels to the workers via the object
    store, so they need no shared filesystem or copy of the model."""

    model_name: str
    model: bytes
    manifest_name: str
    manifest: bytes
    companions: tuple[tuple[str, bytes], ...] = ()  # contract 2: the segmenter and its manifest

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()

    @classmethod
    def read(cls, model_path: Path) -> ModelFiles:
        manifest = manifest_path(model_path)
        return cls(model_path.name, model_path.read_bytes(), manifest.name,
                   manifest.read_bytes(),
                   tuple((path.name, path.read_bytes()) for path in companion_files(model_path)))


class ArchiveClassifier:
    """The callable class of `map_batches`: one instance per actor, so the interpreter and
    manifest load once per worker. Each batch becomes one Parquet block under `out_dir`;
    what returns to the driver is only each path's status."""

    def __init__(self, model_ref: list, out_dir: str):
        files: ModelFiles = ray.get(model_ref[0])  # nested, so the driver keeps it alive
        self._model_dir = tempfile.TemporaryDirectory(prefix="lungcnn-archive-")
        folder = Path(self._model_dir.name)
        (folder / files.manifest_name).write_bytes(files.manifest)
        (folder / files.model_name).write_bytes(files.model)
        for name, content in files.companions:
            (folder / name).write_bytes(content)
        # One interpreter thread per actor: Ray gives each actor one CPU.
        self._classifier = Classifier(folder / files.model_name, threads=1)
        self._schema = result_schema(self._classifier.class_names)
        self._out_dir = Path(out_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [self._row(str(path), error) for path, error in
                zip(batch["path"], batch["input_error"])]
        part = write_part(self._out_dir, rows, self._schema)
        return {"path": [row["path"] for row in rows],
                "status": [row["status"] for row in rows],
                "part": [part] * len(rows)}

    def _row(self, path: str, input_error: str | None) -> dict:
        if input_error:
            return result_row(path, None, ScanResult(Path(path), error=str(input_error)))
        try:
            result, sha256 = self._classify(path)
        except Exception as error:  # noqa: BLE001 - one bad scan must not fail its batch
            result, sha256 = ScanResult(Path(path), error=f"internal error: "
                                        f"{type(error).__name__}: {first_line(error)}"), None
        return result_row(path, sha256, result)

    def _classify(self, path: str) -> tuple[ScanResult, str | None]:
        """Read the file once, hash the bytes and classify those same bytes."""
        try:
            data = Path(path).read_bytes()
        except OSError:
            # The contract reads it again and names the failure as edge-classify does.
            return self._classifier.classify(path), None
        return self._classifier.classify(data, name=path), hashlib.sha256(data).hexdigest()


@contextmanager
def ray_session(address: str, workers: int | None) -> Iterator[None]:
    """Connect to Ray for the job: `local` starts a private instance (one CPU per worker, a
    small object store, no dashboard; on 127.0.0.1 only when `cli.keep_ray_on_loopback` ran
    before Ray was imported), `auto` joins the cluster of this machine,
    `ray://host:port` a remote one. An already initialised Ray (tests, notebooks) is used as
    it is and left running: it must have been started with `code_runtime_env()`."""
    if ray.is_initialized():
        yield
        return
    # Ray tells every new local cluster that it has enabled token authentication: a notice,
    # not a problem, and it read like a failure at the top of every run.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR)
    try:
        if address == "local":
            ray.init(address="local", num_cpus=workers or os.cpu_count() or 1,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
                     runtime_env=code_runtime_env())
        else:
            ray.init(address=address, runtime_env=code_runtime_env())
    except Exception as error:  # noqa: BLE001 - Ray raises several types; all are one line
        raise ClusterError(f"cannot start or reach Ray at {address}: "
                           f"{first_line(error)}") from None
    drop_stderr_lines(ACTOR_ARGUMENTS_NOTICE)  # after Ray's own processes have started
    try:
        yield
    finally:
        ray.shutdown()


def classify_paths(paths: list[str], errors: list[str | None], out_dir: Path,
                   model: ModelFiles, *, batch_size: int, workers: int | None) -> int:
    """Classify `paths` on the connected cluster, writing blocks under `out_dir`; the number
    of rows the pipeline returned (the count check reads the blocks themselves)."""
    pool_size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    context = ray.data.DataContext.get_current()  # a dataset copies it when created
    errored_blocks, context.max_errored_blocks = context.max_errored_blocks, -1
    model_ref = ray.put(model)  # held here until the job ends, so restarted actors find it
    blocks = _blocks(paths, errors, batch_size)
    pool_size = min(pool_size, len(blocks))  # an actor without a block only costs a warning
    dataset = ray.data.from_arrow(blocks)
    results = dataset.map_batches(
        ArchiveClassifier,
        # Absolute: workers do not run in the driver's working directory.
        fn_constructor_kwargs={"model_ref": [model_ref], "out_dir": str(out_dir.resolve())},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool_size),
        num_cpus=1,
    )
    try:  # -1: a block that fails every retry is left out, and reported missing
        return sum(len(batch["path"]) for batch in results.iter_batches(batch_size=None))
    finally:
        context.max_errored_blocks = errored_blocks


def code_runtime_env() -> dict:
    """Ship this checkout's `lungcnn` package to the workers with the job (Ray uploads local
    folders only at the job level, in `ray.init`), so every node runs the driver's code; the
    nodes need only its dependencies (`pip install 'lungcnn[scale]'`)."""
    return {"py_modules": [str(Path(lungcnn.__file__).resolve().parent)]}


def _blocks(paths: list[str], errors: list[str | None], batch_size: int) -> list[pa.Table]:
    """One Arrow block per batch, so each actor task gets whole batches."""
    return [pa.table({"path": pa.array(paths[start:start + batch_size], pa.string()),
                      "input_error": pa.array(errors[start:start + batch_size], pa.string())})
            for start in range(0, len(paths), batch_size)]
