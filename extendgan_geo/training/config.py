"""Training settings: one frozen dataclass, presets, and loading from TOML with flag overrides."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any

from extendgan_geo import masks_synth
from extendgan_geo.config import SIMULATED_KERNELS
from extendgan_geo.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved in every checkpoint).

    Attributes:
        hr: HR rasters trained with a simulated reference.
        pairs: (HR, reference) raster pairs of the same area.
        bidx: HR bands (1-based; None = all but alpha).
        ref_bidx: reference bands of the pairs, paired with `bidx`.
        out: run folder (checkpoints, CSV log, config copy).
        preset: name of the preset these values started from.
        width: generator width (32 = the paper's network).
        disc_width: discriminator width (64 = the authors').
        larn: LARN on/off (Table II). larn_stats: "paper" or "code".
        instance_norm: instance norm after each gated convolution (authors' code).
        residual: the generator predicts a correction to the matched reference (ours; off in "paper"/"code").
        triplet: triplet loss on/off (Table II). margin: triplet alpha.
        adv_relu: generator loss -mean(ReLU(D)) as printed in eq. 4 (False: the authors' -mean(D)).
        lambda_adv, lambda_triplet, lambda_rec: loss weights of eq. 12.
        lr_g, lr_d: Adam learning rates; betas: Adam betas. cosine: cosine-anneal both learning rates to 1 %.
        epochs: passes over `samples_per_epoch` training samples. batch_size: samples per step.
        crop: crop edge, px. block: split-block edge, px. val_fraction: share of blocks for validation.
        val_samples: validation samples per epoch (fixed set).
        samples_per_epoch: training samples per epoch.
        factor: simulated-reference downsampling range (HR px per reference px).
        mask_kinds: training mask layouts. mask_files: user mask rasters (non-zero = gap) for kind "file".
        seed: seed of the split, the samples and the weights.
        device: "auto", "cpu" or "cuda". amp: bf16/fp16 autocast on CUDA.
        workers: processes that draw training samples ahead of the model (torch DataLoader; 0 = draw them in the
            training process). The samples and their order are the same for any count.
        resume: checkpoint (`last.safetensors`) to continue from.
        max_minutes: stop after the epoch that ends past this wall-clock budget (0 = no limit); the run stays
            resumable (`resume`), so a long run can be trained in chunks on a shared or time-limited machine.
        resampling: how references reach the HR grid in training, "bilinear", "cubic" or "lanczos"; recorded in
            the checkpoint, and a fill whose --resampling is neither it nor an interpolating kernel of its family
            (cubic and lanczos) logs a warning.
        init: generator checkpoint whose weights start the run (fine-tuning; "default" = the bundled model); the
            discriminator and optimisers start fresh. Its architecture must equal this run's. Ignored with `resume`
            (the run's own weights are restored), so a fine-tune's settings file also resumes it.
        bandwise: 0 = a model for the rasters' band count; K > 0 = one band-agnostic model (any band count,
            any dtype) trained on K bands drawn per sample.
        val_hr: rasters used only for validation (a split by file; their blocks are never trained on).
        known_weight: weight of the reconstruction loss outside the gap (1 = the paper's plain L1).
        compile: train the generator through `torch.compile` (fuses the element-wise work of the gates, LARN and
            ELU; for GPUs, where a narrow network is bound by memory traffic, not arithmetic). Validation and the
            checkpoints use the plain module. A compile error stops the run.
        scale_input: the generator also reads the reference's scale factor (see `GeneratorConfig`): the simulated
            factor, or a real pair's pixel-size ratio. Starting from a checkpoint without it (`init`) keeps that
            checkpoint's output at the first step.
    """

    hr: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    bidx: tuple[int, ...] | None = None
    ref_bidx: tuple[int, ...] | None = None
    out: str = "runs/egan"
    preset: str = "small"
    width: int = 12
    disc_width: int = 32
    larn: bool = True
    larn_stats: str = "paper"
    instance_norm: bool = False
    residual: bool = True
    triplet: bool = True
    margin: float = 0.1
    adv_relu: bool = True
    lambda_adv: float = 0.01
    lambda_triplet: float = 0.1
    lambda_rec: float = 1.0
    lr_g: float = 2e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.5, 0.9)
    cosine: bool = True
    epochs: int = 30
    batch_size: int = 8
    crop: int = 128
    block: int = 256
    val_fraction: float = 0.2
    val_samples: int = 64
    samples_per_epoch: int = 512
    factor: tuple[float, float] = (2.0, 10.0)
    mask_kinds: tuple[str, ...] = ("half", "quarter", "rectangle", "seam", "cloud")
    mask_files: tuple[str, ...] = ()
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    resume: str | None = None
    init: str | None = None
    max_minutes: float = 0.0
    resampling: str = "bilinear"
    bandwise: int = 0
    val_hr: tuple[str, ...] = ()
    known_weight: float = 1.0
    compile: bool = False
    scale_input: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.crop % 4 or self.crop < 64:
            raise ConfigError(f"crop must be a multiple of 4 and >= 64 px, got {self.crop}")
        if self.epochs < 1 or self.batch_size < 1 or self.samples_per_epoch < self.batch_size:
            raise ConfigError("epochs and batch_size must be >= 1 and samples_per_epoch >= batch_size")
        if self.larn_stats not in ("paper", "code"):
            raise ConfigError(f"larn_stats must be 'paper' or 'code', got {self.larn_stats!r}")
        if self.bandwise < 0 or not 0.0 <= self.known_weight <= 1.0:
            raise ConfigError(
                f"bandwise must be >= 0 and known_weight in [0, 1], got {self.bandwise} and {self.known_weight}"
            )
        if self.resampling not in SIMULATED_KERNELS:
            raise ConfigError(f"resampling must be one of {', '.join(SIMULATED_KERNELS)}, got {self.resampling!r}")
        if self.max_minutes < 0:
            raise ConfigError(f"max_minutes must be >= 0 (0 = no limit), got {self.max_minutes}")
        if self.lambda_adv < 0 or self.lambda_triplet < 0 or self.lambda_rec <= 0:
            raise ConfigError(
                f"loss weights must be lambda_adv, lambda_triplet >= 0 and lambda_rec > 0, got "
                f"{self.lambda_adv}, {self.lambda_triplet} and {self.lambda_rec}"
            )
        known_kinds = masks_synth.KNOWN_KINDS
        unknown = [k for k in self.mask_kinds if k not in known_kinds]
        if unknown or not self.mask_kinds:
            raise ConfigError(
                f"mask_kinds {list(self.mask_kinds)} has unknown or no kinds; expected some of {known_kinds}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's network and optimisation (Sec. III-A-2): width 32, batch 8, 256 px crops, lr 1e-5 / 1e-4.
    "paper": {
        "width": 32,
        "disc_width": 64,
        "crop": 256,
        "block": 512,
        "batch_size": 8,
        "lr_g": 1e-5,
        "lr_d": 1e-4,
        "epochs": 2400,
        "samples_per_epoch": 1800,
        "cosine": False,
        "residual": False,
    },
    # The authors' code: instance norm, their LARN statistics, margin 0.3, lr 5e-4 / 1e-3 with cosine decay.
    "code": {
        "width": 32,
        "disc_width": 64,
        "crop": 256,
        "block": 512,
        "batch_size": 8,
        "lr_g": 5e-4,
        "lr_d": 1e-3,
        "epochs": 2400,
        "samples_per_epoch": 1800,
        "margin": 0.3,
        "instance_norm": True,
        "larn_stats": "code",
        "cosine": True,
        "residual": False,
    },
    # Trains usefully on a 2-core CPU in about an hour (the TrainConfig defaults): width 12, 128 px crops,
    # residual over the matched reference, the authors' generator adversarial loss.
    "small": {"adv_relu": False},
}


def _coerce(name: str, value: Any) -> Any:
    tuples = {"hr", "val_hr", "bidx", "ref_bidx", "betas", "factor", "mask_kinds", "mask_files"}
    if name == "pairs":
        return tuple(tuple(p) for p in value)
    if name in tuples and value is not None:
        return tuple(value)
    return value


def build_config(preset: str, settings: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Preset, then TOML file, then flags (later wins).

    Raises:
        ConfigError: unknown preset, unreadable file or unknown key.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[preset], "preset": preset}
    if settings:
        try:
            with open(settings, "rb") as f:
                values.update(tomllib.load(f).get("train", {}))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"cannot read settings {settings!r} ({exc}); expected a TOML file with a [train] table"
            ) from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown training setting(s) {unknown}; expected some of {sorted(known)}")
    return TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})


def to_toml(cfg: TrainConfig) -> str:
    """A [train] TOML table with every setting, to reproduce the run."""
    lines = ["[train]"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None or f.name == "extra":
            continue
        lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"
