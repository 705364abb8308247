"""`lungcnn data fetch`: offline, against a local HTTP server on 127.0.0.1 serving fixture
originals (a few curated files of ../shared/data/multisource plus generated images)."""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lungcnn.trainer import download as download_module
from lungcnn.trainer import fetch as fetch_module
from lungcnn.trainer.datacheck import data_app
from lungcnn.trainer.fetch import EXIT_COMPLETE, EXIT_SOME_FAILED, EXIT_USAGE
from lungcnn.trainer.provenance import IMAGE_COLUMNS, MASK_COLUMNS, load_dataset, origin_url
from lungcnn.trainer.reencode import pixel_sha256, reencode

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / "../shared/data/multisource"
needs_shared = pytest.mark.skipif(
    not (SHARED / "manifest.csv").is_file(),
    reason=f"the curated multi-source set is not at {SHARED} (fixture originals come from it)",
)
GENERATED_COMMIT = "1" * 40


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class Origin:
    """Blobs served by URL path, a behaviour per path, and the log of requested paths."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}  # path -> "404" | "500" | "cut" | "tamper" | "hang"
        self.requests: list[str] = []

    def handler(self):
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = unquote(urlsplit(self.path).path)
                origin.requests.append(path)
                mode, body = origin.modes.get(path, "ok"), origin.blobs.get(path)
                if mode == "hang":
                    time.sleep(3)
                if body is None or mode in ("404", "500"):
                    self.send_error(500 if mode == "500" else 404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "tamper":
                    body = body[:-1] + bytes([body[-1] ^ 1])
                self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def origin():
    served = Origin()
    server = ThreadingHTTPServer(("127.0.0.1", 0), served.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield served
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(download_module.time, "sleep", lambda seconds: None)


def _shared_rows() -> list[dict]:
    with open(SHARED / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _pick_shared() -> list[dict]:
    """An openist JPEG (it has a mask), a grayscale PNG and an RGB JPEG from covid-cxnet."""
    rows = _shared_rows()

    def first(source: str, suffix: str, mode: str) -> dict:
        return next(
            r
            for r in rows
            if r["source"] == source
            and r["file"].endswith(suffix)
            and Image.open(SHARED / r["file"]).mode == mode
        )

    return [first("openist", ".jpg", "L"), first("covid-cxnet", ".png", "L"),
            first("covid-cxnet", ".jpg", "RGB")]  # fmt: skip


def _generated() -> list[tuple[dict, bytes, bytes]]:
    """(row, original, the stored file the README's rules give, written independently)."""
    ramp = Image.linear_gradient("L").resize((2000, 1500))
    big = Image.merge("RGB", (ramp, ramp, ramp))  # equal channels: stored as L
    big_expected = png_bytes(ramp.resize((1024, 768), Image.Resampling.LANCZOS))
    colour = Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.ROTATE_180), ramp))
    webp = io.BytesIO()
    colour.resize((300, 200)).save(webp, "WEBP")
    webp_expected = png_bytes(Image.open(io.BytesIO(webp.getvalue())).convert("RGB"))
    out = []
    for name, original, expected in (
        ("big.png", png_bytes(big), big_expected),
        ("figure.png", webp.getvalue(), webp_expected),  # stored as PNG: WebP is not PNG/JPEG
    ):
        row = dict.fromkeys(IMAGE_COLUMNS, "")
        row.update(
            file=f"images/covid-cxnet/Covid/{name}", label="Covid", source="covid-cxnet",
            age_group="adult", license="CC BY 4.0", origin_repo="fixture/generated",
            origin_commit=GENERATED_COMMIT, origin_path=f"figures/{name.replace('png', 'src')}",
            origin_sha256=sha(original), sha256=sha(expected), width="0", height="0",
        )  # fmt: skip
        out.append((row, original, expected))
    return out


@pytest.fixture
def fixture_set(tmp_path, origin):
    """A provenance folder (manifest.csv, masks.csv, README.md) whose originals `origin` serves.

    Curated files are served as their own originals: a PNG comes back byte-identical, a JPEG
    is re-encoded (so its bytes differ from the curated copy: one warning each)."""
    folder = tmp_path / "provenance"
    folder.mkdir()
    rows, masks = [], []
    for row in _pick_shared():
        original = (SHARED / row["file"]).read_bytes()
        rows.append({**row, "origin_sha256": sha(original)})
        commit_path = f"/{row['origin_repo']}/{row['origin_commit']}"
        origin.blobs[f"{commit_path}/{row['origin_path']}"] = original
        if row["source"] == "openist":
            stem = Path(row["file"]).stem
            mask = (SHARED / f"masks/openist/{stem}.png").read_bytes()
            mask_path = f"Datasets/Chest_x-ray/{stem}@.png"
            origin.blobs[f"{commit_path}/{mask_path}"] = mask
            masks.append({
                "file": f"masks/openist/{stem}.png", "image": row["file"], "source": "openist",
                "license": row["license"], "origin_repo": row["origin_repo"],
                "origin_commit": row["origin_commit"], "origin_path": mask_path,
                "sha256": sha(mask), "pixel_sha256": pixel_sha256(mask),
                "width": row["width"], "height": row["height"],
            })  # fmt: skip
    for row, original, _ in _generated():
        rows.append(row)
        origin.blobs[f"/fixture/generated/{GENERATED_COMMIT}/{row['origin_path']}"] = original
    _write_csv(folder / "manifest.csv", IMAGE_COLUMNS, rows)
    _write_csv(folder / "masks.csv", MASK_COLUMNS, masks)
    (folder / "README.md").write_text("fixture licenses\n")
    return folder


def _write_csv(path: Path, columns, rows) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def fetch(folder, out, origin, *options):
    args = ["fetch", str(folder), "--to", str(out), "--base-url", origin.base_url, *options]
    return CliRunner().invoke(data_app, args)


def url_path(folder: Path, file: str) -> str:
    dataset = load_dataset(folder)
    entry = next(e for e in (*dataset.images, *dataset.masks) if e.file == file)
    return unquote(urlsplit(origin_url("http://host", entry)).path)


def out_rows(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def no_part_files(out: Path) -> bool:
    return not list(out.rglob("*.part"))


@needs_shared
def test_fetch_rebuilds_the_set(fixture_set, origin, tmp_path):
    out = tmp_path / "out"
    result = fetch(fixture_set, out, origin)
    assert result.exit_code == EXIT_COMPLETE, result.output
    rows = out_rows(out)
    assert list(rows[0]) == list(IMAGE_COLUMNS) and len(rows) == 5
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    for row in rows:
        data = (out / row["file"]).read_bytes()
        assert sums[row["file"]] == row["sha256"] == sha(data)
        assert Image.open(out / row["file"]).size == (int(row["width"]), int(row["height"]))
    openist, png, rgb_jpeg, big, webp = rows
    assert sha((out / png["file"]).read_bytes()) == sha((SHARED / png["file"]).read_bytes())
    mask = f"masks/openist/{Path(openist['file']).stem}.png"
    assert (out / mask).read_bytes() == (SHARED / mask).read_bytes() and mask in sums
    assert Image.open(out / rgb_jpeg["file"]).format == "JPEG"
    assert (big["width"], big["height"]) == ("1024", "768")
    assert Image.open(out / big["file"]).mode == "L"
    assert Image.open(out / webp["file"]).format == "PNG"
    expected = {row["file"]: row["sha256"] for row, _, _ in _generated()}
    assert big["sha256"] == expected[big["file"]] and webp["sha256"] == expected[webp["file"]]
    assert "6 files selected: 6 fetched, 0 already present, 0 failed." in result.stdout
    assert f"warning: 2 files in {out} differ byte-wise" in result.stdout  # re-encoded JPEGs
    assert (out / "README.md").read_text() == "fixture licenses\n" and no_part_files(out)


@needs_shared
def test_origin_checksum_mismatch_is_not_kept(fixture_set, origin, tmp_path):
    out, target = tmp_path / "out", "images/covid-cxnet/Covid/big.png"
    origin.modes[url_path(fixture_set, target)] = "tamper"
    result = fetch(fixture_set, out, origin)
    assert result.exit_code == EXIT_SOME_FAILED
    assert f"error: {target}: origin checksum mismatch" in result.stderr
    assert not (out / target).exists() and no_part_files(out)
    assert target not in {row["file"] for row in out_rows(out)} and len(out_rows(out)) == 4


@needs_shared
def test_cut_download_leaves_no_file_and_a_rerun_fetches_only_it(fixture_set, origin, tmp_path):
    out, target = tmp_path / "out", "images/covid-cxnet/Covid/big.png"
    path = url_path(fixture_set, target)
    origin.modes[path] = "cut"
    first = fetch(fixture_set, out, origin, "--attempts", "1")
    assert first.exit_code == EXIT_SOME_FAILED and "transfer cut short" in first.stderr
    assert not (out / target).exists() and no_part_files(out)
    origin.modes.clear()
    origin.requests.clear()
    again = fetch(fixture_set, out, origin)
    assert again.exit_code == EXIT_COMPLETE, again.output
    assert origin.requests == [path]
    assert "1 fetched, 5 already present, 0 failed" in again.stdout and len(out_rows(out)) == 5
    assert f"warning: 2 files in {out} differ" in again.stdout  # the state of DIR, not the run


@needs_shared
def test_interrupted_run_keeps_what_is_done_and_resumes(fixture_set, origin, tmp_path, monkeypatch):
    out, calls = tmp_path / "out", []

    def interrupt_second(data):
        calls.append(data)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return reencode(data)

    monkeypatch.setattr(fetch_module, "reencode", interrupt_second)
    interrupted = fetch(fixture_set, out, origin)
    assert interrupted.exit_code == 130, interrupted.output  # Ctrl-C, as click reports it
    done = [row["file"] for row in out_rows(out)]
    assert len(done) == 1 and not list(out.glob("masks/openist/*")) and no_part_files(out)
    monkeypatch.setattr(fetch_module, "reencode", reencode)
    origin.requests.clear()
    resumed = fetch(fixture_set, out, origin)
    assert resumed.exit_code == EXIT_COMPLETE, resumed.output
    assert url_path(fixture_set, done[0]) not in origin.requests and len(origin.requests) == 5


@needs_shared
def test_server_error_is_retried_and_404_is_not(fixture_set, origin, tmp_path, no_sleep):
    broken, missing = "images/covid-cxnet/Covid/big.png", "images/covid-cxnet/Covid/figure.png"
    origin.modes[url_path(fixture_set, broken)] = "500"
    origin.modes[url_path(fixture_set, missing)] = "404"
    result = fetch(fixture_set, tmp_path / "out", origin, "--attempts", "2")
    assert result.exit_code == EXIT_SOME_FAILED
    assert f"error: {broken}: HTTP 500" in result.stderr and "(after 2 attempts)" in result.stderr
    assert f"error: {missing}: HTTP 404" in result.stderr
    assert origin.requests.count(url_path(fixture_set, broken)) == 2
    assert origin.requests.count(url_path(fixture_set, missing)) == 1
    assert "2 failed" in result.stdout and len(out_rows(tmp_path / "out")) == 3


@needs_shared
def test_stale_part_and_corrupt_file_are_replaced(fixture_set, origin, tmp_path):
    out = tmp_path / "out"
    stale, corrupt = out / "images/covid-cxnet/Covid/big.png", out / _pick_shared()[1]["file"]
    stale.parent.mkdir(parents=True)
    stale.with_name("big.png.part").write_bytes(b"left by a killed run")
    corrupt.write_bytes((SHARED / _pick_shared()[1]["file"]).read_bytes()[:100])
    result = fetch(fixture_set, out, origin)
    assert result.exit_code == EXIT_COMPLETE, result.output
    assert corrupt.read_bytes() == (SHARED / _pick_shared()[1]["file"]).read_bytes()
    assert Image.open(stale).size == (1024, 768) and no_part_files(out)


@needs_shared
def test_source_and_limit_choose_images_with_their_masks(fixture_set, origin, tmp_path):
    only = fetch(fixture_set, tmp_path / "a", origin, "--source", "openist")
    assert only.exit_code == EXIT_COMPLETE and len(origin.requests) == 2  # image and mask
    assert [row["source"] for row in out_rows(tmp_path / "a")] == ["openist"]
    origin.requests.clear()
    limited = fetch(fixture_set, tmp_path / "b", origin, "--source", "covid-cxnet", "--limit", "2")
    assert limited.exit_code == EXIT_COMPLETE and len(origin.requests) == 2
    assert "2 files selected: 2 fetched" in limited.stdout


@needs_shared
def test_usage_errors_exit_2(fixture_set, origin, tmp_path):
    assert fetch("no-such-set", tmp_path / "o", origin).exit_code == EXIT_USAGE
    unknown = fetch(fixture_set, tmp_path / "o", origin, "--source", "nih")
    assert unknown.exit_code == EXIT_USAGE and "unknown source nih" in unknown.stderr
    assert fetch(fixture_set, tmp_path / "o", origin, "--limit", "0").exit_code == EXIT_USAGE
    (tmp_path / "file").write_text("x")
    assert fetch(fixture_set, tmp_path / "file", origin).exit_code == EXIT_USAGE
    assert fetch(fixture_set, fixture_set, origin).exit_code == EXIT_USAGE
    manifest = fixture_set / "manifest.csv"
    text = manifest.read_text()
    manifest.write_text(text.replace("images/covid-cxnet/Covid/big.png", "../big.png"))
    escaping = fetch(fixture_set, tmp_path / "o", origin)
    assert escaping.exit_code == EXIT_USAGE and "'../big.png' is not images/" in escaping.stderr
    manifest.write_text(text.replace("origin_sha256,", "", 1))
    assert "missing columns origin_sha256" in fetch(fixture_set, tmp_path / "o", origin).stderr
    assert origin.requests == []


def test_command_is_under_lungcnn_data():
    from lungcnn.cli import app

    result = CliRunner().invoke(app, ["data", "fetch", "--help"])
    assert result.exit_code == 0 and "--to" in result.stdout


def test_default_url_is_the_pinned_raw_github_file():
    entry = load_dataset(REPO / "data/multisource").masks[0]
    assert origin_url(fetch_module.DEFAULT_BASE_URL, entry) == (
        "https://raw.githubusercontent.com/pi-null-mezon/OpenIST/"
        f"{entry.origin_commit}/Datasets/Chest_x-ray/1-10-500-500-100@.png"
    )


@needs_shared
def test_committed_provenance_is_the_shared_manifest():
    committed = load_dataset(REPO / "data/multisource")
    shared = _shared_rows()
    assert [dict(entry.row) for entry in committed.images] == [
        {column: row[column] for column in IMAGE_COLUMNS} for row in shared
    ]
    sums = {}
    for line in (SHARED / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        sums[name] = digest
    shared_masks = sorted(name for name in sums if name.startswith("masks/"))
    assert sorted(mask.file for mask in committed.masks) == shared_masks
    layouts = {  # source -> (image, original mask, lung label values)
        "openist": ("images/openist/Normal/{}.jpg", "Datasets/Chest_x-ray/{}@.png", ()),
        "jsrt": ("images/jsrt/Normal/{}.png", "data/JSRT/masks/{}.png", (150, 200)),
    }
    for mask in committed.masks:
        image, original, lungs = layouts[mask.source]
        stem = Path(mask.file).stem
        assert mask.image == image.format(stem) and mask.origin_path == original.format(stem)
        assert mask.lung_values == lungs and mask.sha256 == sums[mask.file]
        assert mask.pixel_sha256 == pixel_sha256((SHARED / mask.file).read_bytes())


@needs_shared
def test_jsrt_label_mask_becomes_the_binary_lung_mask(fixture_set, origin, tmp_path):
    """The original JSRT mask labels right lung 150, left lung 200, heart and background
    otherwise; the stored mask is 255 on the lungs, 0 elsewhere."""
    row = next(r for r in _shared_rows() if r["source"] == "jsrt")
    stem, image = Path(row["file"]).stem, (SHARED / row["file"]).read_bytes()
    stored = (SHARED / f"masks/jsrt/{stem}.png").read_bytes()
    lungs = np.asarray(Image.open(io.BytesIO(stored))) == 255
    labels = np.where(lungs, 150, 100).astype(np.uint8)
    labels[:, labels.shape[1] // 2 :][lungs[:, labels.shape[1] // 2 :]] = 200
    labels[:, :4] = 0
    commit_path = f"/{row['origin_repo']}/{row['origin_commit']}"
    origin.blobs[f"{commit_path}/{row['origin_path']}"] = image
    origin.blobs[f"{commit_path}/data/JSRT/masks/{stem}.png"] = png_bytes(Image.fromarray(labels))
    mask = {
        "file": f"masks/jsrt/{stem}.png", "image": row["file"], "source": "jsrt",
        "license": row["license"], "origin_repo": row["origin_repo"],
        "origin_commit": row["origin_commit"], "origin_path": f"data/JSRT/masks/{stem}.png",
        "sha256": sha(stored), "pixel_sha256": pixel_sha256(stored), "width": "224",
        "height": "224", "lung_values": "150 200",
    }  # fmt: skip
    _append_csv(fixture_set / "manifest.csv", IMAGE_COLUMNS, row)
    _append_csv(fixture_set / "masks.csv", MASK_COLUMNS, mask)
    out = tmp_path / "out"
    result = fetch(fixture_set, out, origin, "--source", "jsrt")
    assert result.exit_code == EXIT_COMPLETE, result.output
    assert (out / mask["file"]).read_bytes() == stored and (out / row["file"]).read_bytes() == image
    assert [(r["file"], r["finding"]) for r in out_rows(out)] == [(row["file"], row["finding"])]
    _append_csv(fixture_set / "masks.csv", MASK_COLUMNS, {**mask, "file": "masks/jsrt/x.png",
                                                          "lung_values": "150 300"})
    bad = fetch(fixture_set, tmp_path / "bad", origin)
    assert bad.exit_code == EXIT_USAGE and "bad lung_values '150 300'" in bad.stderr


def _append_csv(path: Path, columns, row: dict) -> None:
    with open(path, "a", newline="") as out:
        csv.DictWriter(out, fieldnames=columns).writerow(row)


@needs_shared
def test_curated_pngs_are_reproduced_from_themselves():
    """Pillow's default PNG settings: the curated PNGs are fixed points of the rules."""
    pngs = [row for row in _shared_rows() if row["file"].endswith(".png")][::40]
    for row in pngs:
        assert reencode((SHARED / row["file"]).read_bytes()).sha256 == row["sha256"], row["file"]


def _encoded(image: Image.Image, fmt: str, **params):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    stored = reencode(buffer.getvalue())
    return stored, Image.open(io.BytesIO(stored.data))


def test_encoding_rules():
    ramp = Image.linear_gradient("L").resize((64, 48))
    colour = Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM), ramp))
    near_gray = Image.merge("RGB", (ramp, ramp.point(lambda v: min(v + 3, 255)), ramp))
    opaque = colour.copy()
    opaque.putalpha(255)
    translucent = colour.copy()
    translucent.putalpha(ramp)
    cases = [
        (Image.merge("RGB", (ramp, ramp, ramp)), "PNG", ".png", "L"),
        (opaque, "PNG", ".png", "RGB"),
        (translucent, "PNG", ".png", "RGBA"),
        (colour, "WEBP", ".png", "RGB"),
        (near_gray, "BMP", ".png", "RGB"),  # not JPEG: PNG rules, channels unequal
        (colour, "JPEG", ".jpg", "RGB"),
    ]
    for image, fmt, suffix, mode in cases:
        stored, decoded = _encoded(image, fmt)
        assert (stored.suffix, decoded.mode, decoded.size) == (suffix, mode, (64, 48)), fmt
    stored, decoded = _encoded(near_gray, "JPEG", quality=100, subsampling=0)
    assert (stored.suffix, decoded.mode) == (".jpg", "L")  # JPEG within 4 levels: grayscale


def test_long_side_is_scaled_to_1024_with_aspect_kept():
    stored, decoded = _encoded(Image.new("L", (3000, 1000), 128), "PNG")
    assert stored.resized and decoded.size == (1024, 341)
    stored, decoded = _encoded(Image.new("L", (1024, 2), 128), "JPEG")
    assert not stored.resized and decoded.size == (1024, 2)


@needs_shared
def test_a_file_url_mirror_works_and_a_missing_file_fails_at_once(fixture_set, origin, tmp_path):
    mirror = tmp_path / "mirror"
    for path, blob in origin.blobs.items():
        if not path.endswith("big.src"):  # left out of the mirror
            (mirror / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (mirror / path.lstrip("/")).write_bytes(blob)
    args = ["fetch", str(fixture_set), "--to", str(tmp_path / "out"), "--base-url", mirror.as_uri()]
    result = CliRunner().invoke(data_app, args)
    assert result.exit_code == EXIT_SOME_FAILED
    assert "error: images/covid-cxnet/Covid/big.png: no such file" in result.stderr
    assert "6 files selected: 5 fetched, 0 already present, 1 failed." in result.stdout


@needs_shared
def test_a_silent_server_times_out(fixture_set, origin, tmp_path):
    target = "images/covid-cxnet/Covid/big.png"
    origin.modes[url_path(fixture_set, target)] = "hang"
    args = ("--timeout", "1", "--attempts", "1", "--source", "covid-cxnet")
    result = fetch(fixture_set, tmp_path / "out", origin, *args)
    assert result.exit_code == EXIT_SOME_FAILED
    assert f"error: {target}: transfer failed (TimeoutError" in result.stderr
    assert not (tmp_path / "out" / target).exists() and no_part_files(tmp_path / "out")
