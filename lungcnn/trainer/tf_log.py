"""TensorFlow's native log without the lines known to be harmless; every other line passes.

TensorFlow (2.16 and later) logs through absl before absl is initialised, so
TF_CPP_MIN_LOG_LEVEL does not hold back the lines it prints on import (`WARNING: All log
messages before absl::InitializeLog() ...`, `I0000 ... port.cc:153] oneDNN custom operations
are on ...`), and tf.data, Grappler and the TFLite converter print `E0000`/`W0000` lines and
a `fully_quantize: ...` line about things that are not failures. A new user takes them for
errors. So the commands that use TensorFlow (train, loso, loso-ensemble, convert, calibrate,
segmenter, bench, probe) call `quiet_tensorflow()` before importing it: absl's info and
warning lines and the known-harmless error lines are dropped from stderr; Python tracebacks,
our one-line errors and any other native error pass.
"""

from __future__ import annotations

import os
import re

from lungcnn.edge.quiet import drop_stderr_lines

# An absl native log line: severity, date, time, thread, file:line]
_ABSL_LINE = r"[{}]\d{{4}} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "
HARMLESS = re.compile("|".join([
    _ABSL_LINE.format("IW"),
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    # a graph saved by a newer TensorFlow part than the one reading it: "Unknown attributes
    # will be ignored" (use_unbounded_threadpool from tf.data, Truncate from the converter)
    _ABSL_LINE.format("E") + r"NodeDef mentions attribute \w+ which is not in the op "
    r"definition: .* Unknown attributes will be ignored\.",
    _ABSL_LINE.format("E") + r"oneDNN supports DT_\w+ only on platforms with AVX-512",
    r"fully_quantize: \d+, inference_type: \d+, input_inference_type: ",
]).encode())


def quiet_tensorflow() -> None:
    """TF_CPP_MIN_LOG_LEVEL=2 (unless set) and HARMLESS dropped from stderr, from now on in
    this process; call before TensorFlow is imported. Calling it again does nothing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    drop_stderr_lines(HARMLESS)
