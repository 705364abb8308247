"""`edge-classify adapt`: the adapted model on disk, how it loads and classifies, and every
refusal (one line, exit code 2, nothing written)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lungcnn.edge import cli
from lungcnn.edge.api import Classifier
from lungcnn.edge.errors import EXIT_OK, EXIT_USAGE
from lungcnn.edge.manifest import sha256_file
from lungcnn.edge.replay import Replay, read_replay, replay_path, write_replay
from lungcnn.edge.site_cli import app


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result, fragment: str) -> None:
    assert result.exit_code == EXIT_USAGE, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-classify: error: "), result.stderr
    assert fragment in lines[0] and "Traceback" not in result.output


@pytest.fixture(scope="module")
def adapted(adaptable_model, site_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapted") / "model"
    result = run("adapt", "--data", site_dir, "--out", out, "--model", adaptable_model)
    assert result.exit_code == EXIT_OK, result.output
    assert "Not a medical device" in result.stdout
    return out / adaptable_model.name


def test_the_adapted_model_names_its_base_site_and_thresholds(adapted, adaptable_model):
    manifest = json.loads(adapted.with_suffix(".json").read_text())
    adaptation = manifest["adaptation"]
    assert adaptation["base_model"]["tflite_sha256"] == sha256_file(adaptable_model)
    assert adaptation["base_model"]["manifest_sha256"] == \
        sha256_file(adaptable_model.with_suffix(".json"))
    assert adaptation["site_scans"] == {"Covid": 6, "Normal": 6, "Viral Pneumonia": 0}
    assert adaptation["thresholds"]["temperature"] == manifest["calibration"]["temperature"]
    assert adaptation["thresholds"]["min_confidence"] == manifest["trust"]["min_confidence"]
    assert adapted.read_bytes() == adaptable_model.read_bytes()  # the network is frozen
    assert replay_path(adapted).read_bytes() == replay_path(adaptable_model).read_bytes()
    assert sorted(p.name for p in adapted.parent.iterdir()) == sorted(
        [adapted.name, adapted.with_suffix(".json").name, replay_path(adapted).name])


def test_the_adapted_model_classifies_with_its_head(adapted, adaptable_model, site_dir,
                                                    capsys):
    scan = next((site_dir / "Normal").iterdir())
    record = Classifier(adapted).classify(scan).to_dict()
    base = Classifier(adaptable_model).classify(scan).to_dict()
    assert record["probabilities"] != base["probabilities"]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--model", str(adapted), "--json", str(scan)])
    assert stopped.value.code == EXIT_OK
    assert json.loads(capsys.readouterr().out)["probabilities"] == record["probabilities"]


def test_an_adapted_model_can_be_adapted_again(adapted, site_dir, tmp_path):
    result = run("adapt", "--data", site_dir, "--out", tmp_path, "--model", adapted)
    assert result.exit_code == EXIT_OK, result.output
    manifest = json.loads((tmp_path / adapted.with_suffix(".json").name).read_text())
    assert manifest["adaptation"]["base_model"]["manifest_sha256"] == \
        sha256_file(adapted.with_suffix(".json"))


def test_edge_classify_dispatches_adapt(adaptable_model, site_dir, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["adapt", "--data", str(site_dir), "--out", str(tmp_path / "m"),
                  "--model", str(adaptable_model)])
    assert stopped.value.code == EXIT_OK
    assert (tmp_path / "m" / adaptable_model.name).is_file()


def _site_copy(site_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "site"
    shutil.copytree(site_dir, copy)
    return copy


def test_too_few_scans_are_refused(adaptable_model, site_dir, tmp_path):
    site = _site_copy(site_dir, tmp_path)
    for path in sorted((site / "Covid").iterdir())[2:]:
        path.unlink()
    refused(run("adapt", "--data", site, "--out", tmp_path / "out", "--model",
                adaptable_model), "too few scans to adapt on")
    assert not (tmp_path / "out").exists()


def test_a_class_the_model_does_not_know_is_refused(adaptable_model, site_dir, tmp_path):
    site = _site_copy(site_dir, tmp_path)
    (site / "Covid").rename(site / "Tuberculosis")
    refused(run("adapt", "--data", site, "--out", tmp_path / "out", "--model",
                adaptable_model), "'Tuberculosis' is not a class of the model")
    assert not (tmp_path / "out").exists()


def test_an_unreadable_scan_is_refused(adaptable_model, site_dir, tmp_path):
    site = _site_copy(site_dir, tmp_path)
    (site / "Normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    refused(run("adapt", "--data", site, "--out", tmp_path / "out", "--model",
                adaptable_model), "broken.png")
    assert not (tmp_path / "out").exists()


def test_a_manifest_csv_with_an_unknown_label_is_refused(adaptable_model, site_dir, tmp_path):
    csv = tmp_path / "site.csv"
    scan = next((site_dir / "Normal").iterdir())
    shutil.copy2(scan, tmp_path / scan.name)
    csv.write_text(f"file,label\n{scan.name},Normal\n{scan.name},normal\n")
    refused(run("adapt", "--data", csv, "--out", tmp_path / "out", "--model",
                adaptable_model), "site.csv:3: label 'normal'")


def test_a_model_without_replay_features_is_refused(adaptable_model, site_dir, tmp_path):
    for path in (adaptable_model, adaptable_model.with_suffix(".json")):
        shutil.copy2(path, tmp_path / path.name)
    refused(run("adapt", "--data", site_dir, "--out", tmp_path / "out", "--model",
                tmp_path / adaptable_model.name), "no replay features")


def test_replay_features_of_another_model_are_refused(adaptable_model, site_dir, tmp_path):
    for path in (adaptable_model, adaptable_model.with_suffix(".json")):
        shutil.copy2(path, tmp_path / path.name)
    model = tmp_path / adaptable_model.name
    dim = Classifier(adaptable_model).runtime.features_dim
    stored = read_replay(adaptable_model, sha256_file(adaptable_model), dim, 3)
    write_replay(model, Replay(stored.features, stored.labels, "0" * 64))
    refused(run("adapt", "--data", site_dir, "--out", tmp_path / "out", "--model", model),
            "replay features of another model")


def test_the_site_share_is_recorded_in_the_adapted_model(adaptable_model, site_dir, tmp_path):
    result = run("adapt", "--data", site_dir, "--out", tmp_path / "out", "--model",
                 adaptable_model, "--site-share", "0.1")
    assert result.exit_code == EXIT_OK, result.output
    manifest = json.loads((tmp_path / "out" / adaptable_model.name).with_suffix(".json")
                          .read_text())
    assert manifest["adaptation"]["settings"]["site_share"] == 0.1
    assert "10%" in manifest["adaptation"]["rule"]


@pytest.mark.parametrize("share", ["0", "1", "1.5", "-0.2", "nan"])
def test_a_site_share_outside_0_to_1_is_refused(adaptable_model, site_dir, tmp_path, share):
    refused(run("adapt", "--data", site_dir, "--out", tmp_path / "out", "--model",
                adaptable_model, "--site-share", share), "--site-share must lie between 0 and 1")
    assert not (tmp_path / "out").exists()


def test_the_base_model_is_never_overwritten(adaptable_model, site_dir):
    before = adaptable_model.with_suffix(".json").read_bytes()
    refused(run("adapt", "--data", site_dir, "--out", adaptable_model.parent, "--model",
                adaptable_model), "would replace it")
    assert adaptable_model.with_suffix(".json").read_bytes() == before


def test_an_unwritable_out_is_refused(adaptable_model, site_dir, tmp_path):
    (tmp_path / "file").write_text("")
    refused(run("adapt", "--data", site_dir, "--out", tmp_path / "file", "--model",
                adaptable_model), "cannot write the adapted model")


def test_adapt_and_validate_never_import_tensorflow(adaptable_model, site_dir, tmp_path):
    code = (
        "import sys\n"
        "from lungcnn.edge.cli import main\n"
        "for command, out in (('adapt', 'model'), ('validate', 'report')):\n"
        "    try:\n"
        f"        main([command, '--data', {str(site_dir)!r}, '--model', "
        f"{str(adaptable_model)!r}, '--out', {str(tmp_path)!r} + '/' + out])\n"
        "    except SystemExit as done:\n"
        "        assert done.code in (0, 1), done.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=300, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-1] == "[]"
    assert (tmp_path / "model" / adaptable_model.name).is_file()
    assert (tmp_path / "report" / "report.md").is_file()


def test_the_site_classes_become_modes_of_the_feature_distance(adapted, adaptable_model):
    base = json.loads(adaptable_model.with_suffix(".json").read_text())["trust"]
    section = json.loads(adapted.with_suffix(".json").read_text())["trust"]["feature_distance"]
    before = base["feature_distance"]["classes"]
    assert section["classes"] == [*before, 0, 1] and section["site_modes"] == [0, 1]
    assert section["threshold"] == base["feature_distance"]["threshold"]
    assert len(section["class_whitening"]) == len(before) + 2


def test_a_missing_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["adapt", "--out", "somewhere"])
    assert stopped.value.code == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--data" in lines[0] and lines[0].startswith("edge-classify")
