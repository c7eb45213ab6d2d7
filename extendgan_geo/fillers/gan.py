"""`--method gan`: an Extend-GAN generator checkpoint behind the filler interface.

The reference is first brought to HR radiometry by the same per-window matching as `--method match` (when the
checkpoint was trained with `ref_input = "matched"`), then both are scaled with the fixed per-band statistics
stored in the checkpoint, passed through the generator in batches, and scaled back to file units.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from typing import Any

import numpy as np

from extendgan_geo.errors import BandMismatchError, CheckpointError, ConfigError
from extendgan_geo.fillers.base import TileBatch
from extendgan_geo.fillers.match import MatchFiller
from extendgan_geo.scaling import BandScaling

logger = logging.getLogger(__name__)

BUNDLED = "extendgan_geo.weights"


def bundled_model() -> str | None:
    """Path of the model shipped in the package, or None when there is none."""
    try:
        files = resources.files(BUNDLED)
    except ModuleNotFoundError:
        return None
    path = files / "default.safetensors"
    return str(path) if path.is_file() else None


def pick_device(device: str) -> str:
    """Resolve "auto" to "cuda" when available, else "cpu".

    Raises:
        ConfigError: "cuda" was asked for and torch sees no GPU.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA GPU; expected --device cpu or auto")
    return device


class GanFiller:
    """A trained generator as a filler.

    Args:
        generator: the torch generator (eval mode).
        meta: checkpoint metadata.
        model_hash: sha256 of the checkpoint file.
        device: torch device name.
        precision: "fp32" or "bf16" (autocast).
    """

    name = "gan"

    def __init__(
        self, generator: Any, meta: dict[str, Any], *, model_hash: str, device: str, precision: str = "fp32"
    ) -> None:
        self.generator = generator.to(device)
        self.precision = precision
        self.meta = meta
        self.model_hash = model_hash
        self.device = device
        cfg = meta["generator"]
        self.bands: int | None = int(cfg["bands"])
        self.ref_bands: int | None = int(cfg["ref_bands"])
        # The generator is fully convolutional (it pads to a multiple of 4 itself): any tile works unless the
        # checkpoint pins one.
        self.tile: int | None = int(meta["tile"]) if meta.get("tile") else None
        self.scaling = BandScaling.from_dict(meta["scaling"]["hr"])
        self.ref_input = meta.get("ref_input", "matched")
        self.ref_scaling = (
            self.scaling if self.ref_input == "matched" else BandScaling.from_dict(meta["scaling"]["ref"])
        )
        self.matcher = MatchFiller(self.bands) if self.ref_input == "matched" else None

    def prepare(self, sample: TileBatch) -> None:
        """Fit the scene-wide radiometric match of the reference (matched-input models)."""
        if self.matcher is not None:
            self.matcher.prepare(sample)

    def __call__(self, batch: TileBatch) -> np.ndarray:
        """Predict the windows: (N, C, T, T) float32 in file units, NaN where the reference has no data."""
        import torch

        ref = self.matcher(batch) if self.matcher is not None else batch.ref
        ref_ok = np.isfinite(ref).all(axis=1, keepdims=True)
        hr = self.scaling.to_model(batch.hr, axis=1)
        ref_m = np.where(ref_ok, self.ref_scaling.to_model(np.nan_to_num(ref), axis=1), 0.0)
        gap = batch.gap.astype(np.float32)
        bf16 = self.precision == "bf16"
        tensors = [
            torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device) for a in (hr, ref_m, gap)
        ]
        # On CPUs one window per call is faster than a batch (0.58 vs 1.0 s per window for the paper network,
        # docs/benchmarks.md); GPUs take the whole batch.
        step = 1 if self.device == "cpu" else len(batch)
        outs = []
        with (
            torch.inference_mode(),
            torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=bf16),
        ):
            for i in range(0, len(batch), step):
                outs.append(self.generator(*(t[i : i + step] for t in tensors)).float().cpu())
        pred = self.scaling.from_model(torch.cat(outs).numpy(), axis=1)
        return np.where(ref_ok, pred, np.float32(np.nan)).astype(np.float32)


def load_gan_filler(model: str | None, *, device: str, bands: int, precision: str = "fp32") -> GanFiller:
    """Load an Extend-GAN checkpoint (or the bundled one) as a filler.

    Args:
        model: checkpoint path, or None for the model shipped in the package.
        device: "auto", "cpu" or "cuda".
        bands: HR band count the run fills.
        precision: "fp32" or "bf16".

    Raises:
        CheckpointError: no checkpoint, or an unreadable one.
        BandMismatchError: the checkpoint was trained for another band count.
    """
    from extendgan_geo.model.checkpoint import file_sha256, load_generator

    path = model or bundled_model()
    if path is None:
        raise CheckpointError(
            "--method gan found no bundled model in this installation; expected a checkpoint: pass --model PATH "
            "(from `egan-fill train`) or use --method match"
        )
    generator, meta = load_generator(path)
    trained = int(meta["generator"]["bands"])
    if trained != bands:
        names = ",".join(meta.get("band_names", [])) or f"{trained} bands"
        raise BandMismatchError(
            f"model {os.path.basename(path)!r} was trained for {trained} bands ({names}) but {bands} are selected; "
            f"expected {trained}: select them with -b/--bidx and --ref-bidx, or train a model for this layout"
        )
    filler = GanFiller(generator, meta, model_hash=file_sha256(path), device=pick_device(device), precision=precision)
    logger.info("gan: %s (%s), device %s", os.path.basename(path), filler.model_hash[:12], filler.device)
    return filler
