"""Contract 2's pure parts: finding the lung field in a probability map, cropping to it,
equalising, the input section of a manifest, and decoding at a reduced scale."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from lungcnn.edge.contract import (
    LungFieldInput,
    Preprocessor,
    ScanSpec,
    crop,
    equalize,
    prepare,
    resize_gray,
)
from lungcnn.edge.decode import decode_scan
from lungcnn.edge.lungfield import (
    LungFieldSettings,
    dilated,
    find_lung_field,
    margin_box,
    regions,
)

SETTINGS = LungFieldSettings()
SHA = "0" * 64


def two_lungs(side: int = 96) -> np.ndarray:
    probabilities = np.zeros((side, side), np.float32)
    probabilities[20:80, 10:42] = 0.9  # right lung
    probabilities[20:80, 54:86] = 0.8  # left lung
    probabilities[5, 5] = 0.99  # a speckle, ignored: not one of the two largest regions
    return probabilities


def test_two_lungs_give_their_box_and_area():
    field = find_lung_field(two_lungs(), SETTINGS)
    assert field.problem is None
    assert field.box == pytest.approx((10 / 96, 20 / 96, 86 / 96, 80 / 96))
    assert field.area == pytest.approx(2 * 60 * 32 / 96**2)
    assert field.regions == 3


@pytest.mark.parametrize(("probabilities", "reason"), [
    (np.zeros((96, 96)), "no lung found"),
    (np.pad(np.ones((10, 10)), 43), "lung area"),
    (np.pad(np.ones((80, 16)), ((8, 8), (40, 40))), "of the width"),
    (np.ones((96, 96)), "above"),
])
def test_implausible_lungs_say_why(probabilities, reason):
    field = find_lung_field(probabilities.astype(np.float32), SETTINGS)
    assert field.problem is not None and reason in field.problem


def test_regions_that_touch_are_one_region_and_diagonals_are_not():
    probabilities = np.zeros((96, 96), np.float32)
    probabilities[10:60, 10:40] = 1  # a U: two arms joined at the bottom
    probabilities[10:50, 20:30] = 0
    probabilities[61, 41] = 1  # touches only diagonally: a region of its own
    field = find_lung_field(probabilities, SETTINGS)
    assert field.regions == 2


def test_margin_box_grows_within_the_scan():
    field = find_lung_field(two_lungs(), SETTINGS)
    left, top, right, bottom = margin_box(field, 0.1)
    assert left < field.box[0] and right > field.box[2] and top >= 0 and bottom <= 1
    assert margin_box(find_lung_field(np.ones((96, 96), np.float32), SETTINGS), 0.5) == (0, 0, 1, 1)


@pytest.mark.parametrize("section", [
    {"threshold": 1.5}, {"min_area": float("nan")}, {"min_area": 0.8, "max_area": 0.7},
    {"min_width": True}, "not an object",
])
def test_bad_lung_field_settings_are_refused(section):
    valid = LungFieldSettings().to_json()
    with pytest.raises(ValueError, match="lung_field"):
        LungFieldSettings.from_json({**valid, **section} if isinstance(section, dict) else section)


def test_equalize_spreads_grey_levels_over_the_whole_range():
    image = np.tile(np.arange(100, 140, dtype=np.uint8), (40, 1))
    equalised = equalize(image)
    assert equalised.min() == 0 and equalised.max() == 255
    assert (np.diff(equalised[0].astype(int)) >= 0).all()  # order of grey levels kept
    flat = np.full((8, 8), 77, np.uint8)
    np.testing.assert_array_equal(equalize(flat), flat)


def test_crop_takes_the_box_in_scan_fractions():
    gray = np.arange(100 * 200, dtype=np.uint32).reshape(100, 200).astype(np.uint8)
    np.testing.assert_array_equal(crop(gray, (0.25, 0.1, 0.75, 0.5)), gray[10:50, 50:150])
    assert crop(gray, (0.5, 0.5, 0.5, 0.5)).shape == (1, 1)


class FakeSegmenter:
    """Finds the lungs where `two_lungs` puts them, whatever the scan."""

    side = 96
    settings = SETTINGS

    def __init__(self, probabilities=None):
        self._probabilities = two_lungs() if probabilities is None else probabilities

    def probabilities(self, image):
        assert image.shape == (96, 96) and image.dtype == np.uint8
        return self._probabilities

    def replica(self):
        return self


def lung_spec(equalise: bool = True) -> ScanSpec:
    return ScanSpec(32, LungFieldInput("seg.tflite", SHA, margin=0.0, equalize=equalise))


def test_contract_2_crops_the_lung_field_then_equalises():
    gray = np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)
    prepared = prepare(gray, lung_spec(), FakeSegmenter())
    expected = equalize(resize_gray(crop(gray, (10 / 96, 20 / 96, 86 / 96, 80 / 96)), 32))
    np.testing.assert_array_equal(prepared.model_input, expected)
    assert prepared.lung_field.problem is None
    unequalised = prepare(gray, lung_spec(False), FakeSegmenter()).model_input
    assert not np.array_equal(unequalised, prepared.model_input)


def test_contract_2_without_lungs_uses_the_whole_scan_and_says_why():
    gray = np.random.default_rng(1).integers(0, 256, (120, 90), dtype=np.uint8)
    prepared = prepare(gray, lung_spec(), FakeSegmenter(np.zeros((96, 96), np.float32)))
    assert prepared.lung_field.problem == "no lung found"
    np.testing.assert_array_equal(prepared.model_input, equalize(resize_gray(gray, 32)))


def test_contract_1_is_the_whole_scan_resized():
    gray = np.random.default_rng(2).integers(0, 256, (50, 70), dtype=np.uint8)
    prepared = Preprocessor(ScanSpec(16)).prepare(gray)
    np.testing.assert_array_equal(prepared.model_input, resize_gray(gray, 16))
    assert prepared.lung_field is None


def test_input_section_round_trips_and_checks_its_fields():
    spec = lung_spec()
    assert ScanSpec.from_json(spec.to_json()) == spec
    assert ScanSpec.from_json(ScanSpec(64).to_json()) == ScanSpec(64)
    section = spec.to_json()
    for broken, message in [
        ({**section, "contract_version": 3}, "upgrade lungcnn"),
        ({**section, "contract_version": 1}, "only by it"),
        ({**section, "lung_field": {**section["lung_field"], "segmenter": "../x.tflite"}},
         "file name"),
        ({**section, "lung_field": {**section["lung_field"], "segmenter_sha256": "abc"}},
         "SHA-256"),
        ({**section, "lung_field": {**section["lung_field"], "margin": 2}}, "margin"),
        ({**section, "lung_field": {"segmenter": "a.tflite"}}, "needs"),
    ]:
        with pytest.raises(ValueError, match=message):
            ScanSpec.from_json(broken)


def _encoded(mode: str, size: tuple[int, int], image_format: str) -> bytes:
    buffer = io.BytesIO()
    gradient = np.linspace(0, 255, size[0] * size[1]).reshape(size[1], size[0])
    Image.fromarray(gradient.astype(np.uint8)).convert(mode).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_reduced_decode_keeps_the_shorter_side_above_its_minimum(image_format):
    data = _encoded("L", (1400, 1000), image_format)
    assert decode_scan(data).gray.shape == (1000, 1400)
    reduced = decode_scan(data, min_side=320).gray
    assert 320 <= min(reduced.shape) < 640
    assert reduced.shape[1] / reduced.shape[0] == pytest.approx(1.4, rel=0.02)
    assert decode_scan(_encoded("RGB", (400, 300), image_format), 320).gray.shape == (300, 400)


def test_the_lung_field_signal_flags_a_scan_without_plausible_lungs():
    from lungcnn.edge.trust import FLAG_OK, FLAG_OUT_OF_DISTRIBUTION, TrustSettings, evidence_of, judge

    settings = TrustSettings.from_manifest({"class_names": ["Covid", "Normal", "Viral Pneumonia"]})
    raw = np.array([[0.9, 0.05, 0.05]])
    model_input = np.zeros((32, 32, 1), np.uint8)
    for field, flag, reason in [
        (find_lung_field(two_lungs(), SETTINGS), FLAG_OK, ""),
        (find_lung_field(np.zeros((96, 96)), SETTINGS), FLAG_OUT_OF_DISTRIBUTION,
         "no plausible lung fields (no lung found): classified on the whole scan"),
        (None, FLAG_OK, ""),  # contract 1: no lung field to judge
    ]:
        assessment = judge(evidence_of(model_input, 0.0, raw, (), None, settings, field), settings)
        assert (assessment.flag, reason in assessment.reason) == (flag, True)


def _flood_fill_regions(lung: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """The obvious (slow) answer: breadth-first search from every unvisited lung pixel."""
    seen, found = np.zeros_like(lung), []
    for start in zip(*np.nonzero(lung)):
        if seen[start]:
            continue
        seen[start], queue, pixels = True, [start], []
        while queue:
            y, x = queue.pop()
            pixels.append((y, x))
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < lung.shape[0] and 0 <= nx < lung.shape[1] and lung[ny, nx] \
                        and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        ys, xs = zip(*pixels)
        found.append((len(pixels), min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    return sorted(found)


@settings(max_examples=200, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_regions_match_a_flood_fill(lung):
    assert sorted(regions(lung)) == _flood_fill_regions(lung)


@settings(max_examples=100, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))), st.integers(1, 4))
def test_dilation_is_a_square_max_filter(mask, radius):
    from PIL import ImageFilter

    expected = Image.fromarray(mask.astype(np.uint8) * 255).filter(
        ImageFilter.MaxFilter(2 * radius + 1))
    np.testing.assert_array_equal(dilated(mask, radius), np.asarray(expected) > 127)
