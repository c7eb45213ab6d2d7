"""Window grid, blend weights and dtype casting (numpy only)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from extendgan_geo.blending import UnitAccumulator, axis_weights, cast_to_dtype, ramp, window_weights
from extendgan_geo.tiling import WindowGrid, axis_origins


@pytest.mark.parametrize(
    ("length", "size", "stride", "want"),
    [
        (100, 256, 192, [0]),
        (256, 256, 192, [0]),
        (257, 256, 192, [0, 1]),
        (600, 256, 192, [0, 192, 344]),
        (640, 256, 192, [0, 192, 384]),
    ],
)
def test_axis_origins_cover_the_axis_and_end_flush(length, size, stride, want):
    got = axis_origins(length, size, stride)
    assert got == want
    assert got[-1] + size >= length


@pytest.mark.parametrize("blend", ["cosine", "linear"])
def test_ramps_of_neighbours_sum_to_one(blend):
    r = ramp(64, blend)
    np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-6)
    assert (r > 0).all() and (np.diff(r) > 0).all()


def test_no_taper_at_the_scene_border():
    w = window_weights((64, 64), 16, "cosine", origin=(0, 0), scene=(64, 200))
    assert (w[:, :48] == 1).all()  # top, left and bottom are scene borders: no taper
    assert w[10, -1] < 0.01  # right side faces another window


def test_none_blend_is_flat():
    assert (axis_weights(50, 10, "none", taper_start=True, taper_end=True) == 1).all()


def test_cols_with_gap():
    grid = WindowGrid.for_scene(100, 300, 64, 48)
    gap = np.zeros((64, 300), bool)
    gap[3, 100] = True
    assert grid.cols_with_gap(gap) == [48, 96]


@pytest.mark.parametrize(
    ("dtype", "nodata", "values", "want"),
    [
        ("uint16", 0, [-5.0, 0.2, 0.5, 1.5, 70000.0], [1, 1, 1, 2, 65535]),
        ("uint8", 255, [254.6, 300.0, 12.4], [254, 254, 12]),
        ("int16", -9999, [-9999.2, -40000.0, 3.5], [-9998, -32768, 4]),
        ("float32", -9999.0, [-9999.0, 1.25], [np.nextafter(np.float32(-9999), np.float32(np.inf)), 1.25]),
    ],
)
def test_cast_rounds_clips_and_avoids_nodata(dtype, nodata, values, want):
    got = cast_to_dtype(np.array(values, np.float32), np.dtype(dtype), nodata)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, np.array(want, dtype=dtype))


def test_unit_accumulator_weighted_mean_across_units():
    acc = UnitAccumulator(bands=1, scene=(4, 6), unit=(4, 3))
    acc.add(np.full((1, 4, 4), 2.0, np.float32), np.full((4, 4), 1.0, np.float32), (0, 0))
    acc.add(np.full((1, 4, 4), 5.0, np.float32), np.full((4, 4), 2.0, np.float32), (0, 2))
    assert acc.finished(4) == [(0, 0), (0, 1)]
    left, covered = acc.take((0, 0))
    right, _ = acc.take((0, 1))
    row = np.concatenate([left[0, 0], right[0, 0]])
    np.testing.assert_allclose(row, [2, 2, 4, 4, 5, 5])
    assert covered.all() and not acc.units


def test_unit_accumulator_clips_units_at_the_scene_edge():
    acc = UnitAccumulator(bands=1, scene=(5, 5), unit=(4, 4))
    acc.add(np.ones((1, 5, 5), np.float32), np.ones((5, 5), np.float32), (0, 0))
    assert acc.bounds((1, 1)) == (4, 4, 1, 1)
    assert acc.finished(4) == [(0, 0), (0, 1)]
    assert acc.finished(5) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_unit_accumulator_ignores_nan_predictions():
    acc = UnitAccumulator(bands=2, scene=(1, 2), unit=(1, 2))
    pred = np.array([[[1.0, np.nan]], [[3.0, 4.0]]], np.float32)
    acc.add(pred, np.ones((1, 2), np.float32), (0, 0))
    values, covered = acc.take((0, 0))
    assert covered.tolist() == [[True, False]]
    assert np.isnan(values[:, 0, 1]).all()


@pytest.mark.parametrize(
    ("module", "banned"),
    [
        ("extendgan_geo.tiling", "rasterio"),
        ("extendgan_geo.blending", "rasterio"),
        ("extendgan_geo.blending", "torch"),
        ("extendgan_geo.io.raster", "torch"),
        ("extendgan_geo.pipeline", "torch"),
        ("extendgan_geo.cli.main", "rasterio"),
    ],
)
def test_import_boundary(module, banned):
    probe = f"import sys, {module}; sys.exit({banned!r} in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0
