"""Edge healing: the residual of the known pixels next to the gap is carried a few pixels into it."""

from __future__ import annotations

import numpy as np
import rasterio

from extendgan_geo.config import FillConfig, OutputConfig
from extendgan_geo.heal import heal_batch, heal_window
from extendgan_geo.metrics import seam_score
from extendgan_geo.pipeline import fill_raster


def _scene(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    truth = (100 + 20 * np.sin(xx / 9.0) + 10 * np.cos(yy / 7.0) + rng.normal(0, 1, (size, size)))[None]
    gap = np.zeros((size, size), bool)
    gap[30:70, 25:75] = True
    return truth.astype(np.float32), gap


def test_healing_removes_an_offset_at_the_edge_and_fades_inside():
    truth, gap = _scene()
    pred = truth + 8.0  # a prediction that is right but for a constant offset
    healed = heal_window(pred, np.where(gap, 0, truth), gap, scale=4.0)
    np.testing.assert_array_equal(healed[:, ~gap], pred[:, ~gap])  # never outside the gap
    edge = gap & ~np.pad(gap, 1)[2:, 1:-1]  # the gap's last row next to known pixels below
    assert np.abs(healed[0][edge] - truth[0][edge]).mean() < 0.5 * np.abs(pred[0][edge] - truth[0][edge]).mean()
    assert np.abs(healed[0, 50, 50] - pred[0, 50, 50]) < 1e-3  # 20 px deep: untouched at scale 4
    assert seam_score(truth, np.where(gap, healed, truth), gap) < seam_score(truth, np.where(gap, pred, truth), gap)


def test_healing_reaches_further_at_coarser_scales():
    truth, gap = _scene()
    pred = truth + 8.0
    hr = np.where(gap, 0, truth)
    near = heal_window(pred, hr, gap, scale=2.0)
    far = heal_window(pred, hr, gap, scale=10.0)
    assert abs(far[0, 36, 50] - pred[0, 36, 50]) > abs(near[0, 36, 50] - pred[0, 36, 50])


def test_healing_ignores_missing_predictions_and_extra_channels():
    truth, gap = _scene()
    pred = np.concatenate([truth + 5.0, np.full_like(truth, 3.0)])  # values + a spread channel
    pred[0, 20:30, 40:60] = np.nan  # no prediction on part of the ring
    out = heal_batch(pred[None], np.where(gap, 0, truth)[None], gap[None, None], 4.0, bands=1)[0]
    np.testing.assert_array_equal(out[1], pred[1])
    assert np.isfinite(out[0][gap]).all()
    # No gap or no known pixel: nothing to do.
    np.testing.assert_array_equal(heal_window(pred[:1], truth, np.zeros_like(gap), 4.0), pred[:1])
    np.testing.assert_array_equal(heal_window(pred[:1], truth, np.ones_like(gap), 4.0), pred[:1])


def test_fill_heals_by_default_and_not_with_no_heal(make_raster, make_reference, tmp_path):
    hr, ref = make_raster(bands=3), make_reference(bands=3)
    outs = {}
    for heal in (True, False):
        out = tmp_path / f"heal_{heal}.tif"
        cfg = FillConfig(method="match", heal=heal, ref_indexes=(2, 3, 4))
        fill_raster(hr, ref, out, cfg, out_cfg=OutputConfig(cog=False))
        with rasterio.open(out) as o:
            outs[heal] = o.read()
            assert o.tags()["EGAN_HEAL"] == ("yes" if heal else "no")
    with rasterio.open(hr) as src:
        gap = (src.read() == 0).any(axis=0)
        known = src.read()[:, ~gap]
    for data in outs.values():
        np.testing.assert_array_equal(data[:, ~gap], known)  # original pixels never change
    assert not np.array_equal(outs[True][:, gap], outs[False][:, gap])
