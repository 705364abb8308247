"""Fixtures of the trainer tests: small datasets in the train/test layout and one short
real training run through the CLI."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from lungcnn.edge.contract import CLASS_NAMES

SMOKE_SIZE = 64
SMOKE_LIMIT = 6


@dataclass(frozen=True)
class SmokeRun:
    run_dir: Path
    output: str  # what the command printed
    size: int = SMOKE_SIZE
    limit: int = SMOKE_LIMIT


@pytest.fixture(scope="session")
def invoke_train():
    """Run the train command in-process: invoke_train(*args) -> click Result."""
    import typer
    from typer.testing import CliRunner

    from lungcnn.trainer.cli import train_command

    app = typer.Typer(add_completion=False)
    app.command()(train_command)
    return lambda *args: CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="session")
def vendored_fingerprints(dataset_dir):
    from lungcnn.trainer.dataset import fingerprint_files, list_split

    rel_paths = [s.rel_path for split in ("train", "test") for s in list_split(dataset_dir, split)]
    prints, failures = fingerprint_files(dataset_dir, rel_paths)
    assert failures == []
    return prints


@pytest.fixture(scope="session")
def sha256_duplicate_groups(dataset_dir) -> list[set[str]]:
    """Sets of files sharing one checksum, from the dataset's own SHA256SUMS."""
    groups: dict[str, set[str]] = {}
    for line in (dataset_dir / "SHA256SUMS").read_text().splitlines():
        digest, rel_path = line.split(maxsplit=1)
        groups.setdefault(digest, set()).add(rel_path.strip())
    return [files for files in groups.values() if len(files) > 1]


@pytest.fixture(scope="session")
def kaggle_like_dataset(tmp_path_factory, dataset_dir) -> Path:
    """Real scans re-saved the way the original Kaggle release mixes them: .jpeg/.jpg/.png in
    any letter case, RGB and grayscale, 240 px to 4100 px, non-square."""
    root = tmp_path_factory.mktemp("kaggle_like")
    variants = [
        (".jpeg", (240, 260), "L"),
        (".JPG", (900, 700), "RGB"),
        (".Png", (4100, 300), "L"),
        (".png", (512, 512), "RGB"),
    ]
    for split in ("train", "test"):
        for name in CLASS_NAMES:
            sources = sorted((dataset_dir / split / name).iterdir())
            folder = root / split / name
            folder.mkdir(parents=True)
            for index, (suffix, size, mode) in enumerate(variants):
                with Image.open(sources[index]) as image:
                    image.convert(mode).resize(size).save(folder / f"scan{index}{suffix}")
            (folder / "notes.txt").write_text("not a scan; ignored")
    return root


@pytest.fixture()
def corrupt_dataset(tmp_path, dataset_dir) -> Path:
    """Two real scans per class and split, plus one truncated file in train/Normal."""
    for split in ("train", "test"):
        for name in CLASS_NAMES:
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for source in sorted((dataset_dir / split / name).iterdir())[:3]:
                shutil.copy(source, folder / source.name)
    data = (dataset_dir / "train" / "Normal" / "01.jpeg").read_bytes()
    (tmp_path / "train" / "Normal" / "broken.jpeg").write_bytes(data[: len(data) // 50])
    return tmp_path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, dataset_dir, invoke_train) -> SmokeRun:
    """A real 2-epoch training of the reference architecture through the CLI."""
    pytest.importorskip("tensorflow")
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = invoke_train(
        "--arch",
        "reference",
        "--data",
        dataset_dir,
        "--out",
        run_dir,
        "--epochs",
        2,
        "--limit-per-class",
        SMOKE_LIMIT,
        "--size",
        SMOKE_SIZE,
        "--exclude-finding",  # the base set has no findings: nothing left out
        "nodule",
    )
    assert result.exit_code == 0, result.output
    return SmokeRun(run_dir, result.output)
