"""`egan-fill evaluate` end to end, and the floor baselines (`reference`, `fillnodata`) through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from extendgan_geo.errors import ConfigError
from extendgan_geo.evaluate import TABLE_METRICS, EvalConfig, evaluate
from extendgan_geo.figures import PANEL

from .test_cli import fill_codes, read, run

SIZE = 160


@pytest.fixture
def truth(make_raster) -> Path:
    return make_raster("truth.tif", height=SIZE, width=SIZE, bands=3, kind="none")


@pytest.fixture
def real_ref(make_reference) -> Path:
    return make_reference(height=SIZE, width=SIZE, bands=3)


def test_evaluate_writes_tables_and_pictures(truth, tmp_path):
    out = tmp_path / "eval"
    result = run(
        "evaluate", truth, "--factor", "2,6", "--layouts", "right-half,cloud", "--crop", "128",
        "--methods", "match,reference,fillnodata", "--tile", "64", "--cases", "1", "-o", out,
    )  # fmt: skip
    assert "Gap only" in result.stdout
    names = sorted(p.name for p in out.iterdir())
    cases = [f"c0-{layout}-x{f}" for f in (2, 6) for layout in ("right-half", "cloud")]
    assert names == sorted([*(c + ".png" for c in cases), "metrics.csv", "metrics.json", "metrics.md", "metrics.png"])
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"case", "layout", "factor", "method", "region", "gap_share", "unfilled", *TABLE_METRICS} <= set(rows[0])
    assert len(rows) == len(cases) * 3 * 2  # cases x methods x {gap, whole}
    assert {r["method"] for r in rows} == {"match", "reference", "fillnodata"}
    by = {(r["case"], r["method"], r["region"]): r for r in rows}
    for case in cases:
        # Outside the gap nothing changes, so the whole crop always scores better than the gap alone.
        assert float(by[case, "match", "whole"]["psnr"]) > float(by[case, "match", "gap"]["psnr"])
        # The reference-guided match beats the reference-free interpolation on these textured scenes.
        assert float(by[case, "match", "gap"]["psnr"]) > float(by[case, "fillnodata", "gap"]["psnr"])
    summary = json.loads((out / "metrics.json").read_text())
    assert {"rows", "summary", "overall", "config"} <= set(summary)
    im = Image.open(out / f"{cases[0]}.png")
    assert im.text["panels"] == str(3 + 2 * 3)
    assert im.size[0] > (3 + 3) * PANEL and im.size[1] > 2 * PANEL
    assert Image.open(out / "metrics.png").size[0] > 0


def test_paper_protocol_with_a_real_reference(make_raster, make_reference, tmp_path):
    truth = make_raster("big.tif", height=288, width=288, bands=3, kind="none")
    real_ref = make_reference("bigref.tif", height=288, width=288, bands=3)
    out = tmp_path / "paper"
    run("evaluate", truth, "--ref", real_ref, "--ref-bidx", "2,3,4", "--paper-protocol", "--methods", "match",
        "--cases", "1", "-o", out, "-q")  # fmt: skip
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert {r["layout"] for r in rows} == {"right-half"}
    assert float(rows[0]["gap_share"]) == pytest.approx(0.5)
    assert float(rows[0]["factor"]) == pytest.approx(7.5, rel=0.05)  # 30 m reference over 4 m pixels
    assert "Paper protocol" in (out / "metrics.md").read_text()


def test_evaluate_scores_are_computed_not_copied(truth, tmp_path):
    cfg = EvalConfig(layouts=("quarter",), factors=(3.0,), methods=("match", "reference"), crop=128, cases=1)
    result = evaluate(str(truth), str(tmp_path / "e"), cfg=cfg)
    gap_rows = {r["method"]: r for r in result.rows if r["region"] == "gap"}
    # The simulated reference has a gain and offset: matching removes them, the raw reference keeps them.
    assert gap_rows["match"]["psnr"] > gap_rows["reference"]["psnr"] + 3
    assert gap_rows["match"]["gap_share"] == pytest.approx(0.25)


def test_evaluate_resampling_reaches_every_fill(truth, tmp_path):
    runs = {}
    for kernel in ("bilinear", "cubic"):
        cfg = EvalConfig(
            layouts=("quarter",), factors=(3.0,), methods=("reference",), crop=128, cases=1, resampling=kernel
        )
        runs[kernel] = evaluate(str(truth), str(tmp_path / kernel), cfg=cfg).rows
    psnr = {k: next(r["psnr"] for r in rows if r["region"] == "gap") for k, rows in runs.items()}
    assert psnr["bilinear"] != psnr["cubic"]  # the warped reference itself differs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs a reference"),
        ({"cfg": EvalConfig(layouts=("polygons",), factors=(2.0,))}, "needs --gaps"),
    ],
)
def test_evaluate_refuses_missing_inputs(truth, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        evaluate(str(truth), str(tmp_path / "x"), **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [({"layouts": ("diamond",)}, "gap layout"),
                                                 ({"methods": ("magic",)}, "method"),
                                                 ({"factors": (0.5,)}, "scale factors"),
                                                 ({"resampling": "sinc"}, "resampling must be")])  # fmt: skip
def test_eval_config_validates(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EvalConfig(**kwargs)


def test_evaluate_cli_error_is_one_line(truth, tmp_path):
    result = run("evaluate", truth, "-o", tmp_path / "x", code=1)
    assert "needs a reference" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- baselines through the fill CLI --------------------------------------------------------------------------


@pytest.fixture
def gapped(make_raster) -> Path:
    return make_raster(height=96, width=96, bands=4)


@pytest.fixture
def ref4(make_reference) -> Path:
    return make_reference(height=96, width=96, bands=4)


def test_reference_method_writes_the_warped_reference_in_the_gap(gapped, ref4, tmp_path):
    out = tmp_path / "filled_ref.tif"
    run(gapped, "--ref", ref4, "--ref-bidx", "2,3,4,5", "--method", "reference", "-o", out, "-q")
    src, res = read(gapped), read(out)
    codes = fill_codes(out)
    gap = src[0] == 0
    assert (codes[gap] == 1).all() and (codes[~gap] == 0).all()
    np.testing.assert_array_equal(res[:, ~gap], src[:, ~gap])
    # make_reference stores 0.8 * scene + 150: the raw reference is darker than the HR and not matched.
    scene_mean = src[:, ~gap].astype(float).mean()
    assert res[:, gap].astype(float).mean() < scene_mean * 0.95
    with rasterio.open(out) as o:
        assert o.tags()["EGAN_METHOD"] == "reference"


def test_fillnodata_method_fills_from_the_edges_without_a_reference(gapped, ref4, tmp_path):
    out = tmp_path / "idw.tif"
    run(gapped, "--ref", ref4, "--ref-bidx", "2,3,4,5", "--method", "fillnodata", "-o", out, "-q")
    src, res = read(gapped), read(out)
    gap = src[0] == 0
    assert (fill_codes(out)[gap] == 1).all()
    np.testing.assert_array_equal(res[:, ~gap], src[:, ~gap])
    # Interpolated values stay inside the range of the known pixels.
    known = src[:, ~gap]
    assert res[:, gap].min() >= known.min() and res[:, gap].max() <= known.max()
    with rasterio.open(out) as o:
        assert o.tags()["EGAN_METHOD"] == "fillnodata"


def test_a_failing_evaluation_adds_nothing_to_the_output_folder(truth, tmp_path, monkeypatch):
    from extendgan_geo import figures

    out = tmp_path / "failing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def boom(*args, **kwargs):
        raise RuntimeError("chart failed")

    monkeypatch.setattr(figures, "metrics_chart", boom)
    cfg = EvalConfig(layouts=("quarter",), factors=(3.0,), methods=("match",), crop=128, cases=1)
    with pytest.raises(RuntimeError, match="chart failed"):
        evaluate(str(truth), str(out), cfg=cfg)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
