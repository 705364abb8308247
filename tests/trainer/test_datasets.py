"""Datasets described by manifests, combined runs, the source-aware split, and the
multi-source data check."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lungcnn.trainer.config import TrainConfig
from lungcnn.trainer.datacheck import data_app
from lungcnn.trainer.dataset import DatasetError, Fingerprint, Sample
from lungcnn.trainer.split import duplicate_groups, split_train_val
from lungcnn.trainer.datasets import combine, read_dataset
from lungcnn.trainer.run import prepare_data

MULTISOURCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "multisource"


def write_manifest(folder: Path, rows: list[str], header="file,label,source,age_group,split"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


@pytest.fixture()
def small_multisource(tmp_path) -> Path:
    """Four real scans of covid-cxnet and of openist, and two jsrt scans of each finding, of the
    shared multi-source set, with its manifest rows."""
    if not (MULTISOURCE / "manifest.csv").is_file():
        pytest.skip(f"the shared multi-source set is not at {MULTISOURCE}")
    lines = (MULTISOURCE / "manifest.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    kept = [r for r in rows if ",covid-cxnet,adult," in r][:4]
    kept += [r for r in rows if ",openist," in r][:4]
    kept += [r for r in rows if ",jsrt," in r and r.endswith(",normal")][:2]
    kept += [r for r in rows if ",jsrt," in r and r.endswith(",nodule")][:2]
    for row in kept:
        target = tmp_path / "multisource" / row.split(",")[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MULTISOURCE / row.split(",")[0], target)
    return write_manifest(tmp_path / "multisource", kept, header=header)


def test_vendored_dataset_reads_its_manifest(dataset_dir):
    dataset = read_dataset(dataset_dir)
    assert dataset.kind == "manifest" and len(dataset.samples) == 317
    counts = Counter((s.source, s.age_group, s.split) for s in dataset.samples)
    assert counts[("base-covid", "adult", "train")] == 111
    assert counts[("base-pediatric", "pediatric", "test")] == 40
    assert all((s.source == "base-covid") == (s.class_name == "Covid") for s in dataset.samples)


def test_folder_layout_without_manifest_is_one_source(kaggle_like_dataset):
    dataset = read_dataset(kaggle_like_dataset)
    assert dataset.kind == "folder"
    assert {s.source for s in dataset.samples} == {kaggle_like_dataset.name}
    assert {s.split for s in dataset.samples} == {"train", "test"}


@pytest.mark.parametrize("row, message", [
    ("a.png,Cats,x,adult,train", "is not one of"),
    ("/etc/passwd,Covid,x,adult,train", "inside the dataset"),
    ("../a.png,Covid,x,adult,train", "inside the dataset"),
    ("a.png,Covid,x,adult,validation", "split must be train or test"),
])
def test_bad_manifest_rows_are_one_line_errors(tmp_path, row, message):
    folder = write_manifest(tmp_path / "bad", [row])
    with pytest.raises(DatasetError, match=message) as error:
        read_dataset(folder)
    assert "manifest.csv:2" in str(error.value) and "\n" not in str(error.value)


def test_manifest_needs_file_and_label_and_unique_rows(tmp_path):
    with pytest.raises(DatasetError, match="missing label"):
        read_dataset(write_manifest(tmp_path / "a", ["a.png"], header="file"))
    with pytest.raises(DatasetError, match="listed twice"):
        read_dataset(write_manifest(tmp_path / "b", ["a.png,Covid", "a.png,Covid"],
                                    header="file,label"))
    csv_only = write_manifest(tmp_path / "c", ["a.png,Normal"], header="file,label")
    dataset = read_dataset(csv_only / "manifest.csv")
    assert dataset.samples[0].source == "c" and dataset.samples[0].age_group == "unknown"


def test_combined_datasets_are_linked_under_one_root(dataset_dir, small_multisource, tmp_path):
    root, samples = combine([read_dataset(dataset_dir), read_dataset(small_multisource)],
                            tmp_path / "links")
    assert (root / "covid19-dataset").resolve() == dataset_dir.resolve()
    assert all((root / s.rel_path).is_file() for s in samples)
    assert {s.source for s in samples} == {"base-covid", "base-pediatric", "covid-cxnet",
                                           "openist", "jsrt"}
    with pytest.raises(DatasetError, match="two datasets are named"):
        combine([read_dataset(dataset_dir), read_dataset(dataset_dir)], tmp_path / "again")


def test_split_is_stratified_by_source_and_class():
    samples = [Sample(f"{source}/{i}", label, source=source)
               for source, label, n in (("a", 0, 20), ("b", 0, 10), ("b", 1, 30))
               for i in range(n)]
    _, val = split_train_val(samples, 0.2, seed=3)
    assert Counter((s.source, s.label) for s in val) == {("a", 0): 4, ("b", 0): 2, ("b", 1): 6}


def test_duplicates_stay_on_one_side_of_the_split():
    samples = [Sample(f"f{i}", i % 2, source="s") for i in range(40)]
    groups = [[0, 2, 4, 6], *[[i] for i in range(40) if i not in (0, 2, 4, 6)]]
    for seed in range(10):
        train, val = split_train_val(samples, 0.2, seed, groups)
        names = {s.rel_path for s in val}
        assert len({f"f{i}" in names for i in (0, 2, 4, 6)}) == 1
        assert len(train) + len(val) == 40


def test_duplicate_groups_join_exact_and_near_copies():
    rng = np.random.default_rng(0)
    base = [rng.normal(size=64 * 64).astype(np.float32) for _ in range(4)]
    unit = [b / np.linalg.norm(b) for b in base]
    prints = [Fingerprint("a", unit[0]), Fingerprint("b", unit[1]), Fingerprint("a", unit[2]),
              Fingerprint("c", unit[3]), Fingerprint("d", unit[1])]
    assert sorted(map(sorted, duplicate_groups(prints))) == [[0, 2], [1, 4], [3]]


def test_data_check_counts_sources_and_cross_dataset_duplicates(dataset_dir, small_multisource):
    copy = small_multisource / "images" / "copy-of-base.jpeg"
    shutil.copy(dataset_dir / "train" / "Covid" / "01.jpeg", copy)
    with (small_multisource / "manifest.csv").open("a") as handle:
        handle.write("images/copy-of-base.jpeg,Covid,covid-cxnet,adult\n")
    result = CliRunner().invoke(data_app, ["check", str(dataset_dir), str(small_multisource),
                                           "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts_by_source"]["train"]["openist"] == {"Normal/adult": 4}
    assert report["counts_by_source"]["train"]["jsrt"] == {
        "Normal/adult/nodule": 2, "Normal/adult/normal": 2}
    assert report["counts_by_source"]["test"]["base-covid"] == {"Covid/adult": 26}
    crossing = [d for d in report["duplicates"] if not d["same_source"]]
    assert {(d["first"], d["second"]) for d in crossing} >= {
        ("covid19-dataset/train/Covid/01.jpeg", "multisource/images/copy-of-base.jpeg")}


def test_finding_comes_from_the_manifest_and_is_blank_without_one(small_multisource, tmp_path):
    findings = Counter((s.source, s.finding) for s in read_dataset(small_multisource).samples)
    assert findings == {("covid-cxnet", ""): 4, ("openist", ""): 4, ("jsrt", "normal"): 2,
                        ("jsrt", "nodule"): 2}
    plain = read_dataset(write_manifest(tmp_path / "plain", ["a.png,Normal"], header="file,label"))
    assert plain.samples[0].finding == ""


def test_excluded_findings_are_left_out_of_every_split(dataset_dir, small_multisource, tmp_path):
    config = TrainConfig(input_size=8, exclude_findings=("nodule",))
    data = prepare_data([dataset_dir, small_multisource], config, tmp_path / "links")
    used = [s for part in (data.train, data.val, data.test) for s in part.samples]
    assert Counter(s.finding for s in used if s.source == "jsrt") == {"normal": 2}
    assert {s.source for s in used} == {"base-covid", "base-pediatric", "covid-cxnet", "openist",
                                        "jsrt"}
