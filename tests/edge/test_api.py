"""The Python API (`from lungcnn import Classifier`): the same records as the CLI's --json,
array input, heatmaps, and no TensorFlow on import."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lungcnn import Classifier
from lungcnn.edge import cli
from lungcnn.edge.decode import ScanError, read_grayscale
from lungcnn.edge.report import NOTICE


def test_classify_file_is_the_cli_json_record(int8_model, scan_files):
    classifier = Classifier(int8_model)
    result = CliRunner().invoke(cli.app, ["--json", "--model", str(int8_model),
                                          *map(str, scan_files)])
    cli_records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [classifier.classify(path).to_dict() for path in scan_files] == cli_records


def test_classify_array_matches_the_decoded_file(int8_model, scan_files):
    classifier = Classifier(int8_model)
    from_file = classifier.classify(scan_files[0]).to_dict()
    from_array = classifier.classify(read_grayscale(scan_files[0]), name=scan_files[0]).to_dict()
    assert from_array == from_file
    rgb = np.repeat(read_grayscale(scan_files[0])[:, :, None], 3, axis=2)
    assert classifier.classify(rgb).to_dict()["label"] == from_file["label"]
    assert classifier.classify(rgb).to_dict()["file"] == "<array>"


def test_bad_scans_become_error_records(int8_model, tmp_path):
    classifier = Classifier(int8_model)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    record = classifier.classify(bad).to_dict()
    assert record["status"] == "error" and record["label"] is None
    assert "not a supported image format" in record["error"] and record["notice"] == NOTICE
    assert classifier.classify(np.zeros((4, 4), dtype=np.float32)).to_dict()["status"] == "error"


def test_heatmap_returns_and_writes_the_overlay(int8_model, scan_files, tmp_path):
    classifier = Classifier(int8_model)
    out = tmp_path / "scan.heatmap.png"
    image = classifier.heatmap(scan_files[0], out)
    with Image.open(out) as written:
        assert written.size == image.size and "Not a medical device" in written.text["Disclaimer"]
    with pytest.raises(ScanError):
        classifier.heatmap(tmp_path / "missing.png")


def test_import_lungcnn_and_classify_need_no_tensorflow(int8_model, scan_files):
    code = (
        "import sys, lungcnn\n"
        f"lungcnn.Classifier({str(int8_model)!r}).classify({str(scan_files[0])!r})\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_classify_bytes_is_the_file_record(int8_model, scan_files, tmp_path):
    classifier = Classifier(int8_model)
    data = scan_files[0].read_bytes()
    assert (classifier.classify(data, name=scan_files[0]).to_dict()
            == classifier.classify(scan_files[0]).to_dict())
    assert classifier.classify(b"").to_dict()["error"] == "empty file"
    assert classifier.classify(b"GIF89a....").to_dict()["status"] == "error"
