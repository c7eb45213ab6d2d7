"""CLI wiring: bare form, version and help, dry runs, output options, masks and band selections."""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner, Result
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject
from rio_cogeo.cogeo import cog_validate
from scipy import ndimage

from extendgan_geo import __version__
from extendgan_geo.cli.main import cli
from extendgan_geo.pipeline import FILL_MASK_SUFFIX

from .conftest import HR_CRS, HR_ORIGIN, HR_RES, hole

SIZE = 64
REF_BIDX = ("--ref-bidx", "2,3,4,5")  # make_reference: bands 2..5 match HR 1..4
TILES = ("--tile", "32", "--overlap", "8")  # several windows and row strips even on a tiny scene
# Window origins along a 64 px axis for TILES (stride 24, the last one flush with the edge).
ORIGINS = (0, 24, 32)
# The gap of the mask tests: rows r0:r1, cols c0:c1 of a 64 x 80 scene (even, so a 2x coarser mask fits).
MASK_SHAPE = (64, 80)
RECT = (16, 40, 24, 56)


def runner() -> CliRunner:
    """A CliRunner with stdout and stderr apart (click < 8.2 mixes them unless told)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


def run(*args: Any, code: int = 0) -> Result:
    """Invoke `egan-fill` with `args` (paths allowed) and check the exit code."""
    result = runner().invoke(cli, [str(a) for a in args])
    tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
    assert result.exit_code == code, result.stderr + tb
    return result


def read(path: Path | str) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def fill_codes(out: Path) -> np.ndarray:
    """The fill-mask sidecar of `out`: 0 kept, 1 filled, 2 left unfilled."""
    return read(str(out) + FILL_MASK_SUFFIX)[0]


def rect_gap(shape: tuple[int, int] = MASK_SHAPE, rect: tuple[int, int, int, int] = RECT) -> np.ndarray:
    r0, r1, c0, c1 = rect
    gap = np.zeros(shape, bool)
    gap[r0:r1, c0:c1] = True
    return gap


def rect_polygon(rect: tuple[int, int, int, int]) -> shapely.Polygon:
    """The pixel-edge outline of HR rows r0:r1, cols c0:c1, in the HR CRS."""
    r0, r1, c0, c1 = rect
    x0, y0 = HR_ORIGIN
    return shapely.box(x0 + c0 * HR_RES, y0 - r1 * HR_RES, x0 + c1 * HR_RES, y0 - r0 * HR_RES)


def expected_windows(gap: np.ndarray, size: int = 32) -> int:
    """Windows of the TILES grid that hold a gap pixel."""
    return sum(bool(gap[r : r + size, c : c + size].any()) for r in ORIGINS for c in ORIGINS)


@pytest.fixture
def hr(make_raster: Callable[..., Path]) -> Path:
    return make_raster(height=SIZE, width=SIZE)


@pytest.fixture
def ref(make_reference: Callable[..., Path]) -> Path:
    return make_reference(height=SIZE, width=SIZE)


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# --- group wiring -------------------------------------------------------------------------------------------


def test_bare_form_equals_fill_subcommand(hr, ref, outdir):
    forms = {
        "fill": ["fill", hr, "--ref", ref, "-o", outdir / "fill.tif", *REF_BIDX],
        "bare": [hr, "--ref", ref, "-o", outdir / "bare.tif", *REF_BIDX],
        "bare-options-first": ["--ref", ref, "-o", outdir / "first.tif", *REF_BIDX, hr],
    }
    outputs = {}
    for name, args in forms.items():
        run(*args)
        outputs[name] = read(args[args.index("-o") + 1])
    gap = hole(SIZE, SIZE)
    assert (outputs["fill"][:, gap] != 0).all()  # the gap was filled: the comparison below means something
    for name in ("bare", "bare-options-first"):
        assert np.array_equal(outputs[name], outputs["fill"]), name


def test_version():
    result = run("--version")
    assert "egan-fill" in result.stdout and __version__ in result.stdout


FILL_OPTIONS = (
    "--ref",
    "--mask",
    "--output",
    "--bidx",
    "--ref-bidx",
    "--nodata",
    "--ref-nodata",
    "--mask-layer",
    "--mask-buffer",
    "--resampling",
    "--coregister",
    "--method",
    "--model",
    "--tile",
    "--overlap",
    "--blend",
    "--batch-size",
    "--device",
    "--co",
    "--cog",
    "--no-cog",
    "--fill-mask",
    "--no-fill-mask",
    "--tmpdir",
    "--overwrite",
    "--dry-run",
    "--json",
    "--verbose",
    "--quiet",
)


@pytest.mark.parametrize(
    "args",
    [("fill", "--help"), ("fill", "-h"), ("hr.tif", "--help")],
    ids=["fill-help", "fill-h", "bare-help"],
)
def test_help_lists_the_fill_options(args):
    text = run(*args).stdout
    assert "HR" in text
    for option in FILL_OPTIONS:
        assert option in text, option


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_group_help_names_the_command_and_the_bare_form(flag):
    text = run(flag).stdout
    assert "fill" in text and "--version" in text
    assert "egan-fill HR --ref REF" in " ".join(text.split())  # the epilog, whatever the line wrapping


# --- dry run ------------------------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_writes_nothing(hr, ref, outdir):
    result = run(hr, "--ref", ref, "-o", outdir / "filled.tif", *REF_BIDX, *TILES, "--dry-run")
    text = result.stdout
    gap = hole(SIZE, SIZE)
    for line in (
        f"size: {SIZE} x {SIZE} px",  # the HR grid
        f"crs: {HR_CRS}",
        "crs: EPSG:4326",  # the reference's own CRS
        "hr_footprint_covered: 1.0",
        "scale_factor: 7.",  # the conftest reference: 30 m (in EPSG:4326) over 4 m pixels
        f"fraction: {round(gap.sum() / gap.size, 6)}",
        "overlap: 8",
        "in_grid: 9",
        f"to_compute: {expected_windows(gap)}",
    ):
        assert line in text, line
    assert list(outdir.iterdir()) == []


def test_dry_run_json(hr, ref, outdir, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = outdir / "filled.tif"
    result = run(hr, "--ref", ref, "-o", out, *REF_BIDX, *TILES, "--dry-run", "--json", "--tmpdir", scratch)
    plan = json.loads(result.stdout)
    assert {"hr", "reference", "gap", "windows", "output"} <= plan.keys()
    gap = hole(SIZE, SIZE)
    assert plan["hr"]["crs"] == HR_CRS and plan["reference"]["crs"] == "EPSG:4326"
    assert plan["gap"]["pixels"] == gap.sum()
    assert plan["windows"] == {"tile": 32, "overlap": 8, "in_grid": 9, "to_compute": expected_windows(gap)}
    assert plan["output"]["path"] == str(out)
    assert list(outdir.iterdir()) == [] and list(scratch.iterdir()) == []


# --- output options -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "compression", "cog"),
    [(("--co", "COMPRESS=DEFLATE", "--no-cog"), "deflate", False), (("--co", "compress=lzw"), "lzw", True)],
    ids=["deflate-no-cog", "lzw-cog"],
)
def test_creation_options_and_cog_flag_are_honoured(hr, ref, outdir, options, compression, cog):
    out = outdir / "filled.tif"
    run(hr, "--ref", ref, "-o", out, *REF_BIDX, *options)
    with rasterio.open(out) as ds:
        assert ds.compression.name == compression
    assert cog_validate(str(out), quiet=True)[0] is cog


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_prints_nothing_on_stderr(hr, ref, outdir, quiet):
    # A real process: stderr also catches what GDAL or warnings print outside click.
    args = [str(hr), "--ref", str(ref), "-o", str(outdir / "filled.tif"), *REF_BIDX, *(["-q"] * quiet)]
    cmd = [sys.executable, "-c", "from extendgan_geo.cli.main import cli; cli()", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    if quiet:
        assert proc.stderr == ""
    else:
        assert "filled" in proc.stderr


def test_json_summary_on_stdout(hr, ref, outdir):
    out = outdir / "filled.tif"
    result = run(hr, "--ref", ref, "-o", out, *REF_BIDX, "--json")
    summary = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    gap = hole(SIZE, SIZE)
    assert summary["output"] == str(out)
    assert summary["gap_pixels"] == summary["filled_pixels"] == gap.sum()
    assert summary["fill_mask"] == str(out) + FILL_MASK_SUFFIX
    assert "filled" in result.stderr  # the human summary stays on stderr


@pytest.mark.parametrize(("flag", "sidecar"), [("--fill-mask", True), ("--no-fill-mask", False)])
def test_fill_mask_flag(hr, ref, outdir, flag, sidecar):
    out = outdir / "filled.tif"
    run(hr, "--ref", ref, "-o", out, *REF_BIDX, flag)
    written = {p.name for p in outdir.iterdir()}
    assert written == ({"filled.tif", "filled.tif" + FILL_MASK_SUFFIX} if sidecar else {"filled.tif"})


def test_uncertainty_method_flag(hr, ref, outdir):
    out, unc = outdir / "filled.tif", outdir / "unc.tif"
    run(
        hr, "--ref", ref, "-o", out, *REF_BIDX, "--method", "match", "--uncertainty", unc, "--uncertainty-method", "fit"
    )
    with rasterio.open(unc) as src:
        assert "fit" in src.tags()["EGAN_UNCERTAINTY"]
    bare = run(hr, "--ref", ref, "-o", outdir / "b.tif", *REF_BIDX, "--uncertainty-method", "flips", code=2)
    assert "--uncertainty-method needs --uncertainty" in bare.stderr
    assert not (outdir / "b.tif").exists()
    wrong = run(hr, "--ref", ref, "-o", outdir / "c.tif", *REF_BIDX, "--method", "match", "--uncertainty",
                outdir / "cu.tif", "--uncertainty-method", "flips", code=1)  # fmt: skip
    assert "not available for method 'match'" in wrong.stderr
    assert not (outdir / "c.tif").exists() and not (outdir / "cu.tif").exists()


# --- masks --------------------------------------------------------------------------------------------------


@pytest.fixture
def clean_hr(make_raster: Callable[..., Path]) -> Path:
    """An HR without holes (nodata 0 declared, never used): every gap comes from --mask."""
    return make_raster("clean.tif", height=MASK_SHAPE[0], width=MASK_SHAPE[1], gap=np.zeros(MASK_SHAPE, bool))


@pytest.fixture
def mask_ref(make_reference: Callable[..., Path]) -> Path:
    return make_reference("mask_ref.tif", height=MASK_SHAPE[0], width=MASK_SHAPE[1])


def test_vector_mask_in_another_crs_equals_the_nodata_gap(clean_hr, mask_ref, make_raster, outdir, tmp_path):
    gap = rect_gap()
    # 1 m segments: once in degrees, the straight edges between vertices still trace the pixel edges.
    polygon = shapely.segmentize(rect_polygon(RECT), max_segment_length=1.0)
    gpkg = tmp_path / "gaps.gpkg"
    gpd.GeoDataFrame(geometry=[polygon], crs=HR_CRS).to_crs("EPSG:4326").to_file(gpkg, layer="gaps")
    holed_hr = make_raster("holed.tif", height=MASK_SHAPE[0], width=MASK_SHAPE[1], gap=gap)

    run(clean_hr, "--ref", mask_ref, "--mask", gpkg, "-o", outdir / "mask.tif", *REF_BIDX, *TILES)
    run(holed_hr, "--ref", mask_ref, "-o", outdir / "nodata.tif", *REF_BIDX, *TILES)

    by_mask, by_nodata, src = read(outdir / "mask.tif"), read(outdir / "nodata.tif"), read(clean_hr)
    assert np.array_equal(fill_codes(outdir / "mask.tif") == 1, gap)
    assert np.array_equal(by_mask[:, gap], by_nodata[:, gap])
    assert np.array_equal(by_mask[:, ~gap], src[:, ~gap])


def _write_mask_raster(path: Path, gap: np.ndarray, how: str) -> None:
    """A uint8 mask (7 = gap, 0 = keep): 2x coarser on the HR grid, or reprojected to EPSG:4326."""
    hr_transform = from_origin(*HR_ORIGIN, HR_RES, HR_RES)
    data = np.where(gap, 7, 0).astype(np.uint8)
    if how == "coarser":
        crs, transform, data = HR_CRS, from_origin(*HR_ORIGIN, 2 * HR_RES, 2 * HR_RES), data[::2, ::2]
    else:
        height, width = gap.shape
        bounds = rasterio.transform.array_bounds(height, width, hr_transform)
        crs = "EPSG:4326"
        transform, w, h = calculate_default_transform(HR_CRS, crs, width, height, *bounds)
        warped = np.zeros((h, w), np.uint8)
        reproject(
            data,
            warped,
            src_transform=hr_transform,
            src_crs=HR_CRS,
            dst_transform=transform,
            dst_crs=crs,
            resampling=Resampling.nearest,
        )
        data = warped
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
    ) as dst:
        dst.write(data, 1)


@pytest.mark.parametrize("how", ["coarser", "epsg4326"])
def test_raster_mask(clean_hr, mask_ref, outdir, tmp_path, how):
    gap = rect_gap()
    mask = tmp_path / "mask.tif"
    _write_mask_raster(mask, gap, how)
    out = outdir / "filled.tif"
    run(clean_hr, "--ref", mask_ref, "--mask", mask, "-o", out, *REF_BIDX, *TILES)
    filled = fill_codes(out) == 1
    if how == "coarser":
        assert np.array_equal(filled, gap)
    else:  # two nearest-neighbour warps: the edge may move by a pixel or two
        assert not (filled & ~ndimage.binary_dilation(gap, iterations=2)).any()
        assert filled[ndimage.binary_erosion(gap, iterations=2)].all()
    assert np.array_equal(read(out)[:, ~filled], read(clean_hr)[:, ~filled])


@pytest.mark.parametrize("buffer", [0, 3])
def test_mask_buffer_grows_the_gap(make_raster, mask_ref, outdir, buffer):
    gap = rect_gap()
    holed_hr = make_raster("holed.tif", height=MASK_SHAPE[0], width=MASK_SHAPE[1], gap=gap)
    out = outdir / "filled.tif"
    result = run(holed_hr, "--ref", mask_ref, "-o", out, *REF_BIDX, *TILES, "--mask-buffer", buffer, "--json")
    grown = ndimage.distance_transform_edt(~gap) <= buffer  # every pixel within `buffer` px of the gap
    filled = fill_codes(out) == 1
    assert np.array_equal(filled, grown)
    assert json.loads(result.stdout)["filled_pixels"] == grown.sum()
    if buffer:
        assert grown.sum() > gap.sum()
    assert np.array_equal(read(out)[:, ~grown], read(holed_hr)[:, ~grown])


LAYER_RECTS = {"a": (8, 20, 8, 30), "b": (36, 56, 40, 70)}


@pytest.mark.parametrize(("layer", "picked"), [(None, "a"), ("a", "a"), ("b", "b")])
def test_mask_layer_picks_the_layer(clean_hr, mask_ref, outdir, tmp_path, layer, picked):
    gpkg = tmp_path / "two.gpkg"
    for name, rect in LAYER_RECTS.items():
        gpd.GeoDataFrame(geometry=[rect_polygon(rect)], crs=HR_CRS).to_file(gpkg, layer=name)
    out = outdir / "filled.tif"
    run(
        clean_hr,
        "--ref",
        mask_ref,
        "--mask",
        gpkg,
        "-o",
        out,
        *REF_BIDX,
        *TILES,
        *(["--mask-layer", layer] if layer else []),
    )
    assert np.array_equal(fill_codes(out) == 1, rect_gap(rect=LAYER_RECTS[picked]))


# --- band selections ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bands",
    [
        ("-b", "1,2,3", "--ref-bidx", "2,3,4"),
        ("-b", "1", "-b", "2", "-b", "3", "--ref-bidx", "2", "--ref-bidx", "3", "--ref-bidx", "4"),
        ("--bidx", " 1, 2,3", "--ref-bidx", "2,3", "--ref-bidx", "4"),
    ],
    ids=["comma-list", "repeated", "mixed"],
)
def test_band_lists_parse(hr, make_raster, outdir, bands):
    # A reference on the HR grid is warped directly, so the plan reports its band numbers as given.
    same_grid = make_raster("same_grid.tif", height=SIZE, width=SIZE, gap=np.zeros((SIZE, SIZE), bool))
    result = run(hr, "--ref", same_grid, "-o", outdir / "o.tif", *bands, "--dry-run", "--json")
    plan = json.loads(result.stdout)
    assert plan["hr"]["bands"] == [1, 2, 3]
    assert plan["reference"]["bands"] == [2, 3, 4]


def test_coarse_reference_bands_are_reported_as_given(hr, ref, outdir):
    out = outdir / "filled.tif"
    plan = json.loads(run(hr, "--ref", ref, "-o", out, *REF_BIDX, "--dry-run", "--json").stdout)
    run(hr, "--ref", ref, "-o", out, *REF_BIDX)
    with rasterio.open(out) as ds:
        assert ds.tags()["EGAN_REFERENCE_BANDS"] == "2,3,4,5"
    assert plan["reference"]["bands"] == [2, 3, 4, 5]


def test_cli_reference_documents_every_option():
    import pathlib

    import click

    from extendgan_geo.cli.main import cli as group

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for name, command in group.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.opts[-1] in text, (
                    f"docs/cli.md lacks {name} {param.opts[-1]}: run scripts/make_cli_docs.py"
                )
