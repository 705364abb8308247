"""TensorFlow's log noise (issue 22, item 21): `lungcnn train` and `lungcnn convert` print
none of TensorFlow's known-harmless native lines, and the filter passes every other line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOISE = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl|fully_quantize: )")


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env={**environment, "PYTHONPATH": str(REPO)}, timeout=600, **kwargs)


def test_only_the_known_harmless_lines_are_dropped_and_the_rest_keep_their_order():
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796170488.455998    4520 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1796170509.910285    4520 node_def_util.cc:682] NodeDef mentions attribute "
        "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; "
        "signature=input_dataset:variant -> handle:variant> This may be expected if your graph "
        "generating binary is newer  than this binary. Unknown attributes will be ignored. "
        "NodeDef: {{node ParallelMapDatasetV2/_15}}",
        "E0000 00:00:1796179444.563553    5248 node_def_util.cc:682] NodeDef mentions attribute "
        "Truncate which is not in the op definition: Op<name=Identity; signature=input:T -> "
        "output:T; attr=T:type> This may be expected if your graph generating binary is newer  "
        "than this binary. Unknown attributes will be ignored. NodeDef: {{node unnamed}}",
        "E0000 00:00:1796179444.563553    5248 node_def_util.cc:682] NodeDef mentions attribute "
        "Truncate which is not in the op definition, and something else went wrong",
        "first real line",
        "E0000 00:00:1796170514.611806    4520 util.cc:131] oneDNN supports DT_BOOL only on "
        "platforms with AVX-512. Falling back",
        "E0000 00:00:1796174521.672926    7275 util.cc:131] oneDNN supports DT_INT32 only on "
        "platforms with AVX-512. Falling back",  # printed by `lungcnn segmenter`
        "E0000 00:00:1796170514.611806    4520 kernel.cc:12] a real native error",
        "W1202 10:11:12.123456    6153 tf_tfl_flatbuffer_helpers.cc:365] Ignored output_format.",
        "fully_quantize: 0, inference_type: 6, input_inference_type: UINT8",
    ]
    code = ("import os, sys\nfrom lungcnn.trainer.tf_log import quiet_tensorflow\n"
            "quiet_tensorflow()\n"
            f"for line in {lines!r}:\n    os.write(2, (line + '\\n').encode())\n"
            "print('from python', file=sys.stderr)\nraise SystemExit('last words')\n")
    completed = run(["-c", code])
    assert completed.returncode == 1
    assert completed.stderr.splitlines() == [
        "E0000 00:00:1796179444.563553    5248 node_def_util.cc:682] NodeDef mentions attribute "
        "Truncate which is not in the op definition, and something else went wrong",
        "first real line", "E0000 00:00:1796170514.611806    4520 kernel.cc:12] a real "
        "native error", "from python", "last words"]


def test_a_tiny_train_convert_and_calibrate_print_no_tensorflow_noise(tmp_path, dataset_dir):
    pytest.importorskip("tensorflow")
    run_dir = tmp_path / "run"
    train = run(["-m", "lungcnn", "train", "--arch", "reference", "--data", str(dataset_dir),
                 "--out", str(run_dir), "--epochs", "1", "--limit-per-class", "3",
                 "--size", "32"])
    assert train.returncode == 0, train.stderr
    convert = run(["-m", "lungcnn", "convert", str(run_dir / "model.keras"),
                   "--quantize", "int8"])
    assert convert.returncode == 0, convert.stderr
    calibrate = run(["-m", "lungcnn", "calibrate", str(run_dir)])
    assert calibrate.returncode == 0, calibrate.stderr
    for completed in (train, convert, calibrate):
        noise = [line for line in completed.stderr.splitlines() if NOISE.match(line)]
        assert noise == [], noise
    assert (run_dir / "model_int8.tflite").is_file()
