"""The filler interface shared by the non-learned matcher and learned generators (numpy in, numpy out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from scipy import ndimage

# Neighbourhood of the "local" uncertainty, HR pixels.
LOCAL_SIZE = 7


@dataclass(frozen=True)
class TileBatch:
    """A batch of windows handed to a filler.

    Attributes:
        hr: (N, C, T, T) float32 HR values in file units, 0 inside the gap.
        ref: (N, C_ref, T, T) float32 reference on the HR grid in its own units, NaN where it has no data.
        gap: (N, 1, T, T) bool, True where the pixel must be filled.
        origins: (N, 2) int64 scene (row, col) of each window's top-left pixel; windows smaller than T (small
            scenes) are padded by reflection, so `origins` + index can lie outside the scene there.
        scale: the reference's pixel size over the HR's (its scale factor; 1 when not known).
    """

    hr: np.ndarray
    ref: np.ndarray
    gap: np.ndarray
    origins: np.ndarray
    scale: float = 1.0

    def __len__(self) -> int:
        return int(self.hr.shape[0])


@runtime_checkable
class Filler(Protocol):
    """Predicts HR-band values for a batch of windows.

    Attributes:
        name: short name recorded in provenance tags ("match", "gan", ...).
        bands: HR band count it expects, or None for any.
        ref_bands: reference band count it expects, or None for any.
        tile: window edge it needs, or None for any.
        model_hash: sha256 of the weights, or "" for non-learned fillers.

    Fillers that can estimate their uncertainty (--uncertainty) also have `supports_spread = True` and
    `spread_methods`, the OutputConfig.uncertainty_method values they accept ("local" is computed by the engine from
    the image written); for their own kinds the pipeline sets `spread` (True) and `spread_method`, and `__call__`
    returns one extra channel, the uncertainty in file units.
    """

    name: str
    bands: int | None
    ref_bands: int | None
    tile: int | None
    model_hash: str

    def prepare(self, sample: TileBatch) -> None:
        """See a sparse sample of the scene once before the first window (may do nothing)."""
        ...

    def __call__(self, batch: TileBatch) -> np.ndarray:
        """Predict the windows of `batch`.

        Returns:
            (N, C, T, T) float32 in HR file units; NaN where no prediction can be made.
        """
        ...


def local_variability(pred: np.ndarray, batch: TileBatch) -> np.ndarray:
    """The "local" uncertainty of filled windows: (N, 1, T, T) float32, NaN where `pred` is NaN.

    The RMS over bands of the standard deviation in a LOCAL_SIZE x LOCAL_SIZE neighbourhood of the filled image
    (the prediction in the gap, the HR pixels around it), in file units. Fills miss most where the scene has edges
    and texture, so this ranks a fill's errors (measured in docs/model.md). NaN pixels are left out of their
    neighbours' statistics.

    Args:
        pred: (N, C, T, T) prediction in file units, NaN where the reference has no data.
        batch: the windows it was predicted for.
    """
    image = np.where(batch.gap, pred, batch.hr).astype(np.float64)
    ok = np.isfinite(image).all(axis=1, keepdims=True)
    image = np.where(ok, image, 0.0)
    size = (1, 1, LOCAL_SIZE, LOCAL_SIZE)
    weight = np.maximum(ndimage.uniform_filter(ok.astype(np.float64), size, mode="reflect"), 1e-12)
    mean = ndimage.uniform_filter(image, size, mode="reflect") / weight
    square = ndimage.uniform_filter(image * image, size, mode="reflect") / weight
    spread = np.sqrt(np.maximum(square - mean * mean, 0.0).mean(axis=1, keepdims=True))
    return np.where(ok, spread, np.nan).astype(np.float32)
