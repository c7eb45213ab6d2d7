"""The reference on the HR grid: tile invariance, nodata, band mapping, co-registration."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from extendgan_geo.io.raster import HrRaster
from extendgan_geo.io.reference import RefGrid, upsample_weights


@pytest.fixture
def grid(make_raster, make_reference):
    hr = HrRaster.open(make_raster(), indexes=None, nodata=None)
    ref_src = rasterio.open(make_reference())
    g = RefGrid.build(ref_src, hr.src, indexes=(2, 3, 4, 5), nodata=None, resampling="bilinear")
    yield g
    g.close()
    ref_src.close()
    hr.src.close()


def test_reference_is_tile_invariant(grid):
    assert grid.factor > 1
    full = grid.read(0, 0, 300, 340)
    for r, c, h, w in [(0, 0, 64, 64), (17, 33, 100, 71), (250, 290, 50, 50), (123, 5, 1, 300)]:
        np.testing.assert_array_equal(grid.read(r, c, h, w), full[:, r : r + h, c : c + w])


def test_reference_values_follow_the_source(grid):
    from .conftest import scene

    truth = scene(300, 340)
    ref = grid.read(0, 0, 300, 340)
    assert np.isfinite(ref).all()
    for k in range(4):
        # 0.8 x truth + 150, blurred by the 7.5x averaging: strongly correlated, right offset.
        assert np.corrcoef(ref[k].ravel(), truth[k].ravel())[0, 1] > 0.9
        assert abs(ref[k].mean() - (0.8 * truth[k].mean() + 150)) < 20


def test_upsample_weights_are_linear_interpolation():
    left, w, first = upsample_weights(0, 8, 4)
    pos = (np.arange(8) + 0.5) / 4 + 0.5 - 0.5
    np.testing.assert_allclose(left + (1 - w), pos)
    assert first == 0


def test_reference_nodata_becomes_nan(make_raster, make_reference, tmp_path):
    ref_path = make_reference()
    with rasterio.open(ref_path, "r+") as ds:
        data = ds.read()
        data[:, :, : data.shape[2] // 2] = 0
        ds.write(data)
    hr = HrRaster.open(make_raster(), indexes=None, nodata=None)
    with rasterio.open(ref_path) as ref_src:
        g = RefGrid.build(ref_src, hr.src, indexes=(2, 3), nodata=None, resampling="cubic")
        out = g.read(0, 0, 300, 340)
        g.close()
    assert np.isnan(out[:, :, :100]).all()
    assert np.isfinite(out[:, :, 220:]).all()
    hr.src.close()


@pytest.mark.parametrize(("east_m", "north_m"), [(20.0, -12.0), (-10.0, 6.0)])
def test_coregister_recovers_a_known_shift(make_raster, make_reference, tmp_path, east_m, north_m):
    from affine import Affine

    from extendgan_geo.io.coregister import estimate_shift

    hr = HrRaster.open(make_raster(height=512, width=512), indexes=None, nodata=None)
    ref_path = make_reference(height=512, width=512, crs="EPSG:32633")
    # Move the reference (HR pixels are 4 m): it must be moved back by as much.
    with rasterio.open(ref_path, "r+") as ds:
        ds.transform = Affine.translation(east_m, north_m) @ ds.transform
    with rasterio.open(ref_path) as ref_src:
        dx, dy = estimate_shift(hr, ref_src, (2, 3, 4, 5), nodata=None)
    hr.src.close()
    assert dx == pytest.approx(-east_m / 4, abs=0.6)
    assert dy == pytest.approx(north_m / 4, abs=0.6)


@pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:4326"])
def test_a_shift_moves_the_reference_by_hr_pixels_whatever_its_crs(make_raster, make_reference, crs):
    """The co-registration shift is in HR pixels and applied on the HR grid: a geographic reference moves too."""
    hr = HrRaster.open(make_raster(height=128, width=128), indexes=None, nodata=None)
    ref_path = make_reference(height=128, width=128, crs=crs)
    with rasterio.open(ref_path) as ref_src:
        reads = []
        for shift in ((0.0, 0.0), (3.0, -2.0)):
            g = RefGrid.build(ref_src, hr.src, indexes=(2,), nodata=None, resampling="bilinear", shift=shift)
            reads.append(g.read(0, 0, 128, 128)[0])
            g.close()
    hr.src.close()
    still, moved = reads

    # Content moves 3 px east (+col) and 2 px north (-row): moved[r, c] = still[r + 2, c - 3], up to resampling
    # through the intermediate grid at another phase; any other offset is far worse.
    def err(dr: int, dc: int) -> float:
        return float(np.abs(moved[20:100, 20:100] - still[20 + dr : 100 + dr, 20 + dc : 100 + dc]).mean())

    assert err(2, -3) < 1.0
    assert min(err(dr, dc) for dr in range(-4, 5) for dc in range(-4, 5) if (dr, dc) != (2, -3)) > 3 * err(2, -3)
