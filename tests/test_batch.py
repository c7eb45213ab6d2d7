"""Batch fills on an in-process Dask cluster: manifests, same results as one by one, failures, resuming, CLI."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner, Result
from rio_cogeo.cogeo import cog_validate

from extendgan_geo.batch import (
    SIGNATURE_TAG,
    ClusterOptions,
    Job,
    build_configs,
    job_signature,
    jobs_from_glob,
    make_job,
    normalize_options,
    read_manifest,
    run_batch,
)
from extendgan_geo.cli.batch import batch
from extendgan_geo.config import FillConfig, OutputConfig, TileConfig
from extendgan_geo.errors import ConfigError
from extendgan_geo.pipeline import FILL_MASK_SUFFIX, fill_raster

from .conftest import HR_CRS, HR_ORIGIN, HR_RES, hole

SIZE = 64
CFG = FillConfig(ref_indexes=(2, 3, 4, 5), method="match", tiles=TileConfig(size=32, overlap=8))
OPTIONS = "method: match\n  ref_bidx: [2, 3, 4, 5]\n  tile: 32\n  overlap: 8"
CSV_HEAD = "hr,ref,mask,out,method,ref_bidx,tile,overlap"
CSV_OPTS = "match,2 3 4 5,32,8"


@pytest.fixture
def inputs(make_raster: Callable[..., Path], make_reference: Callable[..., Path], tmp_path: Path) -> dict[str, Path]:
    """Three HR scenes (different seeds), one reference each, a corrupt '.tif' and an output folder."""
    paths: dict[str, Path] = {}
    for i in range(3):
        paths[f"hr{i}"] = make_raster(f"hr{i}.tif", height=SIZE, width=SIZE, seed=i)
        paths[f"ref{i}"] = make_reference(f"ref{i}.tif", height=SIZE, width=SIZE, seed=i)
    paths["bad"] = tmp_path / "corrupt.tif"
    paths["bad"].write_text("not a raster\n")
    paths["out"] = tmp_path / "out"
    paths["out"].mkdir()
    return paths


def write_csv(tmp_path: Path, rows: list[str], head: str = CSV_HEAD, name: str = "jobs.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([head, *rows]) + "\n")
    return path


def three_jobs_csv(tmp_path: Path) -> Path:
    """hr0 and hr2 are good, the middle job reads the corrupt file; paths relative to the manifest."""
    return write_csv(
        tmp_path,
        [
            f"hr0.tif,ref0.tif,,out/a.tif,{CSV_OPTS}",
            f"corrupt.tif,ref1.tif,,out/b.tif,{CSV_OPTS}",
            f"hr2.tif,ref2.tif,,out/c.tif,{CSV_OPTS}",
        ],
    )


def read(path: Path | str) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def tags(path: Path | str) -> dict[str, str]:
    with rasterio.open(path) as src:
        return dict(src.tags())


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


def run_cli(*args: Any, code: int = 0) -> Result:
    result = runner().invoke(batch, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


# --- the batch on Dask --------------------------------------------------------------------------------------


def test_batch_equals_one_by_one_and_a_corrupt_input_fails_only_its_job(inputs, tmp_path, client):
    jobs = read_manifest(three_jobs_csv(tmp_path))
    seen = []
    report = run_batch(jobs, client, progress=seen.append)
    assert [r.status for r in report.results] == ["done", "failed", "done"]
    assert sorted(r.name for r in seen) == ["a.tif", "b.tif", "c.tif"]
    assert report.results[1].error.startswith("InputError: HR raster")
    assert "corrupt.tif" in report.results[1].error
    assert report.counts() == {"done": 2, "skipped": 0, "failed": 1} and not report.ok
    assert not (inputs["out"] / "b.tif").exists()
    assert sorted(os.listdir(inputs["out"])) == [
        "a.tif",
        "a.tif" + FILL_MASK_SUFFIX,
        "c.tif",
        "c.tif" + FILL_MASK_SUFFIX,
    ]
    gap = hole(SIZE, SIZE)
    for i, name in ((0, "a.tif"), (2, "c.tif")):
        alone = tmp_path / f"alone{i}.tif"
        result = fill_raster(inputs[f"hr{i}"], inputs[f"ref{i}"], alone, CFG)
        out = inputs["out"] / name
        assert np.array_equal(read(out), read(alone))
        assert np.array_equal(read(str(out) + FILL_MASK_SUFFIX), read(str(alone) + FILL_MASK_SUFFIX))
        assert (read(out)[:, gap] != 0).all()
        assert cog_validate(str(out))[0]
        t = tags(out)
        assert t[SIGNATURE_TAG] == job_signature(jobs[i]) == report.results[i].signature
        assert t["EGAN_FILL_MASK"] == name + FILL_MASK_SUFFIX
        assert tags(str(out) + FILL_MASK_SUFFIX)["EGAN_OUTPUT"] == name
        assert report.results[i].filled_pixels == result.filled_pixels == gap.sum()
    table = report.table()
    assert "done" in table and "failed: b.tif" in table and "InputError" in table
    data = report.to_dict()
    assert data["counts"]["failed"] == 1 and data["jobs"][1]["status"] == "failed"


def test_rerun_skips_finished_jobs_and_a_changed_option_does_not(inputs, tmp_path, client):
    manifest = three_jobs_csv(tmp_path)
    first = run_batch(read_manifest(manifest), client)
    assert [r.status for r in first.results] == ["done", "failed", "done"]
    out = inputs["out"] / "a.tif"
    stamp = out.stat().st_mtime_ns

    again = run_batch(read_manifest(manifest), client)
    assert [r.status for r in again.results] == ["skipped", "failed", "skipped"]
    assert out.stat().st_mtime_ns == stamp
    assert again.results[0].filled_pixels == first.results[0].filled_pixels  # read back from the tags
    # the total counts what this run filled (nothing), as the JSON report does; the skipped row, what is on disk
    assert again.to_dict()["filled_pixels"] == 0 == again.filled_pixels() < first.filled_pixels()
    total = next(line for line in again.table().splitlines() if line.startswith("total"))
    assert total.split()[:3] == ["total", "3", "0"] and "by this run" in total

    changed = run_batch(read_manifest(manifest, {"mask_buffer": 1}), client)
    assert [r.status for r in changed.results] == ["failed"] * 3
    assert "OutputExistsError" in changed.results[0].error and "--overwrite" in changed.results[0].error

    redone = run_batch(read_manifest(manifest, {"mask_buffer": 1, "overwrite": True}), client)
    assert [r.status for r in redone.results] == ["done", "failed", "done"]
    assert redone.results[0].filled_pixels > first.results[0].filled_pixels
    assert tags(out)["EGAN_MASK_BUFFER_PX"] == "1"

    os.remove(str(out) + FILL_MASK_SUFFIX)  # an unfinished output (no sidecar) is recomputed, not skipped
    os.utime(inputs["hr2"])  # a touched input is not the same input
    last = run_batch(read_manifest(manifest, {"mask_buffer": 1}), client)
    assert [r.status for r in last.results] == ["done", "failed", "failed"]
    assert (inputs["out"] / ("a.tif" + FILL_MASK_SUFFIX)).exists()
    assert not [p for p in os.listdir(inputs["out"]) if "partial" in p]


def test_hr_glob_with_one_reference_and_one_gap_layer(make_raster, make_reference, tmp_path, client):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for i in range(2):
        make_raster(f"scenes/s{i}.tif", height=SIZE, width=SIZE, kind="none", seed=i)
    ref = make_reference(height=SIZE, width=SIZE)
    gpkg = tmp_path / "gaps.gpkg"
    x0, y0 = HR_ORIGIN
    square = shapely.box(x0 + 8 * HR_RES, y0 - 40 * HR_RES, x0 + 40 * HR_RES, y0 - 8 * HR_RES)
    gpd.GeoDataFrame(geometry=[square], crs=HR_CRS).to_file(gpkg, layer="gaps")
    out = tmp_path / "filled"
    out.mkdir()
    jobs = jobs_from_glob(str(scenes / "*.tif"), str(ref), str(out), mask=str(gpkg), defaults={"method": "match"})
    assert [j.name for j in jobs] == ["s0.tif", "s1.tif"]
    assert jobs[0].cfg.method == "match" and jobs[0].mask == str(gpkg)
    jobs = [Job(j.name, j.hr, j.ref, j.out, j.mask, CFG, j.out_cfg, j.where) for j in jobs]
    report = run_batch(jobs, client)
    assert report.ok, report.table()
    for i in range(2):
        codes = read(out / f"s{i}.tif{FILL_MASK_SUFFIX}")[0]
        assert (codes[8:40, 8:40] == 1).all() and codes.sum() == 32 * 32
    with pytest.raises(ConfigError, match="matches no HR file"):
        jobs_from_glob(str(scenes / "*.jp2"), str(ref), str(out))


# --- manifests ----------------------------------------------------------------------------------------------


def test_yaml_manifest_with_defaults_and_per_row_options(tmp_path):
    manifest = tmp_path / "sub" / "jobs.yaml"
    manifest.parent.mkdir()
    manifest.write_text(
        f"defaults:\n  {OPTIONS}\n  co: {{compress: deflate}}\n"
        "jobs:\n"
        "  - {hr: a.tif, ref: /data/ref.vrt, out: out/a.tif}\n"
        "  - hr: b.tif\n    ref: ../ref.tif\n    mask: gaps.gpkg\n    out: out/b.tif\n    name: second\n"
        "    tile: 64\n    nodata: nan\n    cog: false\n    bidx: 3\n    fill-mask: no\n"
    )
    a, b = read_manifest(manifest, {"mask_buffer": 2, "method": "reference"})
    base = str(manifest.parent)
    assert (a.hr, a.ref, a.out, a.mask) == (f"{base}/a.tif", "/data/ref.vrt", f"{base}/out/a.tif", None)
    assert (a.name, a.where) == ("a.tif", "jobs.yaml job 1")
    assert a.cfg.method == "match" and a.cfg.mask_buffer == 2 and a.cfg.ref_indexes == (2, 3, 4, 5)
    assert a.cfg.tiles == TileConfig(size=32, overlap=8) and a.out_cfg.creation_options == {"compress": "deflate"}
    assert b.name == "second" and b.ref == str(tmp_path / "ref.tif") and b.mask == f"{base}/gaps.gpkg"
    assert b.cfg.tiles.size == 64 and b.cfg.tiles.overlap == 8 and np.isnan(b.cfg.nodata)
    assert b.cfg.indexes == (3,) and not b.out_cfg.cog and not b.out_cfg.write_fill_mask


def test_csv_manifest_and_tile_without_overlap(tmp_path):
    manifest = write_csv(tmp_path, ["a.tif,r.tif,m.gpkg,a_out.tif,,,512,", "b.tif,r.tif,,b_out.tif,gan,,,"])
    a, b = read_manifest(manifest)
    assert a.cfg.tiles.size == 512 and a.cfg.tiles.overlap == 128  # tile / 4, as on the command line
    assert a.mask == str(tmp_path / "m.gpkg") and b.mask is None and b.cfg.method == "gan"
    assert a.where == "jobs.csv row 1" and b.where == "jobs.csv row 2"


@pytest.mark.parametrize(
    ("head", "row", "message"),
    [
        ("hr,ref,out,metod", "a.tif,r.tif,o.tif,match", "jobs.csv row 1: unknown column 'metod'"),
        ("hr,ref,out,method", "a.tif,r.tif,o.tif,magic", "jobs.csv row 1: method must be one of"),
        ("hr,ref,out,tile", "a.tif,r.tif,o.tif,big", "jobs.csv row 1, column 'tile': 'big' is not valid"),
        ("hr,ref,out,ref_bidx", "a.tif,r.tif,o.tif,0", "column 'ref_bidx'"),
        ("hr,ref,out,cog", "a.tif,r.tif,o.tif,maybe", "column 'cog'"),
        ("hr,ref,mask", "a.tif,r.tif,m.gpkg", "column 'out' is missing or empty"),
        ("hr,ref,out", "a.tif,r.tif,o.tif,extra", "row 1 has more fields than the header"),
        ("hr,ref,out", "a.tif,r.tif,a.tif", "is one of its inputs"),
    ],
)
def test_manifest_errors_name_the_row_and_column(tmp_path, head, row, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        read_manifest(write_csv(tmp_path, [row], head=head))
    assert "\n" not in str(info.value)


def test_manifest_refuses_two_jobs_with_one_output_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match=r"also the output of jobs\.csv row 1"):
        read_manifest(write_csv(tmp_path, ["a.tif,r.tif,,o.tif", "b.tif,r.tif,,o.tif"], head="hr,ref,mask,out"))
    (tmp_path / "jobs.txt").write_text("hr,ref,out\n")
    with pytest.raises(ConfigError, match=r"expected \.csv, \.yaml or \.yml"):
        read_manifest(tmp_path / "jobs.txt")
    (tmp_path / "bad.yaml").write_text("jobs: {hr: a.tif}\n")
    with pytest.raises(ConfigError, match="no job list"):
        read_manifest(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        read_manifest(tmp_path / "missing.csv")


def test_signature_follows_inputs_and_settings_not_execution_details(inputs, tmp_path):
    row = {"hr": str(inputs["hr0"]), "ref": str(inputs["ref0"]), "out": str(tmp_path / "o.tif")}
    job = make_job(row, "test")
    sig = job_signature(job)
    execution = {"device": "cpu", "batch_size": 2, "overwrite": True, "compile": True}
    assert sig == job_signature(make_job(row, "test", defaults=execution))
    assert sig == job_signature(make_job({**row, "tile": "256", "overlap": "64"}, "test"))
    assert sig != job_signature(make_job(row, "test", defaults={"method": "match"}))
    assert sig != job_signature(make_job({**row, "mask": str(inputs["ref1"])}, "test"))
    os.utime(inputs["hr0"], ns=(1, 1))
    assert sig != job_signature(job)
    vrt = tmp_path / "mosaic.vrt"  # only its SourceFilename elements matter here
    vrt.write_text(
        '<VRTDataset><VRTRasterBand band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{inputs["ref1"].name}</SourceFilename>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    on_vrt = make_job({**row, "ref": str(vrt)}, "test")
    before = job_signature(on_vrt)
    os.utime(inputs["ref1"], ns=(2, 2))
    assert job_signature(on_vrt) != before  # a source of the reference VRT changed
    cfg, out_cfg = build_configs(normalize_options({"cog": "false", "co": "COMPRESS=LZW;NUM_THREADS=2"}, "x"))
    assert (
        not out_cfg.cog and out_cfg.creation_options == {"compress": "LZW", "num_threads": "2"} and cfg == FillConfig()
    )


def test_cluster_options_are_checked():
    with pytest.raises(ConfigError, match="workers"):
        ClusterOptions(workers=0)
    assert OutputConfig() == build_configs({})[1]


# --- CLI ----------------------------------------------------------------------------------------------------


def test_cli_batch_exit_codes_summary_and_report(inputs, tmp_path):
    manifest = three_jobs_csv(tmp_path)
    threads = ("--threads", "--workers", "2", "-q")
    result = run_cli(manifest, *threads, code=1)
    assert "failed: b.tif (jobs.csv row 2): InputError" in result.stderr
    report = json.loads((tmp_path / "jobs.report.json").read_text())
    assert report["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    assert report["cluster"]["workers"] == 2 and report["cluster"]["local"]
    assert [j["status"] for j in report["jobs"]] == ["done", "failed", "done"]

    # the corrupt row removed: everything left is up to date, exit 0, and the table says so
    manifest.write_text("\n".join(line for line in manifest.read_text().splitlines() if "corrupt" not in line))
    result = run_cli(manifest, "--threads", "--report", tmp_path / "r.json")
    assert "skipped       2" in result.stdout and "failed        0" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["skipped"] == 2


def test_cli_batch_usage_errors(inputs, tmp_path):
    manifest = three_jobs_csv(tmp_path)
    assert "either MANIFEST or --hr-glob" in run_cli(manifest, "--hr-glob", "*.tif", code=2).stderr
    assert "--ref is for --hr-glob" in run_cli(manifest, "--ref", inputs["ref0"], code=2).stderr
    assert "needs --ref" in run_cli("--hr-glob", "*.tif", code=2).stderr
    assert "give a MANIFEST" in run_cli(code=2).stderr
    assert "not a size" in run_cli(manifest, "--memory-limit", "lots", code=2).stderr
    bad = write_csv(tmp_path, ["a.tif,r.tif,o.tif,x"], head="hr,ref,out,colour", name="bad.csv")
    result = run_cli(bad, code=1)
    assert "bad.csv row 1: unknown column 'colour'" in result.stderr and "Traceback" not in result.stderr


def test_cli_batch_hr_glob_and_command_line_options(make_raster, make_reference, tmp_path):
    make_raster("g0.tif", height=SIZE, width=SIZE)
    ref = make_reference(height=SIZE, width=SIZE)
    out = tmp_path / "filled"
    out.mkdir()
    args = ("--hr-glob", tmp_path / "g*.tif", "--ref", ref, "-o", out, "--threads", "--workers", "1")
    opts = ("--method", "match", "--ref-bidx", "2,3,4,5", "--tile", "32", "--no-cog")
    result = run_cli(*args, *opts)
    assert "done          1" in result.stdout
    assert tags(out / "g0.tif")["EGAN_TILE"] == "32"
    assert json.loads((out / "batch-report.json").read_text())["counts"]["done"] == 1


def test_existing_scheduler_is_used_and_an_unreachable_one_is_one_line(inputs, tmp_path, client, monkeypatch):
    jobs = read_manifest(three_jobs_csv(tmp_path))[:1]
    address = client.scheduler_info()["address"]
    report = run_batch(jobs, ClusterOptions(scheduler=address))
    assert report.ok and not report.cluster.local and report.cluster.scheduler == address
    assert report.results[0].worker in client.scheduler_info()["workers"]
    monkeypatch.setattr("extendgan_geo.batch._CONNECT_TIMEOUT", "0.5s")
    with pytest.raises(ConfigError, match=r"cannot reach the Dask scheduler 'tcp://127\.0\.0\.1:9'"):
        run_batch(jobs, ClusterOptions(scheduler="tcp://127.0.0.1:9"))


# --- review fixes ---------------------------------------------------------------------------------------------


def test_model_from_the_command_line_is_relative_to_the_current_folder(tmp_path, monkeypatch):
    """Regression (review B1): a relative --model was resolved against the manifest's folder."""
    manifest = tmp_path / "sub" / "jobs.yaml"
    manifest.parent.mkdir()
    rows = ["{hr: a.tif, ref: r.tif, out: a_out.tif}", "{hr: b.tif, ref: r.tif, out: b_out.tif, model: row.pt}"]
    manifest.write_text("jobs:\n" + "".join(f"  - {row}\n" for row in rows))
    monkeypatch.chdir(tmp_path)
    a, b = read_manifest(manifest, {"model": "models/cli.pt"})
    assert a.cfg.model == str(tmp_path / "models" / "cli.pt")  # the command line's: the current folder
    assert b.cfg.model == str(tmp_path / "sub" / "row.pt")  # the manifest's own: its folder
    manifest.write_text("defaults:\n  model: d.pt\njobs:\n  - {hr: a.tif, ref: r.tif, out: a_out.tif}\n")
    (c,) = read_manifest(manifest, {"model": "models/cli.pt"})
    assert c.cfg.model == str(tmp_path / "sub" / "d.pt")  # the manifest's defaults: its folder


def test_glob_jobs_have_absolute_paths(make_raster, tmp_path, monkeypatch):
    """Regression (review B7): relative paths broke on workers in another folder (--scheduler)."""
    make_raster("g0.tif", height=SIZE, width=SIZE)
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    (job,) = jobs_from_glob("g*.tif", "ref.tif", "out", mask="gaps.gpkg")
    assert (job.hr, job.ref, job.mask, job.out) == tuple(
        str(tmp_path / p) for p in ("g0.tif", "ref.tif", "gaps.gpkg", "out/g0.tif")
    )


def test_glob_run_resumes_when_the_pattern_also_matches_its_outputs(make_raster, make_reference, tmp_path, client):
    """Regression (review B2): `--hr-glob 'scenes/**/*.tif' -o scenes/filled` matched its own outputs on a rerun and
    stopped with "output ... is one of its inputs"."""
    scenes = tmp_path / "scenes"
    (scenes / "filled").mkdir(parents=True)
    (scenes / "sub").mkdir()
    make_raster("scenes/s0.tif", height=SIZE, width=SIZE)
    make_raster("scenes/sub/s1.tif", height=SIZE, width=SIZE, seed=1)
    ref = make_reference(height=SIZE, width=SIZE)
    pattern, out = str(scenes / "**" / "*.tif"), str(scenes / "filled")

    def jobs() -> list[Job]:
        found = jobs_from_glob(pattern, str(ref), out)
        return [Job(j.name, j.hr, j.ref, j.out, j.mask, CFG, j.out_cfg, j.where) for j in found]

    first = run_batch(jobs(), client)
    assert [r.status for r in first.results] == ["done", "done"]
    assert sorted(os.listdir(scenes / "filled")) == [
        "s0.tif",
        "s0.tif" + FILL_MASK_SUFFIX,
        "s1.tif",
        "s1.tif" + FILL_MASK_SUFFIX,
    ]
    again = jobs()
    assert [j.name for j in again] == ["s0.tif", "s1.tif"]  # not the outputs nor their sidecars
    assert [r.status for r in run_batch(again, client).results] == ["skipped", "skipped"]
    with pytest.raises(ConfigError, match=r"matches no HR file \(4 left out"):
        jobs_from_glob(str(scenes / "filled" / "*.tif"), str(ref), out)


def test_a_stale_fill_mask_is_never_paired_with_a_new_output(inputs, tmp_path, client, monkeypatch):
    """Regression (review B6): a run stopped between moving the output and its sidecar left the old sidecar next
    to an output with the new signature, and the next run skipped the job."""
    manifest = three_jobs_csv(tmp_path)
    assert run_batch(read_manifest(manifest), client).results[0].status == "done"
    out = inputs["out"] / "a.tif"
    sidecar = str(out) + FILL_MASK_SUFFIX
    replace = os.replace

    def dies_before_the_sidecar(src: str, dst: str) -> None:
        if str(dst) == sidecar:  # after the output was moved into place
            raise OSError("killed")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_before_the_sidecar)
    stopped = run_batch(read_manifest(manifest, {"mask_buffer": 1, "overwrite": True}), client)
    monkeypatch.setattr(os, "replace", replace)
    assert stopped.results[0].status == "failed" and "killed" in stopped.results[0].error
    assert tags(out)["EGAN_MASK_BUFFER_PX"] == "1" and not os.path.exists(sidecar)  # the old sidecar is gone
    resumed = run_batch(read_manifest(manifest, {"mask_buffer": 1}), client)
    assert resumed.results[0].status == "done"  # recomputed, not skipped
    assert tags(sidecar)[SIGNATURE_TAG] == tags(out)[SIGNATURE_TAG] == resumed.results[0].signature
    assert run_batch(read_manifest(manifest, {"mask_buffer": 1}), client).results[0].status == "skipped"
    with rasterio.open(sidecar, "r+") as dst:  # a sidecar of another signature is not this output's
        dst.update_tags(**{SIGNATURE_TAG: "0" * 64})
    assert run_batch(read_manifest(manifest, {"mask_buffer": 1}), client).results[0].status == "done"


def test_memory_limit_zero_means_no_limit():
    """Regression (review B5): --memory-limit 0 started workers with Dask's automatic limit."""
    from extendgan_geo.batch import _memory_limit
    from extendgan_geo.cli.batch import _cluster

    opts = {"workers": 1, "threads_per_worker": 1, "scheduler": None, "processes": False}
    assert _cluster({**opts, "memory_limit": "0"}).memory_limit == 0
    assert _cluster({**opts, "memory_limit": "auto"}).memory_limit == "auto"
    assert [_memory_limit(v) for v in (0, "0", "none", None, "", "auto", "4GiB")] == [
        0,
        0,
        0,
        "auto",
        "auto",
        "auto",
        "4GiB",
    ]
    from extendgan_geo.batch import dask_client

    with dask_client(ClusterOptions(workers=1, memory_limit=0, processes=False)) as (c, _):
        assert [w["memory_limit"] for w in c.scheduler_info()["workers"].values()] in ([0], [None])


def test_manifest_heal_column_reaches_the_fill_config():
    from extendgan_geo.batch import build_configs, normalize_options

    assert build_configs(normalize_options({"heal": "no"}, "row 1"))[0].heal is False
    assert build_configs(normalize_options({"heal": "yes"}, "row 1"))[0].heal is True
    assert build_configs(normalize_options({}, "row 1"))[0].heal is True


def test_manifest_compile_column_reaches_the_fill_config():
    from extendgan_geo.batch import build_configs, normalize_options

    assert build_configs(normalize_options({"compile": "yes"}, "row 1"))[0].compile is True
    assert build_configs(normalize_options({}, "row 1"))[0].compile is False
