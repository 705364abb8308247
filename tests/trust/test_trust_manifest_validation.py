"""A damaged calibration or trust section never switches a check off or on silently: the
model either loads with every check active, or is refused with a one-line error (exit 2 from
edge-classify). Property-based: Hypothesis mutates the tiny calibrated model's manifest."""

from __future__ import annotations

import copy
import json
import math
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from lungcnn.edge import cli
from lungcnn.edge.api import Classifier
from lungcnn.edge.runtime import ModelError
from lungcnn.edge.trust import FLAG_OK, FLAG_OUT_OF_DISTRIBUTION

SECTIONS = ("calibration", "trust", "features_output")
DELETE = object()
VALUES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 0.0, 1e308, 10**400, True, None, "1.0", [],
                     {}, [1.0], [[1.0, 2.0]], DELETE]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-5, max_value=300),
)


@pytest.fixture(scope="module")
def workspace(calibrated_int8, tmp_path_factory):
    """A private copy of the calibrated model; each example rewrites its manifest."""
    folder = tmp_path_factory.mktemp("mutated")
    model = folder / calibrated_int8.name
    shutil.copy2(calibrated_int8, model)
    return model, json.loads(calibrated_int8.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def scans(train_scan_path, tmp_path_factory):
    blank = tmp_path_factory.mktemp("blank") / "blank.png"
    Image.new("L", (96, 96), 128).save(blank)
    return [train_scan_path, blank]


@st.composite
def mutations(draw):
    """(path into the manifest, new value): a random field of a checked section, at any
    depth (a section, a key, an element of an array), replaced, emptied or deleted."""
    path = [draw(st.sampled_from(SECTIONS))]
    return path, draw(st.integers(0, 2**32)), draw(st.one_of(st.just(0), st.integers(1, 6))), draw(VALUES)


def _apply(manifest: dict, path: list, seed: int, depth: int, value) -> str:
    """Walk `depth` random steps down from manifest[path[0]] and replace what is there."""
    rng = np.random.default_rng(seed)
    parent, key = manifest, path[0]
    for _ in range(depth):
        node = parent.get(key) if isinstance(parent, dict) else parent[key]
        if isinstance(node, dict) and node:
            parent, key = node, list(node)[rng.integers(len(node))]
        elif isinstance(node, list) and node:
            parent, key = node, int(rng.integers(len(node)))
        else:
            break
    if value is DELETE:
        if isinstance(parent, dict):
            parent.pop(key, None)
        else:
            del parent[key]
    else:
        parent[key] = value
    return f"{key} -> {value!r}"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=mutations())
def test_a_mutated_manifest_loads_with_every_check_active_or_is_refused(
    workspace, scans, mutation
):
    model, original = workspace
    manifest = copy.deepcopy(original)
    path, seed, depth, value = mutation
    _apply(manifest, path, seed, depth, value)
    model.with_suffix(".json").write_text(json.dumps(manifest))
    try:
        classifier = Classifier(model, threads=1)
    except ModelError as error:
        message = str(error)
        assert message and "\n" not in message and str(model.with_suffix("")) in message
        return
    settings_ = classifier.runtime.trust_settings
    assert math.isfinite(settings_.temperature) and settings_.temperature > 0
    if settings_.fitted:
        assert set(settings_.signals) == {"gate", "lung_field", "feature_distance", "stability"}
    for scan in scans:
        record = classifier.classify(scan).to_dict()
        assert record["status"] == "ok"
        assert all(math.isfinite(p) for p in record["probabilities"].values())
        distance = record["feature_distance"]
        if settings_.fitted:
            assert (distance is not None and math.isfinite(distance)
                    or record["flag"] == FLAG_OUT_OF_DISTRIBUTION)
        elif record["flag"] == FLAG_OK:
            assert "no calibration" in record["reason"]


def _damaged(workspace, change) -> str:
    model, original = workspace
    manifest = copy.deepcopy(original)
    change(manifest)
    model.with_suffix(".json").write_text(json.dumps(manifest))
    return str(model)


@pytest.mark.parametrize("change", [
    lambda m: m["trust"]["feature_distance"]["center"].__setitem__(0, math.nan),
    lambda m: m["trust"]["feature_distance"]["class_whitening"][0][0].__setitem__(0, math.nan),
    lambda m: m["trust"]["gate_bounds"]["contrast"].__setitem__(0, math.nan),
    lambda m: m["trust"]["gate_bounds"]["contrast"].reverse(),
    lambda m: m.__setitem__("features_output", 96),
    lambda m: m["trust"].pop("feature_distance"),
    lambda m: m["trust"]["gate_bounds"].pop("symmetry"),
    lambda m: m["trust"].__setitem__("check_variants", "false"),
    lambda m: m["calibration"].__setitem__("temperature", True),
], ids=["nan-centre", "nan-covariance", "nan-bound", "inverted-bounds",
        "features-output-not-object", "no-feature-distance", "missing-bound",
        "string-bool", "bool-temperature"])
def test_each_known_damage_is_a_one_line_exit_2(workspace, scans, change):
    result = CliRunner().invoke(cli.app, ["--model", _damaged(workspace, change),
                                          str(scans[0])])
    assert result.exit_code == cli.EXIT_USAGE
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-classify: error: ")
    assert "Traceback" not in result.output
