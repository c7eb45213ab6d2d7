"""--compile: the generator through torch.compile gives the same fill, and plain torch when compiling fails."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import rasterio

from extendgan_geo.config import FillConfig
from extendgan_geo.fillers import gan
from extendgan_geo.pipeline import fill_raster

pytestmark = pytest.mark.skipif(gan.bundled_model() is None, reason="needs the bundled model")


@pytest.fixture
def scene(make_raster, make_reference):
    return make_raster(height=200, width=220), make_reference()


def _fill(scene, tmp_path, name, **cfg):
    hr, ref = scene
    out = tmp_path / name
    res = fill_raster(hr, ref, out, FillConfig(method="gan", device="cpu", ref_indexes=(2, 3, 4, 5), **cfg))
    assert res.method == "gan" and res.filled_pixels == res.gap_pixels > 0
    with rasterio.open(out) as src:
        return src.read().astype(np.int64)


NO_CXX = not any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.mark.skipif(NO_CXX, reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_generator_fills_like_the_plain_one(scene, tmp_path):
    """Inductor for real (a one-off compile of the bundled generator): the same pixels, to 1 DN of rounding."""
    plain = _fill(scene, tmp_path, "plain.tif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = _fill(scene, tmp_path, "compiled.tif", compile=True)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)], "inductor fell back to plain torch"
    assert np.abs(compiled - plain).max() <= 1
    assert (compiled == plain).mean() > 0.99


def test_compile_failure_falls_back_to_plain_torch(scene, tmp_path, monkeypatch):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(gan, "COMPILE_BACKEND", broken_backend)
    plain = _fill(scene, tmp_path, "plain.tif")
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        compiled = _fill(scene, tmp_path, "fallback.tif", compile=True)
    np.testing.assert_array_equal(compiled, plain)


def test_compile_option_reaches_the_filler(make_raster, make_reference, tmp_path, monkeypatch):
    """The CLI flag builds a compiled filler (checked with torch's code-generation-free backend)."""
    from click.testing import CliRunner

    from extendgan_geo.cli.main import cli

    made = []
    original = gan.GanFiller.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self.compiled is not None)

    monkeypatch.setattr(gan, "COMPILE_BACKEND", "eager")
    monkeypatch.setattr(gan.GanFiller, "__init__", spy)
    hr, ref = make_raster(height=120, width=120), make_reference()
    for flag, expected in (("--compile", True), ("--no-compile", False)):
        out = tmp_path / f"{flag}.tif"
        args = [str(hr), "--ref", str(ref), "--ref-bidx", "2,3,4,5", "--method", "gan", flag, "-o", str(out), "-q"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert made[-1] is expected
