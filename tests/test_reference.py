"""The reference on the HR grid: tile invariance, nodata, band mapping, co-registration."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from extendgan_geo.io.raster import HrRaster
from extendgan_geo.io.reference import RefGrid, upsample_taps


def _write_1band(path, data, transform, nodata=None):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[-1],
        height=data.shape[-2],
        count=1,
        dtype="float32",
        crs="EPSG:32633",
        transform=transform,
        nodata=nodata,
    ) as ds:
        ds.write(data.reshape(1, *data.shape[-2:]))
    return str(path)


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


def test_upsample_taps_interpolate_between_cell_centres():
    # factor 4, two cells of margin: cell j spans HR [4(j - 2), 4(j - 1)), centre 4j - 6. HR pixel 0 (centre 0.5)
    # lies between the centres of cells 1 (-2) and 2 (2): 1.5 of 4 from cell 2, so cell 1 weighs 0.375. Pixel 5
    # (5.5) is between cells 2 (2) and 3 (6), 0.5 from cell 3: cell 2 weighs 0.125.
    hr = np.arange(3, 40) + 0.5
    centres = 4.0 * np.arange(20) - 6.0
    idx, w = upsample_taps(0, 8, 4, "linear")
    assert (idx[0, 0], w[0, 0], idx[5, 0], w[5, 0]) == (1, 0.375, 2, 0.125)
    for kernel in ("linear", "cubic"):
        idx, w = upsample_taps(3, 37, 4, kernel)
        np.testing.assert_allclose(w.sum(axis=1), 1.0)
        assert idx.min() >= 0
        # Both reproduce a linear ramp; Keys' cubic (a = -0.5) also reproduces a quadratic, linear does not.
        np.testing.assert_allclose((w * centres[idx]).sum(axis=1), hr)
        quad = (w * centres[idx] ** 2).sum(axis=1)
        if kernel == "cubic":
            np.testing.assert_allclose(quad, hr**2)
        else:
            assert np.abs(quad - hr**2).max() > 1
    # Nearest: the cell that holds the pixel.
    idx, w = upsample_taps(0, 40, 4, "nearest")
    np.testing.assert_array_equal(idx[:, 0], np.arange(40) // 4 + 2)
    assert (w == 1).all()
    with pytest.raises(ValueError, match="kernel"):
        upsample_taps(0, 8, 4, "lanczos")


@pytest.mark.parametrize("factor", [4, 5, 10, 13])
def test_intermediate_grid_matches_a_direct_warp(tmp_path, factor):
    """A reference read through the intermediate grid lands where a direct warp puts it (no half-cell shift)."""
    size, scale = 390, 2 * factor
    yy, xx = np.mgrid[0 : size // scale, 0 : size // scale]
    smooth = (np.sin(xx / 3.0) + np.cos(yy / 4.0)).astype("float32")[None]
    paths = {
        name: _write_1band(tmp_path / f"{name}.tif", data, Affine(res, 0, 500000, 0, -res, 4000000))
        for name, data, res in (("ref", smooth, scale), ("hr", np.zeros((size, size), "float32"), 1))
    }
    with rasterio.open(paths["ref"]) as ref, rasterio.open(paths["hr"]) as hr:
        grids = {k: RefGrid.build(ref, hr, indexes=(1,), nodata=None, resampling=k) for k in ("cubic", "nearest")}
        assert grids["cubic"].factor == factor
        reads = {k: (g.read(100, 90, 200, 210)[0], g.read(0, 0, size, size)[0]) for k, g in grids.items()}
        for g in grids.values():
            g.close()
        exact = {}
        for k in grids:
            with WarpedVRT(
                ref, crs=hr.crs, transform=hr.transform, width=size, height=size, resampling=Resampling[k]
            ) as direct:
                exact[k] = direct.read(1)
    via_cells, whole = reads["cubic"]
    window = exact["cubic"][100:300, 90:300]
    err = np.sqrt(np.mean((via_cells - window) ** 2))
    shifted = np.sqrt(np.mean((via_cells[:, 1:] - window[:, :-1]) ** 2))
    assert err < 0.01 * smooth.std(), err
    assert err < 0.2 * shifted
    # The whole raster, up to its last row and column: the same values as the window where they meet, and close
    # to the direct warp away from the reference's edge (within two of its pixels of the edge the grid
    # renormalises over the cells with data, where GDAL's kernel sees fewer source pixels).
    np.testing.assert_array_equal(whole[100:300, 90:300], via_cells)
    assert np.isfinite(whole[: (size // scale) * scale, : (size // scale) * scale]).all()
    inner = slice(2 * scale, (size // scale - 2) * scale)
    err_inner = np.sqrt(np.mean((whole[inner, inner] - exact["cubic"][inner, inner]) ** 2))
    assert err_inner < 0.01 * smooth.std(), err_inner
    # Nearest: each HR pixel takes the cell that holds it, so it equals the direct nearest warp.
    near, near_whole = reads["nearest"]
    np.testing.assert_array_equal(near, exact["nearest"][100:300, 90:300])
    both = np.isfinite(near_whole) & np.isfinite(exact["nearest"])
    assert (near_whole[both] == exact["nearest"][both]).mean() > 0.99


@pytest.mark.parametrize("factor", [4, 10])
def test_cubic_cells_follow_a_direct_warp_of_a_detailed_reference(tmp_path, factor):
    """Detail up to the reference's own pixel: cubic weights over the cells stay close to a direct Lanczos warp.

    White noise is the hardest reference for the cells (half a reference pixel each): measured, linear weights
    miss a direct warp by 12-14 % of the signal and cubic ones by 4-5 % (factors 4-15).
    """
    import dataclasses

    size, scale = 390, 2 * factor
    noise = np.random.default_rng(0).normal(size=(1, size // scale, size // scale)).astype("float32")
    paths = {
        name: _write_1band(tmp_path / f"{name}.tif", data, Affine(res, 0, 500000, 0, -res, 4000000))
        for name, data, res in (("ref", noise, scale), ("hr", np.zeros((size, size), "float32"), 1))
    }
    with rasterio.open(paths["ref"]) as ref, rasterio.open(paths["hr"]) as hr:
        grid = RefGrid.build(ref, hr, indexes=(1,), nodata=None, resampling="lanczos")
        assert grid.kernel == "cubic"
        reads = {k: dataclasses.replace(grid, kernel=k).read(100, 90, 200, 210)[0] for k in ("cubic", "linear")}
        grid.close()
        with WarpedVRT(
            ref, crs=hr.crs, transform=hr.transform, width=size, height=size, resampling=Resampling.lanczos
        ) as d:
            exact = d.read(1)[100:300, 90:300]
    err = {k: np.sqrt(np.mean((v - exact) ** 2)) / noise.std() for k, v in reads.items()}
    assert err["cubic"] < 0.07, err
    assert err["cubic"] < 0.5 * err["linear"], err


@pytest.mark.parametrize("resampling", ["lanczos", "cubic", "bilinear"])
def test_a_few_rows_of_grid_give_the_whole_grid_values(tmp_path, resampling):
    """A strip of the HR grid (as mosaics read it) gets the same reference values as the whole raster.

    GDAL derives its kernel's scale from each destination chunk unless told: on a grid of about a dozen rows it
    widened cubic and Lanczos kernels as if downsampling, so a strip's values differed from the whole grid's.
    """
    f, scale, width, height = 16, 32.5, 400, 40 * 16
    rng = np.random.default_rng(1)
    ref_t = Affine(scale, 0, 500000 - 2 * scale, 0, -scale, 4000000 + 2 * scale)
    ref_path = _write_1band(tmp_path / "ref.tif", rng.normal(size=(int(height / scale) + 6, 20)).astype("f4"), ref_t)
    hr_t = Affine(1, 0, 500000, 0, -1, 4000000)
    whole_path = _write_1band(tmp_path / "hr.tif", np.zeros((height, width), "f4"), hr_t)
    with rasterio.open(ref_path) as ref, rasterio.open(whole_path) as hr:
        grid = RefGrid.build(ref, hr, indexes=(1,), nodata=None, resampling=resampling)
        assert grid.factor == f
        whole = grid.read(0, 0, height, width)
        grid.close()
        for row in (37, 200, 411):
            start = row - row % f  # strips start on a cell boundary, as mosaic strips do
            rows = row + 64 - start
            strip_path = _write_1band(
                tmp_path / f"strip{row}.tif", np.zeros((rows, width), "f4"), hr_t @ Affine.translation(0, start)
            )
            with rasterio.open(strip_path) as strip:
                g = RefGrid.build(ref, strip, indexes=(1,), nodata=None, resampling=resampling)
                assert g.source.height < 13  # small enough for GDAL to have widened its kernel
                np.testing.assert_array_equal(g.read(row - start, 0, 64, width), whole[:, row : row + 64])
                g.close()


def test_cubic_grid_next_to_nodata(tmp_path):
    """Cubic weights where all 4 x 4 cells have data; elsewhere linear ones renormalised over the cells with data.

    Checked pixel by pixel against a float64 model of that rule on the intermediate grid, at window offsets that
    are not multiples of the cell, and for tile invariance.
    """
    from extendgan_geo.io.reference import _keys

    rng = np.random.default_rng(2)
    data = rng.normal(size=(40, 40)).astype("float32")
    data[10:16, 12:20] = -9999  # a block of nodata
    data[rng.random(data.shape) < 0.03] = -9999  # and scattered pixels
    ref_path = _write_1band(tmp_path / "ref.tif", data, Affine(10, 0, 500000, 0, -10, 4000000), nodata=-9999)
    hr_path = _write_1band(tmp_path / "hr.tif", np.zeros((390, 390), "f4"), Affine(1, 0, 500000, 0, -1, 4000000))
    with rasterio.open(ref_path) as ref, rasterio.open(hr_path) as hr:
        grid = RefGrid.build(ref, hr, indexes=(1,), nodata=None, resampling="lanczos")
        f = grid.factor
        cells = grid.source.read(1).astype(np.float64)
        whole = grid.read(0, 0, 390, 390)[0]
        windows = [(17, 33, 100, 71), (95, 101, 60, 80), (3, 250, 200, 139), (389, 0, 1, 390)]
        for r, c, h, w in windows:
            np.testing.assert_array_equal(grid.read(r, c, h, w)[0], whole[r : r + h, c : c + w])
        grid.close()

    def taps(i, kernel):
        p = (i + 0.5) / f + 1.5
        left = int(np.floor(p))
        t = p - left
        if kernel == "linear":
            return [left, left + 1], [1 - t, t]
        return [left - 1, left, left + 1, left + 2], list(_keys(np.array([1 + t, t, 1 - t, 2 - t])))

    ok = np.isfinite(cells)
    kinds = {"cubic": 0, "linear": 0, "nan": 0}
    for i in range(0, 390, 7):
        for j in range(0, 390, 5):
            (ry, wy), (cx, wx) = taps(i, "cubic"), taps(j, "cubic")
            used = [
                (y, x, a * b) for y, a in zip(ry, wy, strict=True) for x, b in zip(cx, wx, strict=True) if a * b != 0
            ]
            if all(ok[y, x] for y, x, _ in used):
                expect = sum(v * cells[y, x] for y, x, v in used)
                kinds["cubic"] += 1
            else:
                (ry, wy), (cx, wx) = taps(i, "linear"), taps(j, "linear")
                used = [
                    (y, x, a * b)
                    for y, a in zip(ry, wy, strict=True)
                    for x, b in zip(cx, wx, strict=True)
                    if a * b != 0 and ok[y, x]
                ]
                den = sum(v for _, _, v in used)
                expect = sum(v * cells[y, x] for y, x, v in used) / den if den > 1e-6 else np.nan
                kinds["linear" if den > 1e-6 else "nan"] += 1
            if np.isnan(expect):
                assert np.isnan(whole[i, j]), (i, j)
            else:
                assert abs(whole[i, j] - expect) < 1e-4, (i, j, whole[i, j], expect)
    assert min(kinds.values()) > 20, kinds  # every branch was exercised


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
