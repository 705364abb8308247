"""Contract 2 end to end with real (tiny) models: a segmenter trained on synthetic lungs, a
classifier whose manifest names it, the trainer and the device making the same inputs, and
what happens when the segmenter is missing, altered, or finds no lungs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lungcnn.edge.api import Classifier
from lungcnn.edge.interpreter import ModelError
from lungcnn.edge.segmenter import LungSegmenter

SIDE = 32


def synthetic_scan(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A bright chest with two dark lungs (ellipses) and its mask."""
    image = Image.new("L", (side, side), int(rng.integers(150, 200)))
    mask = Image.new("L", (side, side), 0)
    top, bottom = side * rng.uniform(0.1, 0.25), side * rng.uniform(0.75, 0.9)
    for left, right in ((0.1, 0.45), (0.55, 0.9)):
        box = (side * left, top, side * right, bottom)
        ImageDraw.Draw(image).ellipse(box, fill=int(rng.integers(40, 90)))
        ImageDraw.Draw(mask).ellipse(box, fill=255)
    noisy = np.asarray(image, np.float32) + rng.normal(0, 6, (side, side))
    return np.clip(noisy, 0, 255).astype(np.uint8), (np.asarray(mask) > 127).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_segmenter(tmp_path_factory) -> Path:
    """A tiny U-Net trained on synthetic lungs, converted to int8 with its manifest."""
    pytest.importorskip("tensorflow")
    from lungcnn.convert.segmenter import fitted_limits, int8_dice, write_segmenter
    from lungcnn.trainer.segmenter import SegmenterConfig, train_segmenter
    from lungcnn.trainer.segmenter_data import MaskPair

    rng = np.random.default_rng(0)
    pairs = [MaskPair("synthetic", str(i), *synthetic_scan(rng, SIDE)) for i in range(32)]
    config = SegmenterConfig(input_size=SIDE, widths=(4, 8), epochs=30, batch_size=8)
    out = tmp_path_factory.mktemp("segmenter")
    model = train_segmenter(pairs, config, out, log=lambda line: None)
    images, masks = np.stack([p.image for p in pairs]), np.stack([p.mask for p in pairs])
    path = write_segmenter(model, images, out, fitted_limits(masks), {"training": {}})
    assert int8_dice(path, images, masks).mean() > 0.8
    return path


@pytest.fixture(scope="session")
def lung_run(tiny_keras_run, tiny_segmenter, tmp_path_factory) -> Path:
    """The tiny run re-declared as contract 2 on the tiny segmenter, converted to int8."""
    from lungcnn.convert.converter import ConvertOptions, convert_keras_run
    from lungcnn.edge.contract import LungFieldInput, ScanSpec
    from lungcnn.edge.manifest import sha256_file, write_json_atomic

    run_dir = tmp_path_factory.mktemp("lung_run")
    shutil.copy2(tiny_keras_run / "model.keras", run_dir / "model.keras")
    LungSegmenter(tiny_segmenter).copy_to(run_dir)
    manifest = json.loads((tiny_keras_run / "manifest.json").read_text())
    lung_field = LungFieldInput(tiny_segmenter.name, sha256_file(tiny_segmenter))
    manifest["input"] = ScanSpec(manifest["input"]["size"], lung_field).to_json()
    write_json_atomic(run_dir / "manifest.json", manifest)
    convert_keras_run(run_dir / "model.keras", ConvertOptions(quantizations=("int8",)))
    return run_dir


def test_segmenter_manifest_carries_its_limits_and_hash(tiny_segmenter):
    manifest = json.loads(tiny_segmenter.with_suffix(".json").read_text())
    assert manifest["kind"] == "lung-field segmenter" and manifest["input"]["size"] == SIDE
    assert 0 < manifest["lung_field"]["min_area"] < manifest["lung_field"]["max_area"] < 1
    segmenter = LungSegmenter(tiny_segmenter)
    assert segmenter.probabilities(np.zeros((SIDE, SIDE), np.uint8)).shape == (SIDE, SIDE)


def test_converted_model_names_its_segmenter_and_finds_it_beside_itself(lung_run, tmp_path):
    model = lung_run / "model_int8.tflite"
    section = json.loads(model.with_suffix(".json").read_text())["input"]
    assert section["contract_version"] == 2 and section["lung_field"]["equalize"] is True
    scan = synthetic_scan(np.random.default_rng(5), 200)[0]
    record = Classifier(model).classify(scan).to_dict()
    assert record["status"] == "ok" and record["label"]


def test_no_lungs_is_flagged_with_its_reason(lung_run):
    record = Classifier(lung_run / "model_int8.tflite").classify(
        np.zeros((120, 120), np.uint8)).to_dict()  # the tiny segmenter finds no lung in black
    assert record["flag"] == "out_of_distribution"
    assert record["reason"].startswith("no plausible lung fields")


def test_trainer_and_device_make_the_same_inputs(lung_run, tiny_segmenter, dataset_dir):
    from lungcnn.trainer.config import TrainConfig
    from lungcnn.trainer.dataset import decode_scans, list_split
    from lungcnn.trainer.run import preprocessor_for

    samples = list_split(dataset_dir, "test")[::10]
    config = TrainConfig(input_size=64, lung_field=str(tiny_segmenter))
    trained_on = decode_scans(dataset_dir, samples, preprocessor_for(config)).images
    device = Classifier(lung_run / "model_int8.tflite")
    for sample, image in zip(samples, trained_on):
        gray = device.decode(dataset_dir / sample.rel_path).gray
        np.testing.assert_array_equal(device.runtime.model_input(gray), image)


def test_a_missing_or_altered_segmenter_is_a_one_line_model_error(lung_run, tmp_path):
    for name in ("model_int8.tflite", "model_int8.json"):
        shutil.copy2(lung_run / name, tmp_path / name)
    with pytest.raises(ModelError, match="segmenter not found"):
        Classifier(tmp_path / "model_int8.tflite")
    segmenter = next(lung_run.glob("lungseg*.tflite"))
    LungSegmenter(segmenter).copy_to(tmp_path)
    altered = tmp_path / segmenter.name
    altered.write_bytes(altered.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="sha256") as error:
        Classifier(tmp_path / "model_int8.tflite")
    assert "\n" not in str(error.value)


def test_segmenter_command_trains_converts_and_scores(tmp_path):
    pytest.importorskip("tensorflow")
    from typer.testing import CliRunner

    from lungcnn.cli import app

    rng = np.random.default_rng(1)
    rows = []
    for index in range(12):
        source = "site-a" if index % 2 else "site-b"
        image, mask = synthetic_scan(rng, 64)
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "masks" / source).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "images" / f"{index}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "masks" / source / f"{index}.png")
        rows.append({"file": f"images/{index}.png", "label": "Normal", "source": source})
    with (tmp_path / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file", "label", "source"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["segmenter", "--data", str(tmp_path), "--out", str(out),
                                      "--epochs", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "lungseg_int8.json").read_text())
    assert set(manifest["held_out_dice"]["by_source"]) == {"site-a", "site-b"}
    assert "held-out Dice (int8)" in result.output
    empty = CliRunner().invoke(app, ["segmenter", "--data", str(tmp_path / "images"),
                                     "--out", str(out)])
    assert empty.exit_code == 2 and "image/mask pairs" in empty.output


BAD_VALUES = [None, True, 0, -1, 1e308, float("nan"), "", "../lungseg.tflite", [], {}, "a" * 64]


@pytest.mark.parametrize("field", ["contract_version", "size", "lung_field", "segmenter",
                                   "segmenter_sha256", "margin", "equalize", "mask_outside"])
@pytest.mark.parametrize("value", BAD_VALUES, ids=[repr(v)[:12] for v in BAD_VALUES])
def test_a_damaged_input_section_is_refused_in_one_line_or_still_works(lung_run, tmp_path,
                                                                       field, value):
    for path in lung_run.glob("*.tflite"):
        shutil.copy2(path, tmp_path / path.name)
        shutil.copy2(path.with_suffix(".json"), tmp_path / path.with_suffix(".json").name)
    manifest_file = tmp_path / "model_int8.json"
    manifest = json.loads(manifest_file.read_text())
    section = manifest["input"] if field in manifest["input"] else manifest["input"]["lung_field"]
    section[field] = value
    manifest_file.write_text(json.dumps(manifest))
    try:
        classifier = Classifier(tmp_path / "model_int8.tflite")
    except ModelError as error:
        assert str(error) and "\n" not in str(error)
        return
    record = classifier.classify(synthetic_scan(np.random.default_rng(2), 120)[0]).to_dict()
    assert record["status"] == "ok"
