"""Training configuration: frozen dataclasses, saved resolved in every run's manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from lungcnn.edge.contract import INPUT_SIZE


@dataclass(frozen=True)
class Augmentation:
    """Random transforms applied to training batches in the tf.data pipeline (never inside
    the saved model). Geometric settings follow the reference notebook; the acquisition
    settings (brightness ... jpeg) are off by default and mimic other scanners and
    re-encodings for an acquisition-robust recipe."""

    zoom: float = 0.2  # zoom in or out by up to this fraction
    rotation_degrees: float = 15.0
    shift: float = 0.05  # width and height translation, fraction of the side
    brightness: float = 0.0  # max additive shift, fraction of the 0-255 range
    contrast: float = 0.0  # contrast factor drawn from [1 - contrast, 1 + contrast]
    blur_probability: float = 0.0
    blur_max_sigma: float = 2.0  # pixels at the input size
    downscale_probability: float = 0.0  # shrink, then enlarge back: a low-resolution source
    downscale_min_factor: float = 0.25
    jpeg_probability: float = 0.0
    jpeg_min_quality: int = 30  # quality drawn from [jpeg_min_quality, 95]
    gamma: float = 0.0  # gamma drawn log-uniformly from [1 / (1 + gamma), 1 + gamma]: film look
    noise: float = 0.0  # gaussian noise, its std drawn from [0, noise] of the 0-255 range
    # Geometric fill: "nearest" as the reference notebook, or "constant" (black, like the
    # corners of a rotated export; the edge-native recipe uses it).
    fill_mode: Literal["nearest", "constant"] = "nearest"

    @classmethod
    def none(cls) -> Augmentation:
        return cls(zoom=0.0, rotation_degrees=0.0, shift=0.0)


@dataclass(frozen=True)
class TrainConfig:
    """A full training recipe. An architecture declares its default one; CLI options override
    fields; the resolved config is saved in the manifest."""

    input_size: int = INPUT_SIZE
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 0.005
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = 0  # linear warm-up before the cosine decay
    weight_decay: float = 0.0  # > 0 switches Adam to AdamW
    label_smoothing: float = 0.0
    early_stopping: bool = False  # on validation AUC
    early_stopping_patience: int = 10
    val_fraction: float = 0.2
    seed: int = 0  # weights, shuffling and augmentation
    split_seed: int = 0  # the train/validation split, fixed so seeds compare on the same data
    dedup: bool = False  # drop validation files byte-identical to a training file
    limit_per_class: int | None = None  # small subsets for fast tests
    exclude_sources: tuple[str, ...] = ()  # sources left out entirely (leave-one-source-out)
    exclude_findings: tuple[str, ...] = ()  # scans with these manifest findings left out
    # Weight each training scan by 1 / (scans of its source and class), so every
    # source-class pair weighs the same in the loss and no source dominates a class.
    balance_sources: bool = False
    # Contract 2: the lung-field segmenter (.tflite with its manifest) whose crop the model
    # sees, the margin around the lung box, whether the crop is equalised and whether what lies
    # outside the lungs is masked; None: contract 1.
    lung_field: str | None = None
    lung_margin: float = 0.08
    equalize: bool = True
    mask_outside: bool = False
    augmentation: Augmentation = field(default_factory=Augmentation)

    def __post_init__(self) -> None:
        problems = [
            message
            for failed, message in (
                (self.input_size < 8, "input_size must be >= 8"),
                (self.epochs < 1, "epochs must be >= 1"),
                (self.batch_size < 1, "batch_size must be >= 1"),
                (self.learning_rate <= 0, "learning_rate must be > 0"),
                (self.lr_schedule not in ("constant", "cosine"), "lr_schedule: constant or cosine"),
                (not 0 < self.val_fraction < 1, "val_fraction must be between 0 and 1"),
                (
                    self.limit_per_class is not None and self.limit_per_class < 2,
                    "limit_per_class must be >= 2",
                ),
            )
            if failed
        ]
        if problems:
            raise ValueError("; ".join(problems))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, fields: dict) -> TrainConfig:
        """The config `to_json` saved (in a manifest or a benchmark result)."""
        tuples = {key: tuple(fields[key]) for key in ("exclude_sources", "exclude_findings")
                  if key in fields}
        return cls(**{**fields, **tuples,
                      "augmentation": Augmentation(**fields.get("augmentation", {}))})

    def keeps(self, sample) -> bool:
        """Whether a scan (trainer.dataset.Sample) is used: not of an excluded source or
        finding."""
        return sample.source not in self.exclude_sources and (
            sample.finding not in self.exclude_findings
        )
