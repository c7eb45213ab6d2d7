"""The engine's I/O decisions: gap scan, byte copy of the HR, unit layout."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from extendgan_geo.config import FillConfig, OutputConfig
from extendgan_geo.io.cog import copies_bytes
from extendgan_geo.io.gaps import GapReader
from extendgan_geo.io.raster import HrRaster
from extendgan_geo.pipeline import FILL_MASK_SUFFIX, fill_raster

from .conftest import hole


def test_scan_counts_the_gap_and_marks_cells(make_raster):
    hr = HrRaster.open(make_raster(), indexes=None, nodata=None)
    scan = GapReader(hr, []).scan(cell=16, rows=64)
    gap = hole(300, 340)
    assert scan.gap_pixels == gap.sum()
    assert scan.any_in(80, 80, 10, 10) == gap[80:90, 80:90].any()
    assert not scan.any_in(0, 0, 16, 16)
    hr.src.close()


def test_gap_without_hr_holes_does_not_read_pixels(make_raster, monkeypatch):
    hr = HrRaster.open(make_raster(kind="none", dtype="uint16"), indexes=None, nodata=None)
    assert not hr.has_holes
    monkeypatch.setattr(hr, "read", lambda window: pytest.fail("the HR was read"))
    data, gap, _ = GapReader(hr, []).read(0, 0, 50, 50, data=False)
    assert data is None and not gap.any()
    hr.src.close()


@pytest.mark.parametrize(
    ("cog", "options", "tiled", "expected"),
    [
        (True, {}, False, True),
        (False, {}, True, True),
        (False, {}, False, False),
        (False, {"compress": "lzw"}, True, False),
    ],
)
def test_byte_copy_only_when_the_layout_fits(make_raster, tmp_path, cog, options, tiled, expected):
    path = make_raster()
    if not tiled:
        with rasterio.open(path) as src:
            profile = src.profile | {"tiled": False}
            data = src.read()
        path = tmp_path / "striped.tif"
        with rasterio.open(
            path, "w", **{k: v for k, v in profile.items() if k not in ("blockxsize", "blockysize")}
        ) as dst:
            dst.write(data)
    with rasterio.open(path) as src:
        assert copies_bytes(src, OutputConfig(cog=cog, creation_options=options)) is expected


def raw_block(ds, row, col):
    offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
    size = int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
    with open(ds.name, "rb") as f:
        f.seek(offset)
        return f.read(size)


def test_no_cog_output_keeps_untouched_blocks_byte_identical(make_raster, make_reference, tmp_path):
    """Only units holding gap are rewritten: blocks far from the gap keep their compressed bytes."""
    gap = np.zeros((300, 340), bool)
    gap[10:40, 10:40] = True
    hr = make_raster(gap=gap)
    out = tmp_path / "out.tif"
    result = fill_raster(hr, make_reference(), out, FillConfig(ref_indexes=(2, 3, 4, 5)), OutputConfig(cog=False))
    assert result.filled_pixels == gap.sum()
    with rasterio.open(hr) as a, rasterio.open(out) as b:
        assert b.block_shapes == a.block_shapes and b.compression == a.compression
        # The compressed bytes of a block far from the gap are the input's own.
        assert raw_block(a, 2, 2) == raw_block(b, 2, 2)
        assert raw_block(a, 0, 0) != raw_block(b, 0, 0)  # the block holding the gap was rewritten
    codes = rasterio.open(str(out) + FILL_MASK_SUFFIX).read(1)
    assert (codes[gap] == 1).all() and (codes[~gap] == 0).all()


def test_move_into_place_across_filesystems(tmp_path, monkeypatch):
    """A --tmpdir on another filesystem: the file is copied next to the output, then renamed."""
    import errno
    import os

    from extendgan_geo.io import cog

    src, final = tmp_path / "a.tif", tmp_path / "out.tif"
    src.write_bytes(b"payload")
    real_replace = os.replace
    calls = []

    def replace(a, b):
        calls.append((a, b))
        if len(calls) == 1:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(a, b)

    monkeypatch.setattr(cog.os, "replace", replace)
    cog.move_into_place(str(src), str(final))
    assert final.read_bytes() == b"payload" and not src.exists()
    assert len(calls) == 2 and os.path.dirname(calls[1][0]) == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_polygon_gaps_rasterize_from_many_threads_without_warnings(make_raster, tmp_path):
    """Batch and mosaic rasterize polygon strips on threads: the masks are right and no spurious warning appears."""
    import threading
    import warnings

    import geopandas as gpd
    import shapely
    from rasterio.errors import NotGeoreferencedWarning

    from extendgan_geo.io.masks import open_gap_source

    from .conftest import HR_CRS, HR_ORIGIN, HR_RES

    hr = make_raster("hr.tif", height=64, width=64, kind="none")
    x0, y0 = HR_ORIGIN
    square = shapely.box(x0 + 8 * HR_RES, y0 - 40 * HR_RES, x0 + 40 * HR_RES, y0 - 8 * HR_RES)
    gpkg = tmp_path / "gaps.gpkg"
    gpd.GeoDataFrame(geometry=[square], crs=HR_CRS).to_file(gpkg, layer="gaps")
    caught: list[str] = []
    wrong: list[int] = []
    with rasterio.open(hr) as src, warnings.catch_warnings():
        source = open_gap_source(str(gpkg), layer=None, hr=src)
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, *args, **kwargs: (
            caught.append(str(message)) if issubclass(category, NotGeoreferencedWarning) else None
        )

        def work() -> None:
            for _ in range(200):
                mask = source.window(0, 0, 64, 64)
                if int(mask.sum()) != 32 * 32 or not mask[8:40, 8:40].all():
                    wrong.append(int(mask.sum()))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not wrong
    assert not caught, caught[:3]


def test_masks_silence_the_rasterizer_warning_for_the_whole_process():
    """The process-wide filter (pytest drops import-time filters, so check it in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import warnings, extendgan_geo.io.masks\n"
        "assert any(a == 'ignore' and m is not None and m.pattern.startswith('Dataset has no geotransform')"
        " and mod is not None and mod.pattern.startswith('rasterio') for a, m, c, mod, _ in warnings.filters)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
