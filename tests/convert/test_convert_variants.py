"""Every variant of the tiny run: files, manifests, parity reports, and what int8 really is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lungcnn.convert.quantize import QUANTIZATIONS
from lungcnn.edge.manifest import read_manifest, sha256_file

pytest.importorskip("tensorflow")
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

# Tolerances: float32 is the same graph (float round-off only); float16/dynamic/int8 change
# weights or activations, and on the tiny model probabilities move by well under 0.05.
FLOAT32_MAX_DIFF = 1e-4
QUANTIZED_MAX_DIFF = 0.05


def _run_manifest(tiny_keras_run):
    return json.loads((tiny_keras_run / "manifest.json").read_text())


def _interpreter(path):
    interpreter = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    return interpreter


def test_every_variant_is_written_beside_the_source(tiny_tflite_models, tiny_keras_run):
    assert set(tiny_tflite_models) == set(QUANTIZATIONS)
    for quantization, path in tiny_tflite_models.items():
        assert path == tiny_keras_run / f"model_{quantization}.tflite"
        manifest = read_manifest(path)
        assert manifest["kind"] == "tflite"
        assert manifest["quantization"] == quantization
        assert manifest["model_file"] == path.name
        assert manifest["tflite_sha256"] == sha256_file(path)
    assert not list(tiny_keras_run.glob(".*.tmp"))


def test_manifest_matches_the_interpreter(tiny_tflite_models):
    for path in tiny_tflite_models.values():
        manifest = read_manifest(path)
        interpreter = _interpreter(path)
        outputs = {int(d["shape"][-1]): d for d in interpreter.get_output_details()}
        classes, dim = len(manifest["class_names"]), manifest["features_output"]["dim"]
        assert sorted(outputs) == sorted((classes, dim))  # the tiny model's 8 pooled features
        for section, detail in (
            ("input", interpreter.get_input_details()[0]),
            ("output", outputs[classes]),
            ("features_output", outputs[dim]),
        ):
            scale, zero_point = detail["quantization"]
            assert manifest[section]["dtype"] == np.dtype(detail["dtype"]).name
            assert manifest[section]["shape"] == detail["shape"].tolist()
            assert manifest[section]["quantization"] == {"scale": scale, "zero_point": zero_point}
        assert manifest["input"]["shape"] == [
            1,
            manifest["input"]["size"],
            manifest["input"]["size"],
            1,
        ]


def test_manifest_carries_the_run_it_came_from(tiny_tflite_models, tiny_keras_run):
    run = _run_manifest(tiny_keras_run)
    for quantization, path in tiny_tflite_models.items():
        manifest = read_manifest(path)
        assert manifest["class_names"] == run["class_names"]
        assert manifest["input"]["size"] == run["input"]["size"]
        assert manifest["training"]["split"] == run["split"]
        assert manifest["training"]["arch"] == run["arch"]
        assert manifest["source_model"]["path"] == "model.keras"
        assert manifest["source_model"]["sha256"] == run["model_sha256"]
        assert {"tensorflow", "keras", "ai-edge-litert"} <= set(manifest["versions"])
        assert manifest["converter"]["quantization"] == quantization
        representative = manifest["representative_set"]
        if quantization == "int8":
            assert representative["source"] == "run split 'train'"
            assert representative["count"] == len(run["split"]["train"])
            assert len(representative["files_sha256"]) == 64
        else:
            assert representative is None


def test_parity_reports_are_present_and_sane(tiny_tflite_models, tiny_keras_run):
    run = _run_manifest(tiny_keras_run)
    keras_by_split = {}
    for quantization, path in tiny_tflite_models.items():
        parity = read_manifest(path)["parity"]
        assert parity["runtime"].startswith("ai_edge_litert")
        for split in ("val", "test"):
            report = parity[split]
            assert report["count"] == len(run["split"][split])
            assert 0.0 <= report["mean_abs_prob_diff"] <= report["max_abs_prob_diff"] <= 1.0
            assert 0.0 <= report["tflite"]["accuracy"] <= 1.0
            assert report["skipped"] == []
            # The tiny run's manifest names no sources: every scan is "unknown".
            assert {k: v["count"] for k, v in report["by_source"].items()} == {
                "unknown": report["count"]}
            assert report["by_source"]["unknown"]["tflite"] == report["tflite"]
            assert len(report["disagreements"]) == round(
                (1 - report["agreement"]) * report["count"]
            )
            # The Keras side is the same model for every variant.
            assert keras_by_split.setdefault(split, report["keras"]) == report["keras"]
            limit = FLOAT32_MAX_DIFF if quantization == "float32" else QUANTIZED_MAX_DIFF
            assert report["max_abs_prob_diff"] < limit, (quantization, split)
            assert report["agreement"] >= 5 / 6, (quantization, split)


def test_int8_is_full_integer_with_uint8_io(tiny_tflite_models):
    interpreter = _interpreter(tiny_tflite_models["int8"])
    input_detail = interpreter.get_input_details()[0]
    output_details = interpreter.get_output_details()
    assert input_detail["dtype"] == np.uint8
    assert all(detail["dtype"] == np.uint8 for detail in output_details)
    io_indices = {input_detail["index"], *(detail["index"] for detail in output_details)}
    for tensor in interpreter.get_tensor_details():
        dtype = np.dtype(tensor["dtype"])
        assert dtype.kind in "iu", (tensor["name"], dtype)  # no float tensor at all
        if dtype == np.uint8:
            assert tensor["index"] in io_indices, tensor["name"]
    for op in interpreter._get_ops_details():  # no public API lists the ops
        assert op["op_name"] != "DEQUANTIZE"
        for index in [*op["inputs"], *op["outputs"]]:
            if index >= 0:
                assert np.dtype(interpreter._get_tensor_details(index, 0)["dtype"]).kind in "iu"


def test_int8_uint8_input_represents_every_raw_pixel(tiny_tflite_models):
    """The device feeds decoded 0-255 pixels; quantizing them with the recorded scale and
    zero point must neither clip nor lose more than half a step."""
    quantization = read_manifest(tiny_tflite_models["int8"])["input"]["quantization"]
    scale, zero_point = quantization["scale"], quantization["zero_point"]
    pixels = np.arange(256, dtype=np.float64)
    quantized = np.rint(pixels / scale + zero_point)
    assert quantized.min() >= 0 and quantized.max() <= 255
    assert np.abs((quantized - zero_point) * scale - pixels).max() <= scale / 2 + 1e-9
