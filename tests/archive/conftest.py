"""Fixtures for `classify-archive`: one local Ray (127.0.0.1, 2 CPUs, small object store) for
the whole session, archives generated from the committed scans, and `edge-classify --json`
records of the same files to compare with."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from lungcnn.archive.cli import keep_ray_on_loopback

keep_ray_on_loopback()  # before anything imports Ray: the test cluster listens on 127.0.0.1

SCANS_DIR = Path(__file__).resolve().parents[1] / "scans"
ARCHIVE_SIZE = 240
OBJECT_STORE_BYTES = 96 * 1024 * 1024


@pytest.fixture(scope="module")
def ray_cluster():
    """A private Ray on 127.0.0.1 started as `classify-archive --address local` starts one:
    once, for the one module that uses it, and stopped before the rest of the suite runs."""
    import ray

    from lungcnn.archive.job import code_runtime_env

    ray.init(address="local", num_cpus=2, object_store_memory=OBJECT_STORE_BYTES,
             include_dashboard=False, runtime_env=code_runtime_env(), log_to_driver=False)
    assert [node["NodeManagerAddress"] for node in ray.nodes()] == ["127.0.0.1"]
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def int8_model(tiny_tflite_models) -> Path:
    return tiny_tflite_models["int8"]


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    """ARCHIVE_SIZE small scans in nested folders: the committed scans resized to 40-96 px,
    with different contrast, as PNG or JPEG."""
    root = tmp_path_factory.mktemp("archive")
    sources = sorted(p for p in SCANS_DIR.iterdir() if p.suffix in (".jpg", ".png"))
    originals = [Image.open(p).convert("L") for p in sources]
    chooser = random.Random(15)
    for index in range(ARCHIVE_SIZE):
        side = chooser.randint(40, 96)
        image = originals[index % len(originals)].resize((side, side))
        image = ImageEnhance.Contrast(image).enhance(chooser.uniform(0.7, 1.3))
        folder = root / f"study-{index // 50:02d}"
        folder.mkdir(exist_ok=True)
        suffix = ".png" if index % 3 else ".jpg"
        image.save(folder / f"scan-{index:04d}{suffix}")
    return root


@pytest.fixture(scope="session")
def mixed_archive(tmp_path_factory) -> Path:
    """Good scans and files no decoder accepts, side by side."""
    root = tmp_path_factory.mktemp("mixed")
    sources = sorted(p for p in SCANS_DIR.iterdir() if p.suffix in (".jpg", ".png"))
    for source in sources:
        (root / source.name).write_bytes(source.read_bytes())
    (root / "text.png").write_text("not an image\n")
    (root / "empty.jpg").write_bytes(b"")
    (root / "truncated.png").write_bytes(sources[1].read_bytes()[:200])
    (root / "random.jpg").write_bytes(random.Random(0).randbytes(3000))
    return root


def edge_records(model: Path, *targets: Path) -> dict[str, dict]:
    """`edge-classify --json --model MODEL TARGETS...`, run in process, by file."""
    from lungcnn.edge import cli

    result = CliRunner().invoke(cli.app, ["--json", "--model", str(model),
                                          *map(str, targets)])
    assert result.exit_code in (0, 1), result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return {record["file"]: record for record in records}


@pytest.fixture(scope="session")
def edge_json():
    """`edge_records` for tests (conftest modules are not importable)."""
    return edge_records


@pytest.fixture(scope="session")
def archive_reference(int8_model, archive) -> dict[str, dict]:
    return edge_records(int8_model, archive)
