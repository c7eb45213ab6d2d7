"""End-to-end behaviour of fill_raster on synthetic rasters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from extendgan_geo.config import FillConfig, OutputConfig, TileConfig
from extendgan_geo.fillers.base import TileBatch
from extendgan_geo.pipeline import FILL_MASK_SUFFIX, fill_raster

from .conftest import hole


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("kind", ["nodata", "mask", "alpha"])
def test_outside_gap_bit_identical_and_gap_filled(make_raster, make_reference, tmp_path, dtype, kind):
    hr = make_raster(dtype=dtype, kind=kind)
    ref = make_reference()
    out = tmp_path / "out.tif"
    result = fill_raster(hr, ref, out, FillConfig(ref_indexes=(2, 3, 4, 5)))
    gap = hole(300, 340)
    src, dst = read(hr), read(out)
    assert dst.dtype == src.dtype
    assert np.array_equal(dst[:, ~gap], src[:, ~gap])
    assert result.gap_pixels == gap.sum() == result.filled_pixels
    assert result.unfilled_pixels == 0
    if kind == "nodata":
        assert not (dst[:4, gap] == 0).any()
    if kind == "alpha":
        assert (dst[4, gap] == 255).all()
    if kind == "mask":
        with rasterio.open(out) as ds:
            assert (ds.dataset_mask()[gap] == 255).all()


def test_georeferencing_and_metadata_preserved(make_raster, make_reference, tmp_path):
    hr, out = make_raster(), tmp_path / "out.tif"
    fill_raster(hr, make_reference(), out, FillConfig(ref_indexes=(2, 3, 4, 5)))
    with rasterio.open(hr) as a, rasterio.open(out) as b:
        assert (b.crs, b.transform, b.shape, b.count, b.dtypes, b.nodata) == (
            a.crs,
            a.transform,
            a.shape,
            a.count,
            a.dtypes,
            a.nodata,
        )
        assert b.descriptions == a.descriptions
        tags = b.tags()
        # The default method (auto) uses the bundled band-agnostic generator.
        from extendgan_geo.fillers.gan import bundled_model
        from extendgan_geo.model.checkpoint import file_sha256

        assert tags["EGAN_METHOD"] == "gan"
        assert tags["EGAN_MODEL_SHA256"] == file_sha256(bundled_model())
        assert tags["EGAN_TILE"] == "256" and tags["EGAN_BLEND"] == "cosine"
        assert tags["EGAN_REFERENCE"] == "ref.tif"
        assert int(tags["EGAN_FILLED_PIXELS"]) == hole(300, 340).sum()
    assert cog_validate(str(out)) == (True, [], [])


def test_fill_mask_sidecar(make_raster, make_reference, tmp_path):
    out = tmp_path / "out.tif"
    fill_raster(make_raster(), make_reference(), out, FillConfig(ref_indexes=(2, 3, 4, 5)))
    codes = read(Path(str(out) + FILL_MASK_SUFFIX))[0]
    assert np.array_equal(codes == 1, hole(300, 340))
    assert set(np.unique(codes)) == {0, 1}


def test_no_cog_writes_tiled_geotiff(make_raster, make_reference, tmp_path):
    out = tmp_path / "out.tif"
    fill_raster(
        make_raster(),
        make_reference(),
        out,
        FillConfig(ref_indexes=(2, 3, 4, 5)),
        OutputConfig(cog=False, creation_options={"compress": "deflate"}),
    )
    with rasterio.open(out) as ds:
        assert ds.profile["tiled"] and ds.compression.name == "deflate"
        assert ds.overviews(1) == []


class ReferenceFiller:
    """Stand-in filler: the reference on the HR grid, unchanged."""

    name, bands, ref_bands, tile, model_hash = "reference", None, None, None, ""

    def prepare(self, sample: TileBatch) -> None:
        pass

    def __call__(self, batch: TileBatch) -> np.ndarray:
        return batch.ref.copy()


def test_match_fill_undoes_the_reference_radiometry(make_raster, make_reference, tmp_path):
    from .conftest import scene

    truth = scene(300, 340).astype(np.uint16)
    hr, ref, gap = make_raster(), make_reference(), hole(300, 340)
    errors = {}
    for name, filler in (("match", None), ("reference", ReferenceFiller())):
        out = tmp_path / f"{name}.tif"
        fill_raster(hr, ref, out, FillConfig(ref_indexes=(2, 3, 4, 5)), filler=filler)
        errors[name] = np.abs(read(out)[:, gap].astype(float) - truth[:, gap]).mean()
    # The reference is a 7.5x-coarser copy with gain 0.8 and offset 150: matching must undo both.
    assert errors["match"] < 0.25 * errors["reference"]
    assert errors["match"] < 0.15 * truth[:, gap].std()


class AffineFiller:
    """Stand-in filler: an affine function of global pixel coordinates, per band."""

    name, bands, ref_bands, tile, model_hash = "affine", None, None, None, ""

    def prepare(self, sample: TileBatch) -> None:
        pass

    def __call__(self, batch: TileBatch) -> np.ndarray:
        _, c, t, _ = batch.hr.shape
        yy, xx = np.mgrid[0:t, 0:t].astype(np.float64)
        out = np.empty(batch.hr.shape, np.float32)
        for i, (r, col) in enumerate(batch.origins):
            for b in range(c):
                out[i, b] = 100 + 1.5 * (yy + r) + 0.75 * (xx + col) + 10 * b
        return out


def affine_truth(height, width, bands):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([100 + 1.5 * yy + 0.75 * xx + 10 * b for b in range(bands)])


@pytest.mark.parametrize(
    "tiles",
    [
        TileConfig(size=64, overlap=16, batch_size=1),
        TileConfig(size=64, overlap=32, batch_size=5, blend="linear"),
        TileConfig(size=48, overlap=0, batch_size=3, blend="none"),
        TileConfig(size=100, overlap=37, batch_size=7),
        TileConfig(size=512, overlap=64, batch_size=2),
    ],
)
def test_seams_affine_filler_exact_whatever_the_tiling(make_raster, make_reference, tmp_path, tiles):
    hr = make_raster(dtype="float32", kind="nodata")
    out = tmp_path / "out.tif"
    fill_raster(hr, make_reference(), out, FillConfig(ref_indexes=(2, 3, 4, 5), tiles=tiles), filler=AffineFiller())
    gap = hole(300, 340)
    got = read(out)[:, gap]
    want = affine_truth(300, 340, 4)[:, gap]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)


def test_batch_size_does_not_change_output(make_raster, make_reference, tmp_path):
    hr, ref = make_raster(), make_reference()
    outs = []
    for bs in (1, 4):
        out = tmp_path / f"out{bs}.tif"
        fill_raster(
            hr,
            ref,
            out,
            FillConfig(ref_indexes=(2, 3, 4, 5), tiles=TileConfig(size=64, overlap=16, batch_size=bs)),
        )
        outs.append(read(out))
    assert np.array_equal(outs[0], outs[1])


def test_image_smaller_than_one_window(make_raster, make_reference, tmp_path):
    gap = np.zeros((40, 50), bool)
    gap[10:30, 5:20] = True
    hr = make_raster(height=40, width=50, gap=gap)
    out = tmp_path / "out.tif"
    result = fill_raster(hr, make_reference(height=40, width=50), out, FillConfig(ref_indexes=(2, 3, 4, 5)))
    assert result.filled_pixels == gap.sum()
    assert result.windows_computed == 1
    assert np.array_equal(read(out)[:, ~gap], read(hr)[:, ~gap])


def test_only_windows_touching_the_gap_are_computed(make_raster, make_reference, tmp_path):
    gap = np.zeros((300, 340), bool)
    gap[5:10, 5:10] = True
    result = fill_raster(
        make_raster(gap=gap),
        make_reference(),
        tmp_path / "o.tif",
        FillConfig(ref_indexes=(2, 3, 4, 5), tiles=TileConfig(size=64, overlap=16)),
    )
    assert result.windows_total == 6 * 7  # rows 0,48,..,192,236; cols 0,48,..,240,276
    assert result.windows_computed == 1


def test_empty_gap_copies_the_input(make_raster, make_reference, tmp_path):
    hr = make_raster(gap=np.zeros((300, 340), bool), kind="none")
    out = tmp_path / "out.tif"
    result = fill_raster(hr, make_reference(), out, FillConfig(ref_indexes=(2, 3, 4, 5)))
    assert result.gap_pixels == 0 and result.windows_computed == 0
    assert "copy of the input" in result.summary()
    assert np.array_equal(read(out), read(hr))


def test_gap_without_reference_stays_nodata_and_is_counted(make_raster, make_reference, tmp_path):
    from .conftest import scene

    values = scene(300, 340)
    ref = make_reference(values=values)
    # A reference that stops at HR column ~170: the right part of the hole has no reference.
    with rasterio.open(ref, "r+") as ds:
        data = ds.read()
        data[:, :, data.shape[2] // 2 :] = 0
        ds.write(data)
    hr = make_raster()
    out = tmp_path / "out.tif"
    result = fill_raster(hr, ref, out, FillConfig(ref_indexes=(2, 3, 4, 5)))
    dst = read(out)
    codes = read(Path(str(out) + FILL_MASK_SUFFIX))[0]
    assert result.unfilled_pixels > 0
    assert result.unfilled_pixels == (codes == 2).sum()
    assert (dst[:, codes == 2] == 0).all()
    assert (dst[:, codes == 1] != 0).all()
    assert result.filled_pixels + result.unfilled_pixels == hole(300, 340).sum()
