"""Coarse to fine: references much coarser than the model's range are used on a coarser grid first."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from extendgan_geo.config import FillConfig, OutputConfig
from extendgan_geo.fillers import gan
from extendgan_geo.fillers.base import TileBatch
from extendgan_geo.pipeline import fill_raster, plan_fill

from .conftest import coarsened


def _windows(size: int = 128, scale: float = 30.0, seed: int = 0) -> tuple[TileBatch, np.ndarray]:
    """Two windows of a smooth texture, right half missing, with a reference that is one value per band."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 400 + 300 * xx + 200 * yy
    hr = np.stack([base + rng.normal(0, 5, base.shape) + 50 * b for b in range(3)]).astype(np.float32)
    hr = np.stack([hr, hr[:, ::-1]])
    gap = np.zeros((2, 1, size, size), bool)
    gap[..., size // 2 :] = True
    ref = np.broadcast_to(hr.mean(axis=(2, 3), keepdims=True), hr.shape).astype(np.float32).copy()
    return TileBatch(np.where(gap, 0.0, hr).astype(np.float32), ref, gap, np.zeros((2, 2), np.int64), scale), hr


def _spy(filler: gan.GanFiller) -> list[tuple[int, ...]]:
    """Record (windows, height, width) of each generator call."""
    shapes: list[tuple[int, ...]] = []
    generator = filler.generator
    filler.generator = lambda *a: shapes.append((a[0].shape[0], *a[0].shape[-2:])) or generator(*a)
    return shapes


@pytest.mark.parametrize(
    ("scale", "size", "passes"),
    [
        (7.5, 64, [7.5]),  # within the model's range: one pass
        (8.9, 256, [8.9]),
        (10.0, 256, [5.0, 2.0]),  # 128 cells: the reference is 5x coarser than them, they are 2x the HR's
        (30.0, 256, [5.98, 5.02]),  # 51 cells (256 x 6 / 30, rounded)
        (100.0, 256, [5.86, 6.0, 2.84]),  # 15 cells, 17.1x from them to the HR: three passes
    ],
)
def test_passes_follow_the_scale_factor(scale, size, passes):
    filler = gan.load_gan_filler(None, device="cpu", bands=3)
    assert filler.passes(scale, size) == pytest.approx(passes, abs=0.01)
    filler.coarse_to_fine = False
    assert filler.passes(scale, size) == [scale]


def test_coarse_to_fine_follows_the_models_trained_range():
    bundled = gan.load_gan_filler(None, device="cpu", bands=3)

    def passes(top: float | None, scale: float) -> list[float]:
        meta = {**bundled.meta, "scale_range": [1.0, top] if top else None}
        return gan.GanFiller(bundled.generator, meta, model_hash="", device="cpu", bands=3).passes(scale, 256)

    # A model trained to 30x: one pass at 20x; from 27x on, a coarse pass where the reference is min(18, 15)x
    # coarser than the cells (128 across the window), then 2x.
    assert passes(30.0, 20.0) == [20.0]
    assert passes(30.0, 30.0) == pytest.approx([15.0, 2.0])
    assert passes(None, 100.0) == [100.0]  # a checkpoint without a recorded range: one pass
    # Trained only near the HR (a coarse pass would be under 2x and the passes would never get finer): one pass.
    for top in (1.0, 2.0, 3.0):
        assert passes(top, 30.0) == [30.0], top
    # A small window cannot hold 8 cells at 6x: the coarse pass is coarser, and at most three passes run.
    assert len(passes(10.0, 1e4)) == 3


def test_coarse_to_fine_ends_for_every_model_range():
    """Whatever the trained range and the reference, the passes end, get finer, and number at most three."""
    bundled = gan.load_gan_filler(None, device="cpu", bands=3)
    for top in (1.0, 1.5, 2.0, 3.0, 3.4, 5.0, 10.0, 30.0):
        filler = gan.GanFiller(
            bundled.generator, {**bundled.meta, "scale_range": [1.0, top]}, model_hash="", device="cpu", bands=3
        )
        for size in (16, 32, 64, 256, 1024):
            for scale in (1.0, 2.0, 4.0, 9.0, 30.0, 100.0, 1000.0):
                passes = filler.passes(scale, size)
                assert 1 <= len(passes) <= gan.MAX_PASSES, (top, size, scale, passes)
                assert len(passes) == 1 or passes[-1] < scale, (top, size, scale, passes)
    batch, _ = _windows(size=32, scale=4.0)
    meta = {**bundled.meta, "scale_range": [1.0, 2.0]}
    low = gan.GanFiller(bundled.generator, meta, model_hash="", device="cpu", bands=3)
    low.prepare(batch)
    assert np.isfinite(low(batch)).all()  # one pass: no endless refinement


def test_a_30x_reference_is_first_used_on_a_coarser_grid():
    batch, truth = _windows()
    filler = gan.load_gan_filler(None, device="cpu", bands=3)
    filler.prepare(batch)
    shapes = _spy(filler)
    fine = filler(batch)
    # First both windows in one call on 26 x 26 cells (128 px x 6 / 30; small windows run as a batch on CPUs too),
    # then one call per window on the HR grid.
    assert shapes == [(2, 26, 26), (1, 128, 128), (1, 128, 128)]
    filler.coarse_to_fine = False
    shapes.clear()
    direct = filler(batch)
    assert shapes == [(1, 128, 128), (1, 128, 128)]
    # The reference holds one value per band: one pass sees nothing of the ramp across the gap but the known
    # pixels. The coarse pass carries their cell averages into the reference of the full-resolution pass, so the
    # first coarse cell (5 px) inside the gap follows the truth more closely.
    edge = slice(64, 69)
    assert np.abs(fine - truth)[..., edge].mean() < 0.85 * np.abs(direct - truth)[..., edge].mean()  # 0.76 measured


def test_coarse_to_fine_keeps_missing_reference_missing_and_runs_the_flips():
    batch, _ = _windows()
    ref = batch.ref.copy()
    ref[:, :, :, :10] = np.nan  # the reference's footprint ends inside the windows
    batch = TileBatch(batch.hr, ref, batch.gap, batch.origins, batch.scale)
    filler = gan.load_gan_filler(None, device="cpu", bands=3)
    filler.prepare(batch)
    pred = filler(batch)
    assert np.isnan(pred[:, :, :, :10]).all()
    assert np.isfinite(pred[:, :, :, 10:]).all()
    filler.spread = True
    shapes = _spy(filler)
    out = filler(batch)
    assert shapes == [(2, 26, 26)] + [(1, 128, 128)] * 8  # the coarse pass once, the four flips on the HR grid
    assert np.isfinite(out[:, :, :, 10:]).all()


def test_fill_with_a_30x_reference_records_its_passes(make_raster, make_reference, tmp_path):
    hr = make_raster(bands=3)
    ref30 = coarsened(make_reference(bands=3), 4, tmp_path / "ref30.tif")  # 30x
    outs = {}
    for on in (True, False):
        cfg = FillConfig(method="gan", device="cpu", ref_indexes=(2, 3, 4), coarse_to_fine=on)
        out = tmp_path / f"out_{on}.tif"
        fill_raster(hr, ref30, out, cfg=cfg, out_cfg=OutputConfig(cog=False))
        with rasterio.open(out) as o, rasterio.open(str(out) + ".fillmask.tif") as m:
            outs[on] = o.read().astype(np.float64), m.read(1) > 0
            passes = o.tags()["EGAN_MODEL_PASSES"]
        assert passes.count("x") == (2 if on else 1), passes
        plan = plan_fill(hr, ref30, tmp_path / "plan.tif", cfg=cfg)
        assert len(plan["model_passes"]) == (2 if on else 1)
    (on_data, filled), (off_data, _) = outs[True], outs[False]
    np.testing.assert_array_equal(on_data[:, ~filled], off_data[:, ~filled])  # original pixels untouched
    assert np.abs(on_data[:, filled] - off_data[:, filled]).mean() > 0.1
    with rasterio.open(hr) as src:
        np.testing.assert_array_equal(on_data[:, ~filled], src.read()[:, ~filled])
