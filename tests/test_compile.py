"""--compile: the generator through torch.compile gives the same fill, and plain torch when compiling fails."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import rasterio
import torch

from extendgan_geo.config import FillConfig
from extendgan_geo.fillers import gan
from extendgan_geo.pipeline import fill_raster

pytestmark = pytest.mark.skipif(gan.bundled_model() is None, reason="needs the bundled model")
NO_CXX = not any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.fixture(autouse=True)
def fresh_compiler(monkeypatch):
    """Each test starts with torch's compiled code and our failure memory cleared."""
    monkeypatch.setattr(gan, "_compile_failed", None)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


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


@pytest.mark.skipif(NO_CXX, reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_generator_fills_like_the_plain_one(scene, tmp_path):
    """Inductor for real (a one-off compile of the bundled generator): the same pixels, to 1 DN of rounding."""
    from torch._dynamo.utils import counters

    plain = _fill(scene, tmp_path, "plain.tif")
    counters.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = _fill(scene, tmp_path, "compiled.tif", compile=True)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)], "inductor fell back to plain torch"
    assert counters["stats"]["unique_graphs"] >= 1, "nothing was compiled"
    assert np.abs(compiled - plain).max() <= 1
    assert (compiled == plain).mean() > 0.99


def test_compile_failure_falls_back_once_per_process(scene, tmp_path, monkeypatch):
    calls = []

    def broken_backend(graph, example_inputs):
        calls.append(1)
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(gan, "COMPILE_BACKEND", broken_backend)
    plain = _fill(scene, tmp_path, "plain.tif")
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        compiled = _fill(scene, tmp_path, "fallback.tif", compile=True)
    np.testing.assert_array_equal(compiled, plain)
    assert len(calls) == 1
    # The next filler of the process (a batch job, a mosaic strip) neither compiles again nor warns again.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = _fill(scene, tmp_path, "again.tif", compile=True)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    assert len(calls) == 1
    np.testing.assert_array_equal(again, plain)


def _filler(monkeypatch):
    monkeypatch.setattr(gan, "COMPILE_BACKEND", "eager")
    return gan.load_gan_filler(None, device="cpu", bands=2, compile=True)


def test_errors_of_the_model_itself_are_not_taken_for_compile_failures(monkeypatch):
    filler = _filler(monkeypatch)

    def failing(*args):
        raise ValueError("a bandwise generator needs as many reference bands as HR bands")

    filler.compiled = failing
    x = torch.zeros(1, 2, 32, 32)
    with pytest.raises(ValueError, match="as many reference bands"):
        filler._forward(x, x, torch.zeros(1, 1, 32, 32))
    assert gan._compile_failed is None


def test_a_smaller_last_gpu_batch_is_padded_to_the_compiled_size(monkeypatch):
    filler = _filler(monkeypatch)
    filler.device = "cuda"  # only the batching rule is exercised; the tensors stay on the CPU
    seen = []

    def compiled(hr, ref, gap):
        seen.append(len(hr))
        return hr * 2

    filler.compiled = compiled
    full = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 2, 8, 8)
    gap = torch.zeros(4, 1, 8, 8)
    assert filler._forward(full, full, gap).shape == (4, 2, 8, 8)
    last = filler._forward(full[:3], full[:3], gap[:3])
    assert seen == [4, 4]
    torch.testing.assert_close(last, full[:3] * 2)


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


def test_coarse_passes_skip_the_compiled_generator(monkeypatch):
    """Coarse-to-fine passes run small windows in batches of varying size: plain torch, no compile per shape."""
    from extendgan_geo.fillers.base import TileBatch

    filler = _filler(monkeypatch)
    seen, plain_calls = [], []
    plain = filler.generator

    def compiled(*args):
        seen.append(tuple(args[0].shape[-2:]))
        return plain(*args)

    filler.compiled = compiled
    filler.generator = lambda *a: plain_calls.append(tuple(a[0].shape[-2:])) or plain(*a)
    rng = np.random.default_rng(0)
    hr = rng.uniform(100, 900, (2, 2, 128, 128)).astype(np.float32)
    gap = np.zeros((2, 1, 128, 128), bool)
    gap[..., 64:] = True
    batch = TileBatch(np.where(gap, 0, hr).astype(np.float32), hr * 0.5 + 20, gap, np.zeros((2, 2), np.int64), 30.0)
    filler.prepare(batch)
    assert np.isfinite(filler(batch)).all()
    assert seen == [(128, 128), (128, 128)]  # the full-resolution windows only
    assert plain_calls == [(26, 26)]  # both coarse windows in one plain call
