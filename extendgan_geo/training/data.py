"""Training samples from rasters on disk: real HR/reference pairs or HR rasters with a simulated reference.

Each raster is cut into square blocks of `block` px; blocks are assigned to the training or the validation
split by a seeded hash, and every crop lies inside one block, so no pixel is shared by the two splits. Sample i
of epoch e is drawn from a generator seeded by (seed, split, epoch, i): the data of a run is a pure function of
its configuration, which makes resumed runs continue identically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import rasterio
from rasterio.windows import Window

from extendgan_geo import masks_synth
from extendgan_geo.degrade import DegradeConfig, simulate_reference
from extendgan_geo.errors import InputError
from extendgan_geo.fillers.match import fit_gain_bias
from extendgan_geo.io.raster import HrRaster, open_raster
from extendgan_geo.io.reference import RefGrid
from extendgan_geo.scaling import BandScaling, WindowScaling, band_range

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    """One training raster: an HR file, optionally with a real reference of the same area.

    Attributes:
        hr: HR raster path.
        ref: reference raster path, or None to simulate one.
        indexes: HR bands, 1-based (None = every band, alpha-tagged ones included).
        ref_indexes: reference bands paired with `indexes` (None = same count, in order).
        split: "train" or "val" puts every block of the raster in that split (a validation set split by
            file); None splits the raster's blocks by the seeded hash.
    """

    hr: str
    ref: str | None = None
    indexes: tuple[int, ...] | None = None
    ref_indexes: tuple[int, ...] | None = None
    split: str | None = None


@dataclass
class _Source:
    spec: SourceSpec
    hr: HrRaster
    ref: RefGrid | None
    blocks: dict[str, list[tuple[int, int]]]
    band_range: np.ndarray | None = None


def _split_of(path: str, r: int, c: int, seed: int, val_fraction: float) -> str:
    digest = hashlib.sha256(f"{seed}:{path}:{r}:{c}".encode()).digest()
    return "val" if int.from_bytes(digest[:4], "little") / 2**32 < val_fraction else "train"


class RasterSamples:
    """Crops with their reference and a mask, from a list of sources.

    Args:
        specs: training rasters.
        crop: crop edge, px (multiple of 4).
        block: split-block edge, px (>= crop).
        val_fraction: share of blocks held out for validation.
        mask_kinds: mask layouts to draw from (see masks_synth); "file" uses `mask_pool`.
        mask_pool: user mask rasters loaded as bool arrays (True = gap).
        degrade: simulated-reference settings.
        seed: base seed of the split and of every sample.
        min_valid: smallest share of valid HR pixels a crop may have.
        bandwise: 0 = every sample has all bands of its raster (all rasters must have the same count) and
            the fixed per-band scaling; K > 0 = band-agnostic samples of K bands drawn from the raster's bands
            (with repeats when it has fewer), standardised per window (`WindowScaling`).
        resampling: how references reach the HR grid ("bilinear", "cubic" or "lanczos"), as `egan-fill --resampling`.
    """

    def __init__(
        self,
        specs: list[SourceSpec],
        *,
        crop: int = 256,
        block: int = 512,
        val_fraction: float = 0.2,
        mask_kinds: tuple[str, ...] = masks_synth.MASK_KINDS,
        mask_pool: list[np.ndarray] | None = None,
        degrade: DegradeConfig | None = None,
        seed: int = 0,
        min_valid: float = 0.98,
        bandwise: int = 0,
        resampling: str = "bilinear",
    ) -> None:
        if not specs:
            raise InputError("no training rasters given; expected --hr FILE or --pair HR:REF at least once")
        self.crop, self.block, self.seed = crop, max(block, crop), seed
        self.mask_kinds, self.mask_pool = mask_kinds, mask_pool or []
        self.degrade = degrade or DegradeConfig()
        self.min_valid = min_valid
        self.bandwise = bandwise
        self.resampling = resampling
        self.window_scaling = WindowScaling()
        self.sources = [self._open(spec, val_fraction) for spec in specs]
        counts = {len(s.hr.indexes) for s in self.sources}
        if bandwise:
            self.bands = bandwise
            for source in self.sources:
                source.band_range = band_range(self._sample_pixels(source))
            self.scaling: BandScaling | None = None
        else:
            if len(counts) != 1:
                raise InputError(
                    f"training rasters have different band counts {sorted(counts)}; expected one: use --bidx "
                    "or a bandwise model"
                )
            self.bands = counts.pop()
            self.scaling = BandScaling.fit(
                np.concatenate([self._sample_pixels(s) for s in self.sources], axis=1).astype(np.float64)
            )
            self.band_range = np.asarray(self.scaling.high) - np.asarray(self.scaling.low)
        if not self.count("train"):
            raise InputError("no training blocks: every raster is in the validation split; expected some for training")

    def _open(self, spec: SourceSpec, val_fraction: float) -> _Source:
        indexes = spec.indexes
        if indexes is None:
            # Every band is data for training: 4-band uint8 files (R,G,B,NIR) are often tagged RGBA.
            with rasterio.open(spec.hr) as probe:
                indexes = tuple(probe.indexes)
        hr = HrRaster.open(spec.hr, indexes=indexes, nodata=None, georeferenced=spec.ref is not None)
        ref = None
        if spec.ref is not None:
            ref_src = open_raster(spec.ref, "reference")
            indexes = spec.ref_indexes or tuple(range(1, len(hr.indexes) + 1))
            ref = RefGrid.build(ref_src, hr.src, indexes=indexes, nodata=None, resampling=self.resampling)
        height, width = hr.shape
        blocks: dict[str, list[tuple[int, int]]] = {"train": [], "val": []}
        for r in range(0, height - self.crop + 1, self.block):
            for c in range(0, width - self.crop + 1, self.block):
                blocks[spec.split or _split_of(spec.hr, r, c, self.seed, val_fraction)].append((r, c))
        if spec.split is None and not blocks["train"] and blocks["val"]:
            # A raster with few blocks may draw none for training: keep its first block for training.
            blocks["train"].append(blocks["val"].pop(0))
        if not blocks["train"] and not blocks["val"]:
            raise InputError(
                f"training raster {spec.hr!r} ({width}x{height}) is smaller than one {self.crop} px crop; "
                "expected a larger raster or a smaller --crop"
            )
        logger.info("%s: %d train and %d validation blocks", spec.hr, len(blocks["train"]), len(blocks["val"]))
        return _Source(spec, hr, ref, blocks)

    def _sample_pixels(self, source: _Source) -> np.ndarray:
        """(C, N) valid pixels from a sparse sample of the raster's training (else validation) blocks."""
        rng = np.random.default_rng(self.seed)
        parts = []
        for r, c in (source.blocks["train"] or source.blocks["val"])[:64]:
            data = source.hr.src.read(list(source.hr.indexes), window=Window(c, r, self.crop, self.crop))
            valid = ~source.hr.holes(source.hr.expand(data), None)
            parts.append(data[:, valid][:, rng.permutation(int(valid.sum()))[:4096]].astype(np.float32))
        return np.concatenate(parts, axis=1)

    def count(self, split: str) -> int:
        """Number of blocks in a split."""
        return sum(len(s.blocks[split]) for s in self.sources)

    def sample(self, split: str, epoch: int, index: int) -> dict[str, Any]:
        """Draw sample `index` of `epoch` (validation ignores the epoch, so it is fixed).

        Returns:
            dict of float32 arrays in model range: "hr" (C, T, T), "ref" (C, T, T) matched to HR radiometry,
            "gap" (1, T, T) 1 = missing; and "factor" (scalar): the simulated reference's scale factor, or a real
            pair's pixel-size ratio.
        """
        tag = f"{self.seed}:{split}:{0 if split == 'val' else epoch}:{index}"
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "little"))
        for _ in range(50):
            pick = self._pick(split, rng)
            if pick is not None:
                break
        else:
            raise InputError("could not find a training crop with enough valid pixels; check the nodata of the rasters")
        hr, ref, factor, ranges = pick
        gap = masks_synth.draw(self.crop, rng, self.mask_kinds, self.mask_pool)
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        arrays = [_augment(a, k, flip) for a in (hr, ref, gap[None])]
        hr, ref, gapf = arrays[0], arrays[1], arrays[2].astype(np.float32)
        ref = _match(hr, ref, gapf[0] > 0)
        if self.scaling is not None:
            hr, ref = self.scaling.to_model(hr), self.scaling.to_model(ref)
        else:
            mean, std = self.window_scaling.stats(ref[None], ranges)
            hr, ref = (hr - mean[0]) / std[0], (ref - mean[0]) / std[0]
        return {"hr": hr.astype(np.float32), "ref": ref.astype(np.float32), "gap": gapf, "factor": np.float32(factor)}

    def _pick(self, split: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, np.ndarray] | None:
        """A valid crop: (HR, reference, its scale factor, band ranges), or None to draw again."""
        weights = np.array([len(s.blocks[split]) for s in self.sources], dtype=np.float64)
        source = self.sources[int(rng.choice(len(self.sources), p=weights / weights.sum()))]
        r0, c0 = source.blocks[split][int(rng.integers(len(source.blocks[split])))]
        height, width = source.hr.shape
        span_r, span_c = min(self.block, height - r0) - self.crop, min(self.block, width - c0) - self.crop
        r, c = r0 + int(rng.integers(span_r + 1)), c0 + int(rng.integers(span_c + 1))
        data = source.hr.src.read(window=Window(c, r, self.crop, self.crop))
        valid = ~source.hr.holes(data, None)
        if valid.mean() < self.min_valid:
            return None
        hr = data[[i - 1 for i in source.hr.indexes]].astype(np.float32)
        picked = np.arange(len(hr))
        if self.bandwise:
            picked = np.sort(rng.choice(len(hr), self.bandwise, replace=len(hr) < self.bandwise))
            hr = hr[picked]
        ranges = self.band_range if source.band_range is None else source.band_range[picked]
        if source.ref is not None:
            ref = source.ref.read(r, c, self.crop, self.crop)[picked]
            if not np.isfinite(ref).all():
                return None
            return hr, ref, source.ref.scale, ranges
        ref, factor = simulate_reference(hr, ranges, rng, self.degrade, self.resampling)
        return hr, ref, factor, ranges

    def reopen(self) -> None:
        """Open every raster again on new file handles, for a forked data-loader worker.

        A worker must not read through the parent's handles: GDAL file offsets and caches are per process.
        """
        for s in self.sources:
            s.hr = dataclasses.replace(s.hr, src=rasterio.open(s.hr.src.name))
            if s.ref is not None:
                s.ref = s.ref.reopen()

    def close(self) -> None:
        """Close every raster."""
        for s in self.sources:
            s.hr.src.close()
            if s.ref is not None:
                s.ref.close()


def _augment(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate by k x 90 degrees and flip left-right, (C, H, W)."""
    a = np.rot90(a, k, axes=(1, 2))
    return np.ascontiguousarray(a[:, :, ::-1] if flip else a)


def _match(hr: np.ndarray, ref: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """The reference mapped to HR radiometry on the known pixels, as `--method match` does at fill time.

    With next to no known pixel (mask kind "full"), the fit uses the crop's outer ring (1/16 of its edge): a stand-in
    for the pixels around a wide hole that a fill's scene-wide fit comes from, so the crop's inside is never fitted
    on its own truth.
    """
    gain, bias, n = fit_gain_bias(hr, ref, ~gap)
    if n < 0.02 * gap.size:
        ring = np.ones_like(gap)
        w = max(2, min(gap.shape) // 16)
        ring[w:-w, w:-w] = False
        gain, bias, _ = fit_gain_bias(hr, ref, ring)
    return cast(np.ndarray, (gain[:, None, None] * ref + bias[:, None, None]).astype(np.float32))
