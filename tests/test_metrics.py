"""Metrics: PSNR and SSIM against scikit-image, the others against brute force or hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from extendgan_geo import metrics


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    truth = rng.random((3, 48, 41)) * 200 + 50
    return truth, truth + rng.normal(0, 12, truth.shape)


def test_psnr_matches_skimage_per_band(pair):
    truth, pred = pair
    got = metrics.psnr(truth, pred, 255.0)
    want = [peak_signal_noise_ratio(truth[i], pred[i], data_range=255.0) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_psnr_of_an_exact_band_is_infinite(pair):
    truth, _ = pair
    assert np.all(np.isinf(metrics.psnr(truth, truth.copy(), 255.0)))


def test_ssim_matches_skimage_gaussian_window(pair):
    truth, pred = pair
    got = metrics.ssim(truth, pred, 255.0, crop_border=True)
    want = [
        structural_similarity(
            truth[i], pred[i], data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_ssim_region_averages_the_map_over_the_region(pair):
    truth, pred = pair
    region = np.zeros(truth.shape[1:], bool)
    region[10:30, 5:25] = True
    full = metrics.ssim_map(truth[0], pred[0], 255.0)
    assert metrics.ssim(truth[:1], pred[:1], 255.0, region)[0] == pytest.approx(full[region].mean())


def _uqi_brute(x: np.ndarray, y: np.ndarray) -> float:
    wx, wy = sliding_window_view(x, (8, 8)), sliding_window_view(y, (8, 8))
    mx, my = wx.mean(axis=(2, 3)), wy.mean(axis=(2, 3))
    vx, vy = wx.var(axis=(2, 3)), wy.var(axis=(2, 3))
    cxy = ((wx - mx[..., None, None]) * (wy - my[..., None, None])).mean(axis=(2, 3))
    return float((4 * cxy * mx * my / ((vx + vy) * (mx**2 + my**2))).mean())


def test_uqi_matches_the_wang_bovik_definition(pair):
    truth, pred = pair
    got = metrics.uqi(truth, pred)
    np.testing.assert_allclose(got, [_uqi_brute(truth[i], pred[i]) for i in range(3)], rtol=1e-9)


def test_uqi_of_identical_images_is_one_even_when_flat():
    flat = np.full((1, 16, 16), 7.0)
    img = np.random.default_rng(0).random((1, 16, 16))
    assert metrics.uqi(flat, flat.copy())[0] == pytest.approx(1.0)
    assert metrics.uqi(img, img.copy())[0] == pytest.approx(1.0)


def test_uqi_region_uses_windows_centred_in_it(pair):
    truth, pred = pair
    region = np.zeros(truth.shape[1:], bool)
    region[:, :20] = True
    left = metrics.uqi(truth, pred, region)
    right = metrics.uqi(truth, pred, ~region)
    whole = metrics.uqi(truth, pred)
    assert np.all(np.minimum(left, right) <= whole + 1e-12) and np.all(whole <= np.maximum(left, right) + 1e-12)


def test_sam_hand_computed_and_skips_zero_vectors():
    truth = np.zeros((2, 1, 3))
    pred = np.zeros((2, 1, 3))
    truth[:, 0, 0], pred[:, 0, 0] = (1, 0), (1, 1)  # 45 degrees
    truth[:, 0, 1], pred[:, 0, 1] = (0, 2), (0, 5)  # 0 degrees
    truth[:, 0, 2], pred[:, 0, 2] = (0, 0), (3, 4)  # zero truth vector: skipped
    assert metrics.sam(truth, pred) == pytest.approx(math.pi / 8)


def test_ergas_hand_computed():
    truth = np.stack([np.full((2, 2), 10.0), np.full((2, 2), 20.0)])
    pred = truth + np.array([1.0, 4.0])[:, None, None]  # RMSE 1 and 4; relative 0.1 and 0.2
    want = 100 / 4 * math.sqrt((0.1**2 + 0.2**2) / 2)
    assert metrics.ergas(truth, pred, scale=4) == pytest.approx(want)


def test_cc_matches_numpy_and_mae_is_a_share_of_the_range(pair):
    truth, pred = pair
    np.testing.assert_allclose(
        metrics.cc(truth, pred), [np.corrcoef(truth[i].ravel(), pred[i].ravel())[0, 1] for i in range(3)]
    )
    shifted = truth + 5.0
    np.testing.assert_allclose(metrics.mae(truth, shifted, 250.0), [0.02] * 3)


def test_boundary_pairs_of_a_square_gap():
    gap = np.zeros((6, 6), bool)
    gap[2:4, 2:4] = True
    a, b = metrics.boundary_pairs(gap)
    assert len(a[0]) == 8  # 2 pixels x 4 sides
    assert np.all(gap[a] != gap[b])


def test_seam_score_is_one_for_the_truth_and_grows_with_a_step():
    rng = np.random.default_rng(0)
    truth = rng.random((2, 32, 32))
    gap = np.zeros((32, 32), bool)
    gap[8:24, 8:24] = True
    assert metrics.seam_score(truth, truth.copy(), gap) == pytest.approx(1.0)
    stepped = truth + 2.0 * gap
    assert metrics.seam_score(truth, stepped, gap) > 3.0


def test_score_reports_gap_and_whole_and_ssim_d(pair):
    truth, pred = pair
    gap = np.zeros(truth.shape[1:], bool)
    gap[:, 20:] = True
    out = np.where(gap, pred, truth)
    s = metrics.score(truth, out, gap, reference=pred, scale=3.0)
    assert set(s) == {"gap", "whole", "data_range"}
    assert s["whole"]["psnr"] > s["gap"]["psnr"]  # the known part is exact
    assert s["gap"]["pixels"] == gap.sum()
    # The output equals the reference inside the gap, so it is closer to it than to the truth.
    assert s["gap"]["ssim_d"] < 0
    assert len(s["gap"]["psnr_bands"]) == 3
    np.testing.assert_allclose(s["data_range"]["bands"], truth.max(axis=(1, 2)) - truth.min(axis=(1, 2)))


def test_bad_data_range_is_refused(pair):
    truth, pred = pair
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(truth, pred, 0.0)


def test_score_ignores_invalid_pixels_and_nan(pair):
    """A NaN or nodata pixel outside `valid` changes nothing: no window or seam pair sees it."""
    truth, pred = pair
    gap = np.zeros(truth.shape[1:], bool)
    gap[:, 20:] = True
    out = np.where(gap, pred, truth)
    valid = np.ones(truth.shape[1:], bool)
    valid[0, 0] = valid[30, 25] = False
    base = metrics.score(truth, out, gap, valid=valid)
    t2, o2 = truth.copy(), out.copy()
    t2[:, 0, 0] = np.nan
    o2[:, 30, 25] = -99999.0
    hit = metrics.score(t2, o2, gap, valid=valid)
    for region in ("gap", "whole"):
        for k in ("psnr", "ssim", "uqi", "cc", "sam", "seam"):
            assert np.isfinite(hit[region][k]), (region, k)
            assert hit[region][k] == pytest.approx(base[region][k]), (region, k)
    assert hit["gap"]["uqi"] < 0.99  # not the 1.0 a NaN tolerance would give
