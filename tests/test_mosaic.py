"""Mosaics of overlapping scenes on an in-process Dask cluster: grid, gap, seam buffer, kept pixels, CLI."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner, Result
from rasterio.features import geometry_mask
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rio_cogeo.cogeo import cog_validate
from scipy import ndimage

from extendgan_geo.cli.batch import mosaic
from extendgan_geo.config import FillConfig, OutputConfig, TileConfig
from extendgan_geo.errors import BandMismatchError, ConfigError, GridMismatchError, InputError, OutputExistsError
from extendgan_geo.mosaic import MosaicConfig, fill_mosaic, make_strips, plan_mosaic, seam_band
from extendgan_geo.pipeline import FILL_MASK_SUFFIX

from .conftest import HR_CRS, HR_ORIGIN, HR_RES, scene

H, W = 120, 160
# Scenes as (row0, row1, col0, col1) of the mosaic grid, in priority order; they overlap pairwise.
RECTS = [(0, 70, 0, 90), (10, 80, 70, 160), (60, 120, 30, 110)]
HOLE_COVERED = (20, 30, 74, 88)  # a nodata hole of scene 0 that scene 1 covers: scene 1 shows through
HOLE_OPEN = (30, 45, 10, 30)  # a nodata hole of scene 0 that no scene covers: gap
CFG = FillConfig(ref_indexes=(2, 3, 4, 5), method="match", tiles=TileConfig(size=32, overlap=8))
SEAM = 8.0  # metres: 2 px


def truth() -> np.ndarray:
    return scene(H, W).astype(np.uint16)


def write_scene(path: Path, i: int, rect: tuple[int, int, int, int], crs: str = HR_CRS) -> Path:
    """Scene `i`: the truth over `rect`, brightened by 40 * i (so seams show), nodata 0, tiled 32."""
    r0, r1, c0, c1 = rect
    data = truth()[:, r0:r1, c0:c1] + np.uint16(40 * i)
    if i == 0:
        for hr0, hr1, hc0, hc1 in (HOLE_COVERED, HOLE_OPEN):
            data[:, hr0 - r0 : hr1 - r0, hc0 - c0 : hc1 - c0] = 0
    transform = from_origin(HR_ORIGIN[0] + c0 * HR_RES, HR_ORIGIN[1] - r0 * HR_RES, HR_RES, HR_RES)
    profile = {
        "driver": "GTiff",
        "width": c1 - c0,
        "height": r1 - r0,
        "count": 4,
        "dtype": "uint16",
        "nodata": 0,
        "crs": HR_CRS,
        "transform": transform,
        "tiled": True,
        "blockxsize": 32,
        "blockysize": 32,
    }
    if crs != HR_CRS:
        dt, dw, dh = calculate_default_transform(
            HR_CRS, crs, c1 - c0, r1 - r0, *rasterio.transform.array_bounds(r1 - r0, c1 - c0, transform)
        )
        out = np.zeros((4, dh, dw), np.uint16)
        reproject(data, out, src_transform=transform, src_crs=HR_CRS, dst_transform=dt, dst_crs=crs,
                  resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)  # fmt: skip
        data, profile = out, {**profile, "crs": crs, "transform": dt, "width": dw, "height": dh}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture
def scenes(tmp_path: Path) -> list[Path]:
    return [write_scene(tmp_path / f"s{i}.tif", i, rect) for i, rect in enumerate(RECTS)]


@pytest.fixture
def ref(make_reference: Callable[..., Path]) -> Path:
    return make_reference(height=H, width=W)


def composite() -> tuple[np.ndarray, np.ndarray]:
    """What the mosaic holds before filling: values and owner (-1 = no scene), first valid scene wins."""
    data = np.zeros((4, H, W), np.uint16)
    owner = np.full((H, W), -1)
    t = truth()
    for i, (r0, r1, c0, c1) in enumerate(RECTS):
        valid = np.zeros((H, W), bool)
        valid[r0:r1, c0:c1] = True
        if i == 0:
            for hr0, hr1, hc0, hc1 in (HOLE_COVERED, HOLE_OPEN):
                valid[hr0:hr1, hc0:hc1] = False
        take = valid & (owner < 0)
        data[:, take] = t[:, take] + np.uint16(40 * i)
        owner[take] = i
    return data, owner


def pixel_mask(geom: Any) -> np.ndarray:
    """Pixels of the mosaic grid whose centre is inside `geom`."""
    transform = from_origin(*HR_ORIGIN, HR_RES, HR_RES)
    return geometry_mask([geom], out_shape=(H, W), transform=transform, invert=True)


def hull() -> Any:
    x0, y0 = HR_ORIGIN
    boxes = [
        shapely.box(x0 + c0 * HR_RES, y0 - r1 * HR_RES, x0 + c1 * HR_RES, y0 - r0 * HR_RES) for r0, r1, c0, c1 in RECTS
    ]
    return shapely.convex_hull(shapely.union_all(boxes))


def expected_band(owner: np.ndarray, buffer: float) -> np.ndarray:
    """Pixels within `buffer` metres of a pixel that touches another scene's pixel (4-neighbours)."""
    seam = np.zeros(owner.shape, bool)
    for axis in (0, 1):
        a, b = np.moveaxis(owner, axis, 0)[1:], np.moveaxis(owner, axis, 0)[:-1]
        edge = (a != b) & (a >= 0) & (b >= 0)
        s = np.moveaxis(seam, axis, 0)
        s[1:] |= edge
        s[:-1] |= edge
    return (ndimage.distance_transform_edt(~seam) * HR_RES <= buffer) & (owner >= 0)


def read(path: Path | str) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


# --- the mosaic ---------------------------------------------------------------------------------------------


def test_mosaic_fills_the_gap_and_keeps_scene_pixels_outside_the_seam_buffer(scenes, ref, tmp_path, client):
    out = tmp_path / "mosaic.tif"
    steps = []
    result = fill_mosaic(
        scenes, ref, out, CFG, OutputConfig(), MosaicConfig(seam_buffer=SEAM, strip_rows=32), where=client,
        progress=lambda n, total: steps.append((n, total)),
    )  # fmt: skip
    # strips start on multiples of lcm(stride 24, reference cell 3, scan cell 16) = 48 rows: 32 -> 48 rows a strip
    assert result.strips == 2 == len(steps) and steps[-1] == (1, 2)
    expected, owner = composite()
    band = expected_band(owner, SEAM)
    inside = pixel_mask(hull())
    got = read(out)
    with rasterio.open(out) as src:
        assert (src.shape, src.crs.to_string(), src.res, src.nodata) == ((H, W), HR_CRS, (HR_RES, HR_RES), 0)
        assert src.transform == from_origin(*HR_ORIGIN, HR_RES, HR_RES)
        tags = src.tags()
    assert cog_validate(str(out))[0]

    keep = (owner >= 0) & ~band
    assert np.array_equal(got[:, keep], expected[:, keep])  # every scene pixel outside the seam buffer, bit for bit
    assert (got[:, 25, 80] == expected[:, 25, 80]).all() and owner[25, 80] == 1  # scene 1 through scene 0's hole
    assert (got[:, inside] != 0).all()  # no gap left inside the AOI (the reference is valid everywhere)
    assert (got[:, ~inside & (owner < 0)] == 0).all()  # outside the AOI, no scene: nodata
    assert (got[:, band] != expected[:, band]).any()  # the seam band was regenerated

    codes = read(str(out) + FILL_MASK_SUFFIX)[0]
    gap = inside & (owner < 0)
    assert np.array_equal(codes == 1, gap | band)
    assert result.gap_pixels == gap.sum() and result.seam_pixels == band.sum()
    assert result.filled_pixels == (gap | band).sum() and result.unfilled_pixels == 0
    assert tags["EGAN_MOSAIC_SCENES"] == "s0.tif;s1.tif;s2.tif" and tags["EGAN_METHOD"] == "match"
    assert tags["EGAN_FILLED_PIXELS"] == str(result.filled_pixels) and tags["EGAN_SEAM_PIXELS"] == str(band.sum())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no strip or partial left


def test_mosaic_with_an_aoi_and_without_seam_buffer(scenes, ref, tmp_path, client):
    x0, y0 = HR_ORIGIN
    aoi = shapely.box(x0, y0 - 100 * HR_RES, x0 + 60 * HR_RES, y0)  # the left part: rows 0-100, cols 0-60
    gpkg = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame(geometry=[aoi], crs=HR_CRS).to_crs("EPSG:4326").to_file(gpkg, layer="aoi")
    out = tmp_path / "aoi.tif"
    result = fill_mosaic(scenes, ref, out, CFG, OutputConfig(cog=False), MosaicConfig(aoi=str(gpkg)), where=client)
    expected, owner = composite()
    inside = pixel_mask(aoi)
    got = read(out)
    assert np.array_equal(got[:, owner >= 0], expected[:, owner >= 0])
    assert (got[:, inside] != 0).all()
    assert (got[:, ~inside & (owner < 0)] == 0).all()
    assert result.seam_pixels == 0 and result.gap_pixels == (inside & (owner < 0)).sum() > 0
    assert result.aoi == "aoi.gpkg"


def test_scene_in_another_crs_is_warped_onto_the_grid(scenes, ref, tmp_path, client):
    lonlat = write_scene(tmp_path / "ll.tif", 1, RECTS[1], crs="EPSG:4326")
    plan = plan_mosaic([scenes[0], lonlat, scenes[2]])
    assert plan.scenes[0].offset == (0, 0) and plan.scenes[1].offset is None and plan.scenes[2].offset == (60, 30)
    assert plan.crs.to_string() == HR_CRS and plan.res == HR_RES
    out = tmp_path / "warped.tif"
    fill_mosaic([scenes[0], lonlat, scenes[2]], ref, out, CFG, OutputConfig(), MosaicConfig(strip_rows=64),
                where=client)  # fmt: skip
    expected, owner = composite()
    got = read(out)
    on_grid = owner != 1
    assert np.array_equal(got[:, on_grid & (owner >= 0)], expected[:, on_grid & (owner >= 0)])
    core = np.zeros((H, W), bool)
    core[20:70, 95:150] = True  # well inside scene 1, away from its warped edges
    diff = np.abs(got[:, core].astype(int) - expected[:, core].astype(int))
    assert (diff == 0).mean() > 0.5 and diff.max() < 200  # nearest through lon/lat: same pixel, or a neighbour


def test_seam_band_is_both_sides_of_an_ownership_change():
    owner = np.zeros((5, 8), np.int32)
    owner[:, 4:] = 1
    owner[0, :] = -1  # no scene: not a seam
    band = seam_band(owner, np.ones(owner.shape, bool), 1.0, 1.0)
    assert band[1:, 2:6].all() and not band[1:, :2].any() and not band[1:, 6:].any()
    assert not band[0, :3].any()  # row 0 is no seam: only its pixels within 1 m of row 1's seam pixels are near
    assert not seam_band(owner, np.zeros(owner.shape, bool), 5.0, 1.0).any()  # outside the AOI: no seam


def test_mosaic_errors(scenes, ref, tmp_path):
    with pytest.raises(ConfigError, match="seam buffer"):
        MosaicConfig(seam_buffer=-1)
    with pytest.raises(ConfigError, match="no scene"):
        plan_mosaic([])
    odd = tmp_path / "odd.tif"
    with rasterio.open(odd, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint16", crs=HR_CRS,
                       transform=from_origin(*HR_ORIGIN, HR_RES, HR_RES)) as dst:  # fmt: skip
        dst.write(np.ones((3, 8, 8), np.uint16))
    with pytest.raises(InputError, match="same bands and data type"):
        plan_mosaic([scenes[0], odd])
    with pytest.raises(InputError, match="does not exist"):
        plan_mosaic(scenes, MosaicConfig(aoi=str(tmp_path / "none.gpkg")))
    (tmp_path / "taken.tif").write_text("x")
    with pytest.raises(OutputExistsError):
        fill_mosaic(scenes, ref, tmp_path / "taken.tif", CFG)


def test_cli_mosaic(scenes, ref, tmp_path):
    out = tmp_path / "cli.tif"
    args = [*scenes, "--ref", ref, "-o", out, "--seam-buffer", "8", "--strip-rows", "48", "--threads"]
    args += ["--workers", "2", "--method", "match", "--ref-bidx", "2,3,4,5", "--tile", "32", "--overlap", "8"]
    result = run_cli(*args)
    assert "mosaic of 3 scene(s), 160x120 px, in 2 strip(s)" in result.stderr
    assert "LocalCluster" in result.stderr
    expected, owner = composite()
    keep = (owner >= 0) & ~expected_band(owner, SEAM)
    assert np.array_equal(read(out)[:, keep], expected[:, keep])
    assert "already exists" in run_cli(*args, code=1).stderr


def run_cli(*args: Any, code: int = 0) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(mosaic, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def test_bad_settings_fail_before_any_strip_and_leave_nothing(scenes, ref, tmp_path, client):
    out = tmp_path / "bad.tif"
    bad = FillConfig(ref_indexes=(2, 3, 4, 9), method="match", tiles=TileConfig(size=32, overlap=8))
    with pytest.raises(BandMismatchError, match=r"--ref-bidx asks for band\(s\) \[9\]") as info:
        fill_mosaic(scenes, ref, out, bad, mcfg=MosaicConfig(strip_rows=64), where=client)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ref.tif", *(p.name for p in scenes)])


@pytest.mark.parametrize("error", [BandMismatchError, GridMismatchError])
def test_a_failing_strip_stops_the_mosaic_with_its_error_and_leaves_nothing(
    scenes, ref, tmp_path, client, monkeypatch, error
):
    """Any error of a strip the reference overlaps surfaces, GridMismatchError too (it is not "no reference")."""

    def failing(*args: Any, **kwargs: Any) -> None:
        raise error("the engine refused this strip")

    monkeypatch.setattr("extendgan_geo.mosaic.fill_raster", failing)  # workers are threads of this process
    with pytest.raises(error, match=r"^strip \d+ \(rows \d+-\d+\): the engine refused") as info:
        fill_mosaic(scenes, ref, tmp_path / "bad.tif", CFG, mcfg=MosaicConfig(strip_rows=48), where=client)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ref.tif", *(p.name for p in scenes)])


# --- strips: one global fit, strips on the window lattice ------------------------------------------------------

TALL = (256, 160)  # a taller scene: several strips
BIG_HOLE = (28, 228, 20, 140)  # rows 28-228, cols 20-140: crosses every strip boundary


def write_raster(path: Path, data: np.ndarray, *, nodata: float | None = 0, row0: int = 0, col0: int = 0) -> Path:
    transform = from_origin(HR_ORIGIN[0] + col0 * HR_RES, HR_ORIGIN[1] - row0 * HR_RES, HR_RES, HR_RES)
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                       nodata=nodata, crs=HR_CRS, transform=transform, tiled=True, blockxsize=32,
                       blockysize=32) as dst:  # fmt: skip
        dst.write(data)
    return path


def tall_scene(path: Path) -> Path:
    data = scene(*TALL).astype(np.uint16)
    r0, r1, c0, c1 = BIG_HOLE
    data[:, r0:r1, c0:c1] = 0
    return write_raster(path, data)


COREG = FillConfig(
    ref_indexes=(2, 3, 4, 5), method="match", tiles=TileConfig(size=32, overlap=8), mask_buffer=2, coregister=True
)


@pytest.mark.parametrize(
    ("case", "cfg", "seam", "rows"),
    [
        ("tall", CFG, 0.0, (16, 100)),  # the review's case: one scene, a 200x120 hole, a reference in EPSG:4326
        ("tall", COREG, 0.0, (16,)),  # --coregister (one shift for all) and --mask-buffer
        ("3 scenes", CFG, SEAM, (16,)),  # seams regenerated across strip boundaries
    ],
)
def test_strips_meet_without_seams_a_mosaic_does_not_depend_on_strip_rows(
    case, cfg, seam, rows, scenes, tmp_path, make_reference, client
):
    """Regression (review A1): every strip used to fit its own scene statistics and window grid: steps of up to
    ~150 DN at strip boundaries. The filler is now prepared once on the whole mosaic and strips start on the
    window lattice, so a mosaic in many strips equals, bit for bit, the same mosaic in one strip."""
    if case == "tall":
        paths = [tall_scene(tmp_path / "tall.tif")]
        crs = HR_CRS if cfg.coregister else "EPSG:4326"  # --coregister shifts a reference in the HR CRS only
        ref = make_reference("ref_tall.tif", height=TALL[0], width=TALL[1], crs=crs)
    else:
        paths, ref = scenes, make_reference(height=H, width=W)
    outs = {}
    for n in (*rows, 4096):
        out = tmp_path / f"m{n}.tif"
        mcfg = MosaicConfig(strip_rows=n, seam_buffer=seam)
        res = fill_mosaic(paths, ref, out, cfg, OutputConfig(cog=False), mcfg, where=client)
        outs[n] = (read(out), read(str(out) + FILL_MASK_SUFFIX), res)
    single, codes, res1 = outs[4096]
    assert res1.strips == 1 and res1.filled_pixels > 1000 and res1.unfilled_pixels == 0
    if cfg.coregister:
        assert res1.shift != (0.0, 0.0) and all(abs(v) < 1 for v in res1.shift)
    for n in rows:
        got, got_codes, res = outs[n]
        assert res.strips >= (5 if case == "tall" and n == 16 else 2) and res.shift == res1.shift
        assert np.array_equal(got, single), f"{n} rows: max diff {np.abs(got.astype(int) - single).max()}"
        assert np.array_equal(got_codes, codes) and res.filled_pixels == res1.filled_pixels


def test_strips_start_on_the_lattice_and_their_margins_hold_every_window_of_their_core():
    cases = [(1000, 300, 40, 48), (97, 16, 34, 48), (5000, 2048, 256, 192), (30, 64, 8, 8), (500, 16, 300, 8)]
    for height, rows, margin, quantum in cases:
        plan = SimpleNamespace(height=height)
        strips = make_strips(plan, rows, margin, quantum)  # type: ignore[arg-type]
        assert strips[0].rows[0] == 0 and strips[-1].rows[1] == height
        for a, b in itertools.pairwise(strips):
            assert a.rows[1] == b.rows[0] > a.rows[0]
        for s in strips:
            assert s.ext[0] % quantum == 0 and (s.ext[0] == 0 or s.rows[0] - s.ext[0] >= margin)
            assert s.ext[1] == min(height, s.rows[1] + margin)


def test_a_later_scene_pixel_equal_to_the_mosaic_nodata_is_kept_and_fills_never_equal_it(tmp_path, client):
    """Regression (review B4): the mosaic's nodata is the first scene's (0); a later scene without nodata has valid
    zeros. They used to be taken for holes and refilled."""
    t = truth()
    a = t[:, :, :90].copy()
    a[:, 30:60, 20:50] = 0  # a hole of scene a: gap
    b = t[:, :, 80:].copy()
    b[1, 10:20, 40:60] = 0  # valid zeros of scene b (no nodata), band 2
    pa = write_raster(tmp_path / "a.tif", a)
    pb = write_raster(tmp_path / "b.tif", b, nodata=None, col0=80)
    ref = tmp_path / "zeros.tif"  # a reference of zeros (valid: its nodata is -1): --method reference fills 0
    with rasterio.open(ref, "w", driver="GTiff", width=W // 6 + 2, height=H // 6 + 2, count=4, dtype="float32",
                       nodata=-1, crs=HR_CRS, transform=from_origin(HR_ORIGIN[0] - 24, HR_ORIGIN[1] + 24, 24, 24),
                       ) as dst:  # fmt: skip
        dst.write(np.zeros((4, H // 6 + 2, W // 6 + 2), np.float32))
    cfg = FillConfig(method="reference", tiles=TileConfig(size=32, overlap=8))
    out = tmp_path / "m.tif"
    result = fill_mosaic([pa, pb], ref, out, cfg, OutputConfig(cog=False), MosaicConfig(strip_rows=16), where=client)
    got, codes = read(out), read(str(out) + FILL_MASK_SUFFIX)[0]
    with rasterio.open(out) as src:
        assert src.nodata == 0
    assert np.array_equal(got[:, :, 80:], b) and (got[1, 10:20, 120:140] == 0).all()  # scene b, bit for bit
    assert (codes[:, 80:] == 0).all()
    assert result.gap_pixels == 30 * 30 == result.filled_pixels and (codes[30:60, 20:50] == 1).all()
    assert (got[:, 30:60, 20:50] == 1).all()  # the reference's 0 is the nodata: nudged to 1, as `fill` does


def test_a_strip_the_reference_misses_is_left_unfilled_but_a_coregister_failure_is_an_error(
    tmp_path, make_reference, client
):
    """Regression (review B3): only a reference disjoint from a strip means "no reference there"; any other error,
    such as --coregister finding too few common pixels, used to be swallowed the same way."""
    data = scene(*TALL).astype(np.uint16)
    data[:, :100] = 0  # the scene's top rows have no data (the reference covers only those)
    data[:, 150:200, 40:100] = 0  # a hole, far below the reference
    path = write_raster(tmp_path / "s.tif", data)
    ref = make_reference("ref_top.tif", height=48, width=TALL[1], crs=HR_CRS)
    out = tmp_path / "m.tif"
    result = fill_mosaic([path], ref, out, CFG, OutputConfig(cog=False), MosaicConfig(strip_rows=48), where=client)
    assert result.gap_pixels == 50 * 60 == result.unfilled_pixels and result.filled_pixels == 0
    assert "left unfilled: the reference has no data there" in result.summary()
    cfg = FillConfig(ref_indexes=(2, 3, 4, 5), method="match", tiles=TileConfig(size=32, overlap=8), coregister=True)
    with pytest.raises(GridMismatchError, match="--coregister found only 0 pixels"):
        fill_mosaic([path], ref, tmp_path / "c.tif", cfg, mcfg=MosaicConfig(strip_rows=48), where=client)
    assert not (tmp_path / "c.tif").exists()


def test_relative_paths_become_absolute_for_the_workers(scenes, ref, tmp_path, client, monkeypatch):
    """Regression (review B7): workers in another folder (--scheduler) could not open relative paths."""
    monkeypatch.chdir(tmp_path)
    plan = plan_mosaic([p.name for p in scenes])
    assert [s.path for s in plan.scenes] == [str(p) for p in scenes]
    result = fill_mosaic([p.name for p in scenes], "ref.tif", "rel.tif", CFG, OutputConfig(cog=False), where=client)
    assert result.filled_pixels > 0 and (tmp_path / "rel.tif").exists()


def test_staging_folder_is_removed_even_while_a_straggler_writes_into_it(tmp_path):
    import threading

    from extendgan_geo.mosaic import _remove_tree

    folder = tmp_path / ".out.tif.x.strips"
    folder.mkdir()
    stop = threading.Event()

    def straggler() -> None:  # a cancelled strip that keeps creating files until its folder is gone
        i = 0
        while not stop.is_set():
            try:
                (folder / f"strip{i:05d}.base.tif").write_bytes(b"x" * 1000)
            except FileNotFoundError:
                return
            i += 1

    t = threading.Thread(target=straggler)
    t.start()
    try:
        _remove_tree(str(folder))
    finally:
        stop.set()
        t.join()
    assert not folder.exists() and not list(tmp_path.iterdir())  # nothing left, and writes do not create folders
