"""`--method gan`: the Extend-GAN generator behind the filler interface.

The generator and its checkpoints arrive with the model package (see docs/model.md). Until a checkpoint is
available this module explains what is missing instead of failing obscurely.
"""

from __future__ import annotations

from extendgan_geo.errors import CheckpointError
from extendgan_geo.fillers.base import Filler


def load_gan_filler(model: str | None, *, device: str, bands: int) -> Filler:
    """Load an Extend-GAN checkpoint as a filler.

    Args:
        model: checkpoint path (safetensors + JSON metadata), or None for the bundled model.
        device: "auto", "cpu" or "cuda".
        bands: HR band count the run fills.

    Raises:
        CheckpointError: no checkpoint can be loaded.
    """
    try:
        from extendgan_geo.model.checkpoint import load_filler
    except ImportError as exc:
        raise CheckpointError(
            "--method gan needs the Extend-GAN model package, which this version does not ship yet; "
            "expected a trained checkpoint: use --method match"
        ) from exc
    return load_filler(model, device=device, bands=bands)
