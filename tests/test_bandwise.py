"""The band-agnostic default model: bandwise generator, per-window scaling, training, method auto, uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from extendgan_geo.config import FillConfig, OutputConfig
from extendgan_geo.errors import ConfigError
from extendgan_geo.model.generator import Generator, GeneratorConfig
from extendgan_geo.pipeline import fill_raster
from extendgan_geo.scaling import WindowScaling
from extendgan_geo.training.data import RasterSamples, SourceSpec
from extendgan_geo.training.loop import train

from .test_training import tiny


@pytest.fixture
def train_raster(make_raster):
    return str(make_raster("train.tif", height=192, width=192, kind="none", gap=np.zeros((192, 192), bool), bands=3))


@pytest.fixture
def bandwise_model(train_raster, tmp_path):
    return train(tiny(tmp_path, train_raster, epochs=1, bandwise=4, residual=True, known_weight=0.1)).best


BW = GeneratorConfig(bands=1, ref_bands=1, width=4, bandwise=True, residual=True)


@pytest.mark.parametrize("bands", [1, 3, 4, 6])
def test_bandwise_generator_takes_any_band_count(bands):
    g = Generator(BW).eval()
    x = torch.randn(2, bands, 40, 36)
    gap = torch.zeros(2, 1, 40, 36)
    assert g(x, x, gap).shape == (2, bands, 40, 36)


def test_bandwise_generator_shares_weights_across_bands():
    """Swapping two bands swaps their outputs: one set of weights, symmetric cross-band context."""
    torch.manual_seed(0)
    g = Generator(BW).eval()
    hr, ref = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    gap = torch.zeros(1, 1, 32, 32)
    gap[..., 8:24, 8:24] = 1
    out = g(hr, ref, gap)
    perm = [2, 0, 1]
    torch.testing.assert_close(g(hr[:, perm], ref[:, perm], gap), out[:, perm], rtol=1e-5, atol=1e-6)


def test_bandwise_config_is_validated():
    with pytest.raises(ValueError, match="bandwise"):
        GeneratorConfig(bands=3, ref_bands=3, bandwise=True)


def test_window_scaling_floor_and_missing_reference():
    ws = WindowScaling(floor=0.05)
    ref = np.full((2, 3, 8, 8), 100.0, np.float32)
    ref[1, :, :4] = np.nan
    ref[1, 0] = np.nan
    mean, std = ws.stats(ref, np.array([10.0, 20.0, 40.0]))
    np.testing.assert_allclose(mean[0, :, 0, 0], 100.0)
    np.testing.assert_allclose(std[0, :, 0, 0], [0.5, 1.0, 2.0])  # flat window: the floor
    assert mean[1, 0, 0, 0] == 0.0 and std[1, 0, 0, 0] == pytest.approx(0.5)  # no reference at all


@pytest.mark.parametrize("kernel", ["bilinear", "cubic", "lanczos"])
def test_training_samples_with_each_reference_kernel(train_raster, kernel):
    from extendgan_geo.training.config import TrainConfig

    assert TrainConfig(hr=(str(train_raster),), resampling=kernel).resampling == kernel
    data = RasterSamples([SourceSpec(train_raster)], crop=64, block=64, bandwise=4, seed=0, resampling=kernel)
    s = data.sample("train", 0, 0)
    data.close()
    assert np.isfinite(s["ref"]).all() and 0.5 < float(s["ref"].std()) < 1.5


def test_unknown_training_kernel_is_refused(train_raster):
    from extendgan_geo.training.config import TrainConfig

    with pytest.raises(ConfigError, match="resampling must be one of bilinear, cubic, lanczos"):
        TrainConfig(hr=(str(train_raster),), resampling="nearest")


def test_bandwise_samples_mix_band_counts(make_raster, train_raster):
    one = str(make_raster("one.tif", height=128, width=128, kind="none", gap=np.zeros((128, 128), bool), bands=1))
    data = RasterSamples([SourceSpec(train_raster), SourceSpec(one)], crop=64, block=64, bandwise=4, seed=0)
    shapes = {data.sample("train", 0, i)["hr"].shape for i in range(6)}
    assert shapes == {(4, 64, 64)}
    s = data.sample("train", 0, 0)
    # Standardised per window by the matched reference: about zero mean, unit spread.
    assert abs(float(s["ref"].mean())) < 0.05 and 0.5 < float(s["ref"].std()) < 1.5
    data.close()


def test_split_by_file(make_raster, train_raster):
    held = str(make_raster("held.tif", height=128, width=128, kind="none", gap=np.zeros((128, 128), bool), bands=3))
    data = RasterSamples(
        [SourceSpec(train_raster, split="train"), SourceSpec(held, split="val")], crop=64, block=64, bandwise=3
    )
    assert not data.sources[0].blocks["val"] and not data.sources[1].blocks["train"]
    assert data.count("val") == 4
    data.close()


@pytest.mark.parametrize("bands", [1, 3, 4])
def test_one_bandwise_checkpoint_fills_any_band_count(bandwise_model, make_raster, make_reference, tmp_path, bands):
    hr, ref = make_raster(bands=bands), make_reference(bands=bands)
    out = tmp_path / f"b{bands}.tif"
    res = fill_raster(
        hr, ref, out, FillConfig(method="gan", model=bandwise_model, ref_indexes=tuple(range(2, bands + 2)))
    )
    assert res.method == "gan" and res.filled_pixels == res.gap_pixels > 0
    with rasterio.open(out) as o, rasterio.open(hr) as src:
        gap = (src.read() == 0).any(axis=0)
        np.testing.assert_array_equal(o.read()[:, ~gap], src.read()[:, ~gap])


def test_method_auto_uses_a_fitting_model_and_falls_back_to_match(
    bandwise_model, make_raster, make_reference, tmp_path
):
    hr, ref = make_raster(bands=3), make_reference(bands=3)
    res = fill_raster(hr, ref, tmp_path / "a.tif", FillConfig(model=bandwise_model, ref_indexes=(2, 3, 4)))
    assert res.method == "gan"
    from extendgan_geo.fillers import gan

    if gan.bundled_model() is None:
        res = fill_raster(hr, ref, tmp_path / "b.tif", FillConfig(ref_indexes=(2, 3, 4)))
        assert res.method == "match"


@pytest.mark.parametrize(("method", "kind"), [("match", "local"), ("match", "fit"), ("gan", "local"), ("gan", "flips")])
def test_uncertainty_raster(bandwise_model, make_raster, make_reference, tmp_path, method, kind):
    hr, ref = make_raster(bands=3), make_reference(bands=3)
    out, unc = tmp_path / "o.tif", tmp_path / "u.tif"
    cfg = FillConfig(method=method, model=bandwise_model if method == "gan" else None, ref_indexes=(2, 3, 4))
    fill_raster(hr, ref, out, cfg, OutputConfig(uncertainty=str(unc), uncertainty_method=kind))
    with rasterio.open(unc) as u, rasterio.open(hr) as src, rasterio.open(out) as o:
        assert u.dtypes[0] == "float32" and u.crs == src.crs and u.transform == src.transform
        spread = u.read(1)
        gap = (src.read() == 0).any(axis=0)
        assert np.all(spread[~gap] == 0)
        assert np.all(np.isfinite(spread[gap])) and spread[gap].max() > 0
        assert o.tags()["EGAN_UNCERTAINTY"] == "u.tif"
        assert kind in u.tags()["EGAN_UNCERTAINTY"]
        plain = tmp_path / "plain.tif"
        fill_raster(hr, ref, plain, cfg)
        with rasterio.open(plain) as p:
            same = np.array_equal(o.read(), p.read())
        # local and fit leave the fill as a plain run writes it; flips writes the mean over four flips.
        assert same == (kind != "flips")
        if kind == "local":  # the local variability of the image written (after match's edge healing)
            # It is computed window by window and then blended. This raster's four windows (origins 0/44 x 0/84)
            # all overlap over the gap, and within 1-6 px of the gap's edge the 7 x 7 neighbourhood spans known
            # pixels and each window's own fill: windows that meet the edge with different steps give a blend
            # whose deviation is not the blend of their deviations. Median 0.11-0.12 %, 99th percentile 3.0 %
            # for match and 6.6 % for gan (match 0.7 % before the reference-grid fix moved its reference).
            rel = np.abs(spread[gap] / np.maximum(_local_of(o)[gap], 1e-6) - 1)
            assert np.percentile(rel, 50) < 0.005 and np.percentile(rel, 99) < (0.05 if method == "match" else 0.1)
        else:  # another estimate than the local one
            assert not np.allclose(spread[gap], _local_of(o)[gap], rtol=0.05)


def _local_of(dataset):
    from extendgan_geo.fillers.base import TileBatch, local_variability

    image = dataset.read().astype(np.float32)[None]
    whole = TileBatch(hr=image, ref=image, gap=np.zeros((1, 1, *image.shape[-2:]), bool), origins=np.zeros((1, 2)))
    return local_variability(image, whole)[0, 0]


def test_local_variability_follows_texture_and_skips_nan():
    from extendgan_geo.fillers.base import LOCAL_SIZE, TileBatch, local_variability

    rng = np.random.default_rng(0)
    hr = np.zeros((1, 2, 32, 32), np.float32)
    gap = np.zeros((1, 1, 32, 32), bool)
    gap[..., 8:24, 8:24] = True
    pred = np.full((1, 2, 32, 32), 5.0, np.float32)
    pred[..., :, 16:] += rng.normal(0, 3, (1, 2, 32, 16)).astype(np.float32)  # texture in the right half
    pred[0, :, 20, 20] = np.nan
    batch = TileBatch(hr=hr, ref=hr, gap=gap, origins=np.zeros((1, 2), np.int64))
    spread = local_variability(pred, batch)
    assert spread.shape == (1, 1, 32, 32) and spread.dtype == np.float32
    assert np.isnan(spread[0, 0, 20, 20]) and np.isfinite(np.delete(spread.ravel(), 20 * 32 + 20)).all()
    # A flat neighbourhood (inside the gap, away from its edge and from the texture) has none.
    half = LOCAL_SIZE // 2
    assert spread[0, 0, 8 + half : 16 - half, 8 + half : 16 - half].max() < 1e-3
    assert np.nanmin(spread[0, 0, 10:22, 17:22]) > 1.0
    # By hand: the RMS over bands of the population standard deviation of the 7 x 7 neighbourhood of the filled
    # image, inside the gap, across its edge (HR pixels around it count) and next to the NaN (left out).
    image = np.where(gap, pred, hr)[0]
    for r, c in ((12, 16), (9, 20), (6, 10), (19, 21)):
        patch = image[:, r - half : r + half + 1, c - half : c + half + 1].reshape(2, -1)
        expected = np.sqrt(np.mean(np.nanvar(patch, axis=1)))
        assert spread[0, 0, r, c] == pytest.approx(expected, rel=1e-5), (r, c)


def test_uncertainty_method_must_fit_the_filler(bandwise_model, make_raster, make_reference, tmp_path):
    from extendgan_geo.pipeline import plan_fill

    hr, ref = make_raster(bands=3), make_reference(bands=3)
    out, unc = tmp_path / "o.tif", tmp_path / "u.tif"
    cfg = FillConfig(method="match", ref_indexes=(2, 3, 4))
    out_cfg = OutputConfig(uncertainty=str(unc), uncertainty_method="flips")
    with pytest.raises(ConfigError, match="--uncertainty-method flips is not available for method 'match'"):
        fill_raster(hr, ref, out, cfg, out_cfg)
    assert not out.exists() and not unc.exists()
    with pytest.raises(ConfigError, match="not available for method 'match'"):  # --dry-run says so too
        plan_fill(hr, ref, out, cfg, out_cfg)
    with pytest.raises(ConfigError, match="uncertainty method must be one of"):
        OutputConfig(uncertainty_method="bogus")  # type: ignore[arg-type]


def test_uncertainty_refused_for_baselines_and_nothing_written(make_raster, make_reference, tmp_path):
    hr, ref = make_raster(bands=3), make_reference(bands=3)
    out, unc = tmp_path / "o.tif", tmp_path / "u.tif"
    with pytest.raises(ConfigError, match="--uncertainty is not available"):
        fill_raster(
            hr, ref, out, FillConfig(method="fillnodata", ref_indexes=(2, 3, 4)), OutputConfig(uncertainty=str(unc))
        )
    assert not out.exists() and not unc.exists()


def test_reference_reaches_the_edge_of_its_footprint(make_raster, tmp_path):
    """A coarse reference covering exactly the HR extent still fills the outermost HR pixels."""
    from affine import Affine

    hr = make_raster(bands=3, height=96, width=96, gap=np.ones((96, 96), bool))
    with rasterio.open(hr) as src:
        profile = {"driver": "GTiff", "width": 12, "height": 12, "count": 3, "dtype": "float32",
                   "crs": src.crs, "transform": src.transform @ Affine.scale(8)}  # fmt: skip
    ref = tmp_path / "edge_ref.tif"
    with rasterio.open(ref, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).uniform(1000, 2000, (3, 12, 12)).astype(np.float32))
    res = fill_raster(hr, ref, tmp_path / "e.tif", FillConfig(method="reference"))
    assert res.unfilled_pixels == 0 and res.filled_pixels == 96 * 96


def test_training_resampling_is_recorded_and_a_different_fill_kernel_is_warned(
    train_raster, make_raster, make_reference, tmp_path, caplog
):
    from extendgan_geo.model.checkpoint import read_metadata

    model = train(tiny(tmp_path, train_raster, epochs=1, bandwise=4, residual=True, resampling="cubic")).best
    assert read_metadata(model)["resampling"] == "cubic"
    hr, ref = make_raster(bands=3), make_reference(bands=3)
    for kernel, warned in (("cubic", False), ("lanczos", False), ("bilinear", True)):
        caplog.clear()
        cfg = FillConfig(method="gan", model=model, device="cpu", resampling=kernel, ref_indexes=(2, 3, 4))
        fill_raster(hr, ref, tmp_path / f"{kernel}.tif", cfg=cfg, out_cfg=OutputConfig(cog=False))
        assert any("trained on references upsampled with cubic" in r.message for r in caplog.records) == warned


def test_references_coarser_than_the_models_range_are_logged(caplog):
    import logging

    from extendgan_geo.pipeline import _warn_model_mismatch

    meta = {"resampling": "cubic", "scale_range": [1.0, 10.0]}
    for scale, warned in ((7.5, False), (11.9, False), (30.0, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            _warn_model_mismatch(meta, "lanczos", scale)
        assert [("beyond the 10x" in r.message) for r in caplog.records] == ([True] if warned else []), scale
    caplog.clear()
    _warn_model_mismatch({}, "lanczos", 100.0)  # match, or a checkpoint without a recorded range
    assert not caplog.records


def test_the_bundled_model_warns_about_a_30x_reference(make_raster, make_reference, tmp_path, caplog):
    """The conftest reference is 7.5x coarser than the HR; averaged 4 x 4 it is 30x (out of the model's 1-10x)."""
    import logging

    from .conftest import coarsened

    hr, ref = make_raster(bands=3), make_reference(bands=3)
    ref30 = coarsened(ref, 4, tmp_path / "ref30.tif")
    cfg = FillConfig(method="gan", device="cpu", ref_indexes=(2, 3, 4))
    for path, scale_warned in ((ref, False), (ref30, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            fill_raster(hr, path, tmp_path / f"out_{scale_warned}.tif", cfg=cfg, out_cfg=OutputConfig(cog=False))
        assert any("beyond the 10x" in r.message for r in caplog.records) == scale_warned


@pytest.mark.parametrize("kernel", ["cubic", "lanczos"])
def test_simulated_reference_kernels_match_gdal_inside(kernel):
    from affine import Affine
    from rasterio.warp import Resampling, reproject

    from extendgan_geo.degrade import upsample

    coarse = np.random.default_rng(0).random((1, 20, 20)).astype(np.float32)
    for factor in (4, 7.5):
        size = int(20 * factor)
        gdal = np.zeros((1, size, size), np.float32)
        reproject(coarse, gdal, src_transform=Affine.scale(factor), dst_transform=Affine.identity(),
                  src_crs="EPSG:3857", dst_crs="EPSG:3857", resampling=Resampling[kernel])  # fmt: skip
        ours = upsample(coarse, factor, (size, size), kernel)
        # Lanczos drops the taps outside the grid as GDAL does: equal everywhere. Cubic repeats the edge cells,
        # which GDAL does not: equal inside.
        e = 1 if kernel == "lanczos" else int(3 * factor)
        np.testing.assert_allclose(ours[:, e - 1 : size - e + 1, e - 1 : size - e + 1],
                                   gdal[:, e - 1 : size - e + 1, e - 1 : size - e + 1], atol=1e-5)  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "factor", "shift"),
    [
        ((3, 48, 40), 1.0, 0.0),
        ((2, 64, 64), 1.5, 0.4),
        ((1, 37, 90), 3.0, -0.9),
        ((4, 40, 52), 10.0, 3.0),
        ((1, 9, 30), 12.0, -3.6),  # the blur kernel is wider than the crop: reflected more than once
    ],
)
def test_simulated_coarse_grid_is_scipys_blur_shift_and_zoom(shape, factor, shift):
    """The matrices reproduce scipy's chain, edges included (kernels wider than the crop, shifts past the edge)."""
    from scipy import ndimage

    from extendgan_geo.degrade import _coarse_matrix

    hr = np.random.default_rng(1).uniform(0, 1000, shape).astype(np.float32)
    c, h, w = shape
    sigma, ch, cw = 0.5 * factor, max(1, round(h / factor)), max(1, round(w / factor))
    blurred = [ndimage.gaussian_filter(b, sigma, mode="reflect") for b in hr]
    moved = [ndimage.shift(b, (shift, -shift), order=1, mode="nearest") for b in blurred]
    scipy_chain = np.stack([ndimage.zoom(b, (ch / h, cw / w), order=1, grid_mode=True, mode="nearest") for b in moved])
    ours = _coarse_matrix(h, ch, sigma, shift) @ hr.astype(np.float64) @ _coarse_matrix(w, cw, sigma, -shift).T
    assert ours.shape == scipy_chain.shape == (c, ch, cw)
    np.testing.assert_allclose(ours, scipy_chain, atol=2e-4)  # float32 rounding of scipy's steps


def test_windows_without_known_pixels_take_the_matched_reference(bandwise_model):
    """Deep inside a hole wider than a window the model has no context: match's prediction, no model run."""
    from extendgan_geo.fillers import gan
    from extendgan_geo.fillers.base import TileBatch
    from extendgan_geo.fillers.match import MatchFiller

    filler = gan.load_gan_filler(bandwise_model, device="cpu", bands=3)
    rng = np.random.default_rng(0)
    hr = rng.uniform(100, 900, (3, 3, 64, 64)).astype(np.float32)
    ref = (hr * 0.5 + 20).astype(np.float32)
    gap = np.zeros((3, 1, 64, 64), bool)
    gap[0] = True  # blind
    gap[1, :, :, 32:] = True  # half known
    gap[2, :, 1:, :] = True  # one row known: 1.6 %, above MIN_CONTEXT
    hr[gap.repeat(3, axis=1)] = 0.0
    batch = TileBatch(hr, ref, gap, np.zeros((3, 2), np.int64))
    filler.prepare(batch)
    runs = []
    forward = filler._forward
    filler._forward = lambda *a: runs.append(a[0].shape[0]) or forward(*a)
    pred = filler(batch)
    assert sum(runs) == 2  # windows 1 and 2 only
    matched = MatchFiller(3)
    matched.prepare(batch)
    np.testing.assert_allclose(pred[0], matched(batch)[0], rtol=1e-6)
    assert not np.allclose(pred[1], matched(batch)[1], rtol=1e-3)
    filler.spread = True  # the uncertainty channel covers the blind window too
    assert np.isfinite(filler(batch)[:, 3]).all()


def test_a_model_trained_on_full_masks_runs_on_windows_without_known_pixels(train_raster, tmp_path):
    from extendgan_geo import masks_synth
    from extendgan_geo.fillers import gan
    from extendgan_geo.fillers.base import TileBatch

    assert masks_synth.draw(32, np.random.default_rng(0), ("full",)).all()
    model = train(tiny(tmp_path, train_raster, epochs=1, bandwise=4, residual=True, mask_kinds=("full", "half"))).best
    filler = gan.load_gan_filler(model, device="cpu", bands=3)
    assert filler.blind_trained
    rng = np.random.default_rng(1)
    ref = rng.uniform(100, 900, (2, 3, 64, 64)).astype(np.float32)
    hr = np.zeros_like(ref)
    gap = np.ones((2, 1, 64, 64), bool)
    hr[1, :, :, :32] = ref[1, :, :, :32]
    gap[1, :, :, :32] = False
    batch = TileBatch(hr, ref, gap, np.zeros((2, 2), np.int64))
    filler.prepare(batch)
    runs = []
    forward = filler._forward
    filler._forward = lambda *a: runs.append(a[0].shape[0]) or forward(*a)
    filler(batch)
    assert sum(runs) == 2  # the blind window too
