"""Images that are not chest X-rays, for measuring how often the X-ray gate refuses them.

Assembled at run time from images that ship inside installed Python packages (scikit-learn's
sample photos, matplotlib's sample data: a photo, logos, an MRI slice, elevation maps) plus
synthetic ones (blank, noise, gradients, text documents, CT-like and ultrasound-like
slices, a chart), and crops, rotations, grayscale and colour variants of those.
Nothing is downloaded and no third-party image is committed to the repository.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

SYNTHETIC_SIDE = 512


def packaged_images() -> Iterator[tuple[str, Image.Image]]:
    """Images shipped inside scikit-learn and matplotlib (skipped when not installed)."""
    try:
        from sklearn.datasets import load_sample_images

        sample = load_sample_images()
        for name, pixels in zip(sample.filenames, sample.images):
            yield Path(name).stem, Image.fromarray(pixels)
    except ImportError:
        pass
    try:
        from matplotlib import cbook
    except ImportError:
        return
    for name in ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png"):
        with Image.open(cbook.get_sample_data(name, asfileobj=False)) as image:
            yield Path(name).stem, image.convert("RGB")
    with cbook.get_sample_data("s1045.ima.gz") as stream:
        mri = np.frombuffer(stream.read(), np.uint16).reshape(256, 256)
    yield "mri_slice_16bit", Image.fromarray(mri.astype(np.uint16))
    for name, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        with np.load(cbook.get_sample_data(name, asfileobj=False)) as data:
            yield Path(name).stem.split(".")[0], _to_gray_image(data[key])


def synthetic_images(seed: int = 0) -> Iterator[tuple[str, Image.Image]]:
    rng = np.random.default_rng(seed)
    side = SYNTHETIC_SIDE
    ramp = np.linspace(0, 255, side)
    yield "blank_black", Image.new("L", (side, side), 0)
    yield "blank_white", Image.new("L", (side, side), 255)
    yield "blank_gray", Image.new("L", (side, side), 128)
    yield "uniform_noise", Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8))
    yield "gaussian_noise", _to_gray_image(rng.normal(128, 40, (side, side)))
    yield "gradient_horizontal", _to_gray_image(np.tile(ramp, (side, 1)))
    yield "gradient_vertical", _to_gray_image(np.tile(ramp[:, None], (1, side)))
    yy, xx = np.mgrid[-1:1:side * 1j, -1:1:side * 1j]
    yield "gradient_radial", _to_gray_image(-np.hypot(xx, yy))
    yield "checkerboard", _to_gray_image(((xx * 8).astype(int) + (yy * 8).astype(int)) % 2)
    for index in range(3):
        yield f"text_document_{index}", _text_document(rng, side)
    for index in range(3):
        yield f"ct_like_slice_{index}", _ct_like_slice(rng, side)
    yield "ultrasound_like", _ultrasound_like(rng, side)
    yield "bar_chart", _bar_chart(rng, side)


def non_xray_images(seed: int = 0) -> list[tuple[str, Image.Image]]:
    """The whole set: each source image plus grayscale, crop, rotation and colour variants."""
    images: list[tuple[str, Image.Image]] = []
    for name, image in [*packaged_images(), *synthetic_images(seed)]:
        images.append((name, image))
        images.extend(_variants(name, image))
    return images


def write_non_xray_images(folder: str | Path, seed: int = 0) -> list[Path]:
    """Write the set into `folder` (PNG, and JPEG for photos) and return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in non_xray_images(seed):
        is_photo = image.mode == "RGB"
        path = folder / f"{name}.{'jpg' if is_photo else 'png'}"
        image.save(path, quality=90) if is_photo else image.save(path)
        paths.append(path)
    return paths


def _variants(name: str, image: Image.Image) -> list[tuple[str, Image.Image]]:
    if image.mode == "I;16" or image.getextrema() in ((0, 0), (255, 255), (128, 128)):
        return []  # blanks and the 16-bit slice: variants would add nothing new
    width, height = image.size
    variants = [
        (f"{name}_rot90", image.rotate(90, expand=True)),
        (f"{name}_crop_center", image.crop((width // 4, height // 4, 3 * width // 4,
                                            3 * height // 4))),
    ]
    if image.mode == "RGB":
        red, green, blue = image.split()
        variants += [
            (f"{name}_gray", ImageOps.grayscale(image)),
            (f"{name}_gray_inverted", ImageOps.invert(ImageOps.grayscale(image))),
            (f"{name}_channels_swapped", Image.merge("RGB", (blue, red, green))),
        ]
    else:
        variants.append((f"{name}_inverted", ImageOps.invert(image.convert("L"))))
    return variants


def _to_gray_image(values: np.ndarray) -> Image.Image:
    values = np.asarray(values, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
    return Image.fromarray(np.rint(scaled).astype(np.uint8))


def _text_document(rng: np.random.Generator, side: int) -> Image.Image:
    image = Image.new("L", (side, int(side * 1.3)), 245)
    draw = ImageDraw.Draw(image)
    words = ["patient", "report", "chest", "findings", "normal", "lung", "the", "of", "and",
             "radiograph", "impression", "no", "acute", "process", "2020", "page"]
    y = 30
    while y < image.size[1] - 30:
        line = " ".join(rng.choice(words, size=int(rng.integers(4, 9))))
        draw.text((30, y), line, fill=int(rng.integers(0, 60)))
        y += int(rng.integers(14, 22))
    return image


def _ct_like_slice(rng: np.random.Generator, side: int) -> Image.Image:
    """A bright ring (the body wall) on black, dark lungs and round bright structures."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    centre = side / 2
    pixels = np.zeros((side, side))
    body = ((xx - centre) / (side * 0.42)) ** 2 + ((yy - centre) / (side * 0.32)) ** 2
    pixels[body < 1] = 110
    pixels[(body < 1) & (body > 0.85)] = 230
    for offset in (-0.17, 0.17):
        lung = ((xx - centre - offset * side) / (side * 0.13)) ** 2 + (
            (yy - centre) / (side * 0.2)
        ) ** 2
        pixels[lung < 1] = 25
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = centre + rng.normal(0, side * 0.08, 2)
        radius = rng.uniform(0.02, 0.05) * side
        pixels[np.hypot(xx - cx, yy - cy) < radius] = rng.uniform(180, 255)
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(1.5)
    )


def _ultrasound_like(rng: np.random.Generator, side: int) -> Image.Image:
    """A speckled fan on black."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    radius, angle = np.hypot(xx - side / 2, yy), np.arctan2(xx - side / 2, yy)
    fan = (radius < side * 0.95) & (np.abs(angle) < 0.6)
    speckle = rng.rayleigh(40, (side, side)) * np.exp(-radius / side)
    return _to_gray_image(np.where(fan, speckle, 0))


def _bar_chart(rng: np.random.Generator, side: int) -> Image.Image:
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    draw.line((40, side - 40, side - 20, side - 40), fill="black", width=2)
    draw.line((40, 20, 40, side - 40), fill="black", width=2)
    colours = ["steelblue", "darkorange", "seagreen", "crimson", "purple"]
    for index, colour in enumerate(colours):
        height = int(rng.uniform(0.2, 0.9) * (side - 80))
        left = 60 + index * 85
        draw.rectangle((left, side - 40 - height, left + 60, side - 41), fill=colour)
    return image
