"""Timing and memory measurements in fresh processes: `python -m lungcnn.benchmarks.worker SPEC`.

A fresh process per (model, thread count) keeps the numbers honest: TensorFlow's thread
pools are fixed once it starts, and the peak memory of a process that has loaded one runtime
and classified one scan is what a user of that path needs. The LiteRT path never imports
TensorFlow (reported as `tensorflow_loaded`).

The parent starts every worker first (one at a time, so load times are not contended), then
asks them for timed calls in rounds, each round visiting every worker, so that load from
other processes on a shared machine falls on all models alike.

Protocol: SPEC is a JSON object {"model": path, "threads": int, "scans": [paths]}. The worker
loads the model, classifies the first scan and prints one JSON line (the cost numbers). Then
each JSON line on stdin, {"kind": "invoke" | "end_to_end" | "batched", "calls": int,
"warmup": int, "batch": int}, is answered by one JSON line {"seconds": [...]}. EOF ends it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lungcnn.benchmarks.runtimes import KERAS, open_classifier, runtime_of
from lungcnn.benchmarks.timing import time_calls


class WorkerError(RuntimeError):
    """A measurement process failed; the message is its last line of error output."""


class Worker:
    """A running measurement process for one model at one thread count."""

    def __init__(self, model: Path, threads: int, scans: list[Path]):
        self.model, self.threads = model, threads
        self._stderr = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        spec = {"model": str(model), "threads": threads, "scans": [str(s) for s in scans]}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "lungcnn.benchmarks.worker", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env,
        )
        self.cost = self._answer()

    def time(self, kind: str, calls: int, warmup: int, batch: int = 1) -> np.ndarray:
        request = {"kind": kind, "calls": calls, "warmup": warmup, "batch": batch}
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # the process died; _answer reports why
        return np.asarray(self._answer()["seconds"], dtype=np.float64)

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stderr.close()

    def _answer(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._stderr.seek(0)
            errors = self._stderr.read().strip().splitlines() or [f"exit code {self._process.returncode}"]
            raise WorkerError(f"{self.model}: measurement process failed ({errors[-1]})")
        return json.loads(line)


def _model_input(model, path) -> np.ndarray:
    """A file through the model's own contract: decode, then prepare."""
    return model.model_input(model.preprocessor.decode(path).gray)


def serve(spec: dict, requests, answers) -> None:
    """The worker side: load, report cost, then answer timing requests until EOF."""
    model, threads, files = spec["model"], spec["threads"], spec["scans"]
    keras_path = runtime_of(model) == KERAS
    import_s = _timed(lambda: _import_runtime(keras_path, threads))[1]
    classifier, load_s = _timed(lambda: open_classifier(model, threads))
    first = _model_input(classifier, files[0])
    probabilities, first_call_s = _timed(lambda: _probabilities(classifier, first))
    _send(answers, {
        "import_s": import_s,
        "load_s": load_s,
        "first_call_s": first_call_s,
        "peak_rss_mb": peak_rss_mb(),
        "tensorflow_loaded": "tensorflow" in sys.modules,
        "probabilities": probabilities.tolist(),
    })
    inputs = [_model_input(classifier, path) for path in files]
    calls = {
        "invoke": lambda i: _probabilities(classifier, inputs[i % len(inputs)]),
        "end_to_end": lambda i: _probabilities(classifier,
                                               _model_input(classifier, files[i % len(files)])),
    }
    for line in requests:
        request = json.loads(line)
        if request["kind"] == "batched":
            call = _batched_call(classifier, inputs, request["batch"])
        else:
            call = calls[request["kind"]]
        seconds = time_calls(call, request["calls"], request["warmup"])
        _send(answers, {"seconds": seconds.tolist()})


def _probabilities(classifier, scan: np.ndarray) -> np.ndarray:
    """One scan through the model (`edge.model.Model.run`), as a user classifies one image."""
    return classifier.run(scan[None])[0][0]


def _batched_call(classifier, inputs: list[np.ndarray], batch: int):
    stacked = np.stack([inputs[i % len(inputs)] for i in range(batch)])
    return lambda _: classifier.run(stacked)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux keeps ru_maxrss across exec, so a child forked from the (TensorFlow-sized)
    benchmark process would report the parent's peak; the kernel's high-water mark of the
    current process image, VmHWM, does not. ru_maxrss is the fallback elsewhere (KiB on
    Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1024**2 if sys.platform == "darwin" else maxrss / 1024


def _import_runtime(keras_path: bool, threads: int) -> None:
    if keras_path:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        import keras  # noqa: F401
    else:
        from lungcnn.edge.runtime import interpreter_class

        interpreter_class()


def _send(stream, payload: dict) -> None:
    stream.write(json.dumps(payload) + "\n")
    stream.flush()


def _timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def _main() -> None:
    # Our answers go to the real stdout; anything a library prints goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(json.loads(sys.argv[1]), sys.stdin, answers)


if __name__ == "__main__":
    _main()
