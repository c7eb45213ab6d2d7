"""Bad input through the library (fill_raster) and the CLI: the right error, one line, nothing written."""

from __future__ import annotations

import re
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner, Result
from rasterio.transform import from_origin
from shapely.geometry import box

from extendgan_geo.cli.main import cli
from extendgan_geo.config import FillConfig, OutputConfig, TileConfig
from extendgan_geo.errors import (
    BandMismatchError,
    ConfigError,
    EganError,
    GridMismatchError,
    InputError,
    OutputExistsError,
)
from extendgan_geo.fillers.base import TileBatch
from extendgan_geo.pipeline import FILL_MASK_SUFFIX, fill_raster

from .conftest import HR_CRS

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

SIZE = 64  # HR edge, px: every input here is tiny
REF_BANDS = (2, 3, 4, 5)  # make_reference: bands 2..5 match HR 1..4
REF_BIDX = ("--ref-bidx", "2,3,4,5")
CFG = FillConfig(ref_indexes=REF_BANDS)
OUT = "filled.tif"


def runner() -> CliRunner:
    """A CliRunner with stdout and stderr apart (click < 8.2 mixes them unless told)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


def write_far_reference(path: Path, lon: float, lat: float) -> Path:
    """A 6-band EPSG:4326 reference of 0.1 x 0.1 degrees with its top-left corner at (lon, lat)."""
    profile = {
        "driver": "GTiff",
        "width": 10,
        "height": 10,
        "count": 6,
        "dtype": "float32",
        "crs": "EPSG:4326",
        "transform": from_origin(lon, lat, 0.01, 0.01),
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((6, 10, 10), 500, np.float32))
    return path


def write_far_mask_raster(path: Path) -> Path:
    """A uint8 mask raster in the HR CRS, 100 km east of the HR scene."""
    profile = {
        "driver": "GTiff",
        "width": 8,
        "height": 8,
        "count": 1,
        "dtype": "uint8",
        "crs": HR_CRS,
        "transform": from_origin(600000.0, 4000000.0, 8.0, 8.0),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((1, 8, 8), np.uint8))
    return path


def hr_box() -> Any:
    """A polygon over the top-left 10 x 10 HR pixels, in the HR CRS."""
    return box(500000.0, 4000000.0 - 40.0, 500040.0, 4000000.0)


def write_vector(path: Path, layers: dict[str, list[Any]], crs: str | None = HR_CRS) -> Path:
    """A GeoPackage with one layer per entry (a layer may hold no feature)."""
    for name, geoms in layers.items():
        frame = gpd.GeoDataFrame(geometry=gpd.GeoSeries(geoms, crs=crs))
        with warnings.catch_warnings():
            # A file without a CRS is what some cases need; pyogrio warns that it writes one.
            warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
            frame.to_file(path, layer=name, engine="pyogrio")
    return path


Files = Callable[[str], Path]


@pytest.fixture
def files(make_raster: Callable[..., Path], make_reference: Callable[..., Path], tmp_path: Path) -> Files:
    """Inputs by name, written on first use."""
    builders: dict[str, Callable[[], Path]] = {
        "hr": lambda: make_raster(height=SIZE, width=SIZE),
        "hr_nocrs": lambda: make_raster("nocrs.tif", height=SIZE, width=SIZE, crs=None),
        "ref": lambda: make_reference(height=SIZE, width=SIZE),
        "missing": lambda: tmp_path / "missing.tif",
        "text": lambda: _write_text(tmp_path / "notes.txt"),
        "ref_lon100": lambda: write_far_reference(tmp_path / "far.tif", 100.0, 0.05),
        "ref_south": lambda: write_far_reference(tmp_path / "south.tif", 15.0, -10.0),
        "gpkg_garbage": lambda: _write_bytes(tmp_path / "garbage.gpkg"),
        "gpkg_empty": lambda: write_vector(tmp_path / "empty.gpkg", {"gaps": []}),
        "gpkg_two": lambda: write_vector(tmp_path / "two.gpkg", {"a": [hr_box()], "b": [hr_box()]}),
        "gpkg_nocrs": lambda: write_vector(tmp_path / "nocrs.gpkg", {"gaps": [hr_box()]}, crs=None),
        "mask_far": lambda: write_far_mask_raster(tmp_path / "farmask.tif"),
    }
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = builders[name]()
        return cache[name]

    return get


def _write_text(path: Path) -> Path:
    path.write_text("not a raster\n")
    return path


def _write_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    """An empty folder for the output, so that anything left in it shows."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def assert_nothing_written(outdir: Path, keep: tuple[str, ...] = ()) -> None:
    """No output, sidecar or temporary file in `outdir`: only the files in `keep`."""
    assert list(outdir.glob(".*partial*")) == []
    assert sorted(p.name for p in outdir.iterdir()) == sorted(keep)


def cli_args(files: Files, outdir: Path, *extra: str, hr: str = "hr", ref: str = "ref") -> list[str]:
    """`HR --ref REF -o OUTDIR/filled.tif EXTRA...` with the named inputs."""
    return [str(files(hr)), "--ref", str(files(ref)), "-o", str(outdir / OUT), *extra]


def assert_one_line_cli_error(result: Result, codes: tuple[int, ...], says: tuple[str, ...]) -> None:
    """Exit code in `codes`, exactly one 'Error:' line on stderr containing `says`, no traceback."""
    tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
    detail = result.stderr + tb
    assert isinstance(result.exception, SystemExit), detail  # any other exception means a traceback
    assert result.exit_code in codes, detail
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for text in says:
        assert text in errors[0]


@dataclass(frozen=True)
class Case:
    """One bad input: files, library settings and the CLI flags that say the same; the error to give."""

    error: type[EganError]
    says: tuple[str, ...]  # fragments of the one-line message: what was found and what was expected
    hr: str = "hr"
    ref: str = "ref"
    mask: str | None = None
    cfg: dict[str, Any] = field(default_factory=lambda: {"ref_indexes": REF_BANDS})  # FillConfig keywords
    out: dict[str, Any] = field(default_factory=dict)  # OutputConfig keywords
    args: tuple[str, ...] = REF_BIDX
    exit_codes: tuple[int, ...] = (1,)
    xfail: str = ""  # why the tool does not behave yet


def _make_config(kwargs: dict[str, Any]) -> FillConfig:
    kwargs = dict(kwargs)
    if "tiles" in kwargs:
        kwargs["tiles"] = TileConfig(**kwargs["tiles"])
    return FillConfig(**kwargs)


def _co(name: str, value: str, **kwargs: Any) -> Case:
    """A case that passes one creation option."""
    args = (*REF_BIDX, "--co", f"{name}={value}")
    return Case(out={"creation_options": {name: value}}, args=args, **kwargs)


_BOTH_CRS = ("EPSG:4326", "EPSG:32633")  # a disjoint reference: the message names both CRSs

CASES = {
    "hr-missing": Case(InputError, ("missing.tif", "does not exist"), hr="missing", exit_codes=(2,)),
    "hr-not-a-raster": Case(InputError, ("notes.txt", "not a raster", "expected"), hr="text"),
    "ref-not-a-raster": Case(InputError, ("reference", "notes.txt", "not a raster", "expected"), ref="text"),
    "hr-without-crs": Case(InputError, ("nocrs.tif", "no coordinate reference system", "expected"), hr="hr_nocrs"),
    "ref-disjoint-lon100": Case(GridMismatchError, ("far.tif", "does not overlap", *_BOTH_CRS), ref="ref_lon100"),
    "ref-disjoint-same-zone": Case(GridMismatchError, ("south.tif", "does not overlap", *_BOTH_CRS), ref="ref_south"),
    "bidx-out-of-range": Case(
        BandMismatchError,
        ("--bidx", "[7]", "1..4"),
        cfg={"indexes": (7,), "ref_indexes": (2,)},
        args=("-b", "7", "--ref-bidx", "2"),
    ),
    "ref-bidx-out-of-range": Case(
        BandMismatchError,
        ("--ref-bidx", "[9]", "1..6"),
        cfg={"ref_indexes": (2, 3, 4, 9)},
        args=("--ref-bidx", "2,3,4,9"),
    ),
    "band-counts-differ": Case(
        BandMismatchError,
        ("3 reference band(s)", "expects 2", "--ref-bidx"),
        cfg={"indexes": (1, 2), "ref_indexes": (2, 3, 4)},
        args=("-b", "1,2", "--ref-bidx", "2,3,4"),
    ),
    "ambiguous-reference-bands": Case(BandMismatchError, ("6 band(s)", "4 HR band(s)", "--ref-bidx"), cfg={}, args=()),
    "mask-unreadable": Case(InputError, ("garbage.gpkg", "expected"), mask="gpkg_garbage"),
    "mask-empty-layer": Case(InputError, ("empty.gpkg", "no features"), mask="gpkg_empty"),
    "mask-unknown-layer": Case(
        InputError,
        ("'zzz'", "'a'", "'b'", "--mask-layer"),
        mask="gpkg_two",
        cfg={"ref_indexes": REF_BANDS, "mask_layer": "zzz"},
        args=(*REF_BIDX, "--mask-layer", "zzz"),
    ),
    "mask-without-crs": Case(InputError, ("nocrs.gpkg", "no CRS", "expected"), mask="gpkg_nocrs"),
    "mask-raster-disjoint": Case(GridMismatchError, ("farmask.tif", "does not overlap"), mask="mask_far"),
    "overlap-above-half-tile": Case(
        ConfigError,
        ("overlap", "200", "128"),
        cfg={"ref_indexes": REF_BANDS, "tiles": {"overlap": 200}},
        args=(*REF_BIDX, "--overlap", "200"),
        exit_codes=(1, 2),
    ),
    "lossy-jpeg-with-nodata": _co("compress", "jpeg", error=ConfigError, says=("jpeg", "lossy", "nodata")),
    "lossy-webp-with-nodata": _co("COMPRESS", "WEBP", error=ConfigError, says=("WEBP", "lossy", "nodata")),
    "co-blockxsize-17": _co("blockxsize", "17", error=ConfigError, says=("blockxsize", "17")),
    "co-predictor-9": _co("predictor", "9", error=ConfigError, says=("predictor", "9")),
}
CASE_PARAMS = [
    pytest.param(case, id=name, marks=pytest.mark.xfail(strict=True, reason=case.xfail) if case.xfail else ())
    for name, case in CASES.items()
]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_library_raises_one_line_error_and_writes_nothing(case: Case, files, outdir):
    mask = files(case.mask) if case.mask else None
    with pytest.raises(case.error) as info:
        cfg, out_cfg = _make_config(case.cfg), OutputConfig(**case.out)  # a bad setting may fail right here
        fill_raster(files(case.hr), files(case.ref), outdir / OUT, cfg, out_cfg, mask=mask)
    message = str(info.value)
    assert "\n" not in message
    for text in case.says:
        assert text in message
    assert_nothing_written(outdir)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_cli_exits_with_one_error_line_and_writes_nothing(case: Case, files, outdir):
    args = cli_args(files, outdir, *case.args, hr=case.hr, ref=case.ref)
    if case.mask:
        args += ["--mask", str(files(case.mask))]
    assert_one_line_cli_error(runner().invoke(cli, args), case.exit_codes, case.says)
    assert_nothing_written(outdir)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--co", "compress"), ("'compress'", "NAME=VALUE")),
        (("--co", "=deflate"), ("'=deflate'", "NAME=VALUE")),
        (("-b", "0"), ("--bidx", "1-based")),
        (("--ref-bidx", "2,x"), ("'x'", "band number")),
        (("--nodata", "abc"), ("'abc'", "number")),
        (("--tile", "8"), ("--tile", "16")),
    ],
    ids=[
        "co-without-equals",
        "co-without-name",
        "bidx-zero",
        "ref-bidx-not-a-number",
        "nodata-not-a-number",
        "tile-too-small",
    ],
)
def test_cli_bad_option_value_is_a_usage_error(args, says, files, outdir):
    assert_one_line_cli_error(runner().invoke(cli, cli_args(files, outdir, *args)), (2,), says)
    assert_nothing_written(outdir)


def test_cli_small_tile_scales_the_default_overlap(files, outdir):
    result = runner().invoke(cli, cli_args(files, outdir, *REF_BIDX, "--tile", "64"))
    assert result.exit_code == 0, result.output
    with rasterio.open(outdir / OUT) as ds:
        assert ds.tags()["EGAN_OVERLAP"] == "16"


def test_disjoint_reference_message_has_no_infinite_bounds(files, outdir):
    with pytest.raises(GridMismatchError) as info:
        fill_raster(files("hr"), files("ref_lon100"), outdir / OUT, CFG)
    assert not re.search(r"\binf\b", str(info.value))


def test_unreadable_gpkg_mask_is_reported_as_a_vector_file(files, outdir):
    mask = files("gpkg_garbage")
    with pytest.raises(InputError) as info:
        fill_raster(files("hr"), files("ref"), outdir / OUT, CFG, mask=mask)
    assert "vector" in str(info.value).replace(str(mask), "")


PREVIOUS = b"previous output, not to be touched\n"


@pytest.mark.parametrize("via", ["library", "cli"])
def test_existing_output_is_kept_without_overwrite(via, files, outdir):
    out = outdir / OUT
    out.write_bytes(PREVIOUS)
    if via == "library":
        with pytest.raises(OutputExistsError, match="--overwrite"):
            fill_raster(files("hr"), files("ref"), out, CFG)
    else:
        result = runner().invoke(cli, cli_args(files, outdir, *REF_BIDX))
        assert_one_line_cli_error(result, (1,), (OUT, "already exists", "--overwrite"))
    assert out.read_bytes() == PREVIOUS
    assert_nothing_written(outdir, keep=(OUT,))


@pytest.mark.parametrize("via", ["library", "cli"])
def test_existing_output_is_replaced_with_overwrite(via, files, outdir):
    out = outdir / OUT
    out.write_bytes(PREVIOUS)
    if via == "library":
        fill_raster(files("hr"), files("ref"), out, CFG, OutputConfig(overwrite=True))
    else:
        result = runner().invoke(cli, cli_args(files, outdir, *REF_BIDX, "--overwrite"))
        assert result.exit_code == 0, result.stderr
    with rasterio.open(out) as ds, rasterio.open(files("hr")) as src:
        assert (ds.shape, ds.count, ds.crs) == (src.shape, src.count, src.crs)
    assert_nothing_written(outdir, keep=(OUT, OUT + FILL_MASK_SUFFIX))


class FailingFiller:
    """Stand-in filler that breaks on its first batch, after the temporary files are open."""

    name, bands, ref_bands, tile, model_hash = "failing", None, None, None, ""

    def prepare(self, sample: TileBatch) -> None:
        pass

    def __call__(self, batch: TileBatch) -> np.ndarray:
        raise RuntimeError("filler broke")


@pytest.mark.parametrize("existing", [False, True])
def test_failure_while_writing_leaves_no_partial_output(existing, files, outdir):
    out = outdir / OUT
    if existing:
        out.write_bytes(PREVIOUS)
    with pytest.raises(RuntimeError, match="filler broke"):
        fill_raster(files("hr"), files("ref"), out, CFG, OutputConfig(overwrite=True), filler=FailingFiller())
    if existing:
        assert out.read_bytes() == PREVIOUS
    assert_nothing_written(outdir, keep=(OUT,) if existing else ())
