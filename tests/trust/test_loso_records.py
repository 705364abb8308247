"""The held-out records of `lungcnn loso`: what the selective-prediction figures read, and
folds whose records predate a field are classified again without training."""

from __future__ import annotations

import json
import shutil

from lungcnn.benchmarks.loso import RECORD_FIELDS, RECORDS, LosoConfig, run_fold
from lungcnn.edge.contract import CLASS_NAMES
from lungcnn.trainer.config import TrainConfig
from lungcnn.trainer.dataset import Sample


def test_old_records_are_classified_again_with_every_field(calibrated_int8, dataset_dir,
                                                           tmp_path):
    fold_dir = tmp_path / "runs" / "held"
    fold_dir.mkdir(parents=True)
    for suffix in (".tflite", ".json"):
        shutil.copy2(calibrated_int8.with_suffix(suffix), fold_dir / f"model_int8{suffix}")
    normals = sorted(p.name for p in (dataset_dir / "train" / "Normal").iterdir())[:2]
    samples = [Sample(f"train/Normal/{normals[0]}", 1, "held", "pediatric"),
               Sample(f"train/Normal/{normals[1]}", 1, "kept", "adult")]
    old = {"source": "held", "records": [{"file": samples[0].rel_path, "status": "ok"}]}
    (fold_dir / RECORDS).write_text(json.dumps(old))
    config = LosoConfig("tiny", (), tmp_path / "runs", TrainConfig())
    fold = run_fold(config, None, dataset_dir, samples, "held", log=lambda line: None)
    (record,) = fold["records"]
    assert set(RECORD_FIELDS) <= set(record) and record["status"] == "ok"
    assert set(record["probabilities"]) == set(CLASS_NAMES)
    assert record["nearest_class"] in CLASS_NAMES and record["covered"] is False
    assert fold["trained_on"] == ["kept"] and fold["thresholds"]["temperature"] > 0
    assert json.loads((fold_dir / RECORDS).read_text()) == fold  # and written back
    again = run_fold(config, None, dataset_dir, samples, "held", log=lambda line: None)
    assert again == fold  # complete records are reused
