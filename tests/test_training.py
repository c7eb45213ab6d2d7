"""`egan-fill train`: data split, learning, checkpoints, resume, DDP path, and --method gan end to end."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import rasterio
import torch

from extendgan_geo.config import FillConfig
from extendgan_geo.errors import CheckpointError
from extendgan_geo.pipeline import fill_raster
from extendgan_geo.training.config import build_config
from extendgan_geo.training.data import RasterSamples, SourceSpec
from extendgan_geo.training.loop import SAMPLE_KEYS, Trainer, _batch, train


@pytest.fixture
def train_raster(make_raster):
    return str(make_raster("train.tif", height=256, width=320, kind="none", gap=np.zeros((256, 320), bool), bands=3))


def tiny(tmp_path, raster, **kw):
    values = dict(
        hr=(raster,),
        out=str(tmp_path / "run"),
        width=4,
        disc_width=8,
        crop=64,
        block=64,
        batch_size=2,
        samples_per_epoch=4,
        epochs=2,
        val_samples=4,
        seed=3,
        device="cpu",
    )
    values.update(kw)
    return build_config("small", None, values)


def test_split_blocks_never_overlap(train_raster):
    data = RasterSamples([SourceSpec(train_raster)], crop=64, block=64, val_fraction=0.3, seed=1)
    blocks = data.sources[0].blocks
    assert blocks["train"] and blocks["val"]
    assert not set(blocks["train"]) & set(blocks["val"])
    s = data.sample("train", 0, 0)
    assert s["hr"].shape == s["ref"].shape == (3, 64, 64) and s["gap"].shape == (1, 64, 64)
    np.testing.assert_array_equal(s["hr"], data.sample("train", 0, 0)["hr"])  # deterministic
    assert not np.array_equal(s["hr"], data.sample("train", 1, 0)["hr"])
    data.close()


def test_few_steps_lower_the_loss(train_raster, tmp_path):
    cfg = tiny(tmp_path, train_raster, lr_g=2e-3, lr_d=1e-3, lambda_adv=0.0)
    data = RasterSamples([SourceSpec(train_raster)], crop=64, block=64, seed=3)
    trainer = Trainer(cfg, data, torch.device("cpu"), 1)
    batch = _batch(data, "train", 0, [0, 1, 2, 3], torch.device("cpu"))
    first = trainer.step(batch)["loss_rec"]
    for _ in range(15):
        last = trainer.step(batch)["loss_rec"]
    assert last < 0.7 * first
    data.close()


def test_validation_samples_are_drawn_once(train_raster, tmp_path):
    cfg = tiny(tmp_path, train_raster)
    data = RasterSamples([SourceSpec(train_raster)], crop=64, block=64, val_fraction=0.3, seed=3)
    trainer = Trainer(cfg, data, torch.device("cpu"), 1)
    drawn = []
    sample = data.sample
    data.sample = lambda split, epoch, i: drawn.append(split) or sample(split, epoch, i)  # type: ignore[method-assign]
    first = trainer.validate()
    assert drawn.count("val") == cfg.val_samples
    assert trainer.validate() == first and drawn.count("val") == cfg.val_samples
    fresh = Trainer(cfg, data, torch.device("cpu"), 1).validate()
    assert fresh == pytest.approx(first)
    data.close()


def test_train_writes_checkpoints_log_and_resumes_identically(train_raster, tmp_path):
    straight = train(tiny(tmp_path / "a", train_raster, epochs=2))
    assert os.path.exists(straight.best) and os.path.exists(straight.last)
    with open(os.path.join(os.path.dirname(straight.last), "log.csv")) as f:
        assert len(f.read().strip().splitlines()) == 3
    half = train(tiny(tmp_path / "b", train_raster, epochs=1))
    resumed = train(tiny(tmp_path / "b", train_raster, epochs=2, resume=half.last))
    assert resumed.epochs == 1
    from extendgan_geo.model.checkpoint import read_checkpoint

    a, _ = read_checkpoint(straight.last)
    b, _ = read_checkpoint(resumed.last)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_single_process_distributed_path(train_raster, tmp_path, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29533")
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        result = train(tiny(tmp_path, train_raster, epochs=1))
    finally:
        dist.destroy_process_group()
    assert os.path.exists(result.best)


def test_fill_with_a_trained_checkpoint(train_raster, make_raster, make_reference, tmp_path):
    result = train(tiny(tmp_path, train_raster, epochs=1))
    hr = make_raster(bands=3)
    ref = make_reference(bands=3)
    out = tmp_path / "gan.tif"
    res = fill_raster(hr, ref, out, FillConfig(method="gan", model=result.best, ref_indexes=(2, 3, 4)))
    assert res.method == "gan" and res.filled_pixels == res.gap_pixels > 0
    with rasterio.open(out) as ds, rasterio.open(hr) as src:
        assert ds.tags()["EGAN_METHOD"] == "gan"
        assert len(ds.tags()["EGAN_MODEL_SHA256"]) == 64
        gap = (src.read() == 0).any(axis=0)
        assert np.array_equal(ds.read()[:, ~gap], src.read()[:, ~gap])


def test_gan_refuses_another_band_layout(train_raster, make_raster, make_reference, tmp_path):
    from extendgan_geo.errors import BandMismatchError

    result = train(tiny(tmp_path, train_raster, epochs=1))
    with pytest.raises(BandMismatchError, match="trained for 3 bands"):
        fill_raster(
            make_raster(bands=4),
            make_reference(bands=4),
            tmp_path / "x.tif",
            FillConfig(method="gan", model=result.best, ref_indexes=(2, 3, 4, 5)),
        )
    assert not (tmp_path / "x.tif").exists()


def test_init_starts_from_a_checkpoint_and_skips_the_discriminator(train_raster, tmp_path):
    from extendgan_geo.model.checkpoint import read_checkpoint

    first = train(tiny(tmp_path / "a", train_raster, epochs=1))
    cfg = tiny(tmp_path / "b", train_raster, epochs=1, init=first.best, lambda_adv=0.0, triplet=False)
    data = RasterSamples([SourceSpec(train_raster)], crop=64, block=64, seed=3)
    trainer = Trainer(cfg, data, torch.device("cpu"), 1)
    trainer.init_from(first.best)
    start, _ = read_checkpoint(first.best)
    for k, v in trainer.g.state_dict().items():
        assert torch.equal(v, start[f"generator.{k}"]), k
    d_before = {k: v.clone() for k, v in trainer.d.state_dict().items()}
    losses = trainer.step(_batch(data, "train", 0, [0, 1], torch.device("cpu")))
    assert losses["loss_d"] == 0.0 and losses["loss_adv"] == 0.0 and losses["loss_rec"] > 0
    for k, v in trainer.d.state_dict().items():  # the discriminator was not trained
        assert torch.equal(v, d_before[k]), k
    assert any(not torch.equal(v, start[f"generator.{k}"]) for k, v in trainer.g.state_dict().items())
    data.close()
    tuned = train(cfg)
    _, meta = read_checkpoint(tuned.last)
    assert meta["config"]["init"] == first.best and meta["epoch"] == 1


def test_init_refuses_another_architecture_and_yields_to_resume(train_raster, tmp_path):
    from extendgan_geo.errors import CheckpointError, ConfigError

    first = train(tiny(tmp_path / "a", train_raster, epochs=1))
    with pytest.raises(CheckpointError, match="differs from this run"):
        train(tiny(tmp_path / "b", train_raster, width=6, init=first.best))
    # With resume, init is ignored: the run's own state comes back.
    resumed = train(tiny(tmp_path / "a", train_raster, epochs=2, init=first.best, resume=first.last))
    assert resumed.epochs == 1
    with pytest.raises(ConfigError, match="loss weights"):
        tiny(tmp_path / "d", train_raster, lambda_adv=-1.0)


def test_unknown_mask_kinds_are_refused(train_raster, tmp_path):
    from extendgan_geo.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown or no kinds"):
        tiny(tmp_path, train_raster, mask_kinds=("half", "clouds"))  # a typo used to draw clouds silently
    with pytest.raises(ConfigError, match="unknown or no kinds"):
        tiny(tmp_path, train_raster, mask_kinds=())
    assert tiny(tmp_path, train_raster, mask_kinds=("seam", "file")).mask_kinds == ("seam", "file")


def test_max_minutes_stops_after_an_epoch_and_the_run_resumes(train_raster, tmp_path):
    chunk = train(tiny(tmp_path, train_raster, epochs=3, max_minutes=1e-6))
    assert chunk.epochs == 1  # the first epoch always runs; the budget is spent after it
    from extendgan_geo.model.checkpoint import read_metadata

    assert read_metadata(chunk.last)["epoch"] == 1
    rest = train(tiny(tmp_path, train_raster, epochs=3, resume=chunk.last))
    assert rest.epochs == 2 and read_metadata(rest.last)["epoch"] == 3
    with pytest.raises(Exception, match="max_minutes"):
        tiny(tmp_path, train_raster, max_minutes=-1.0)


def test_data_workers_draw_the_same_samples(train_raster, make_raster, make_reference, tmp_path):
    """Loader processes started once per run give bit-identical weights to drawing in-process, over several
    epochs and across a stop and resume (HR-only and real-pair sources)."""
    from extendgan_geo.model.checkpoint import read_checkpoint

    hr, ref = make_raster("pair.tif", bands=3), make_reference(bands=3)
    kw = {"epochs": 3, "samples_per_epoch": 6, "pairs": ((str(hr), str(ref)),), "ref_bidx": (2, 3, 4)}
    a = train(tiny(tmp_path / "a", train_raster, **kw))
    b = train(tiny(tmp_path / "b", train_raster, workers=2, **kw))
    chunk = train(tiny(tmp_path / "c", train_raster, workers=2, max_minutes=1e-6, **kw))
    assert chunk.epochs == 1
    c = train(tiny(tmp_path / "c", train_raster, workers=2, resume=chunk.last, **kw))
    wa, _ = read_checkpoint(a.last)
    for run in (b, c):
        wb, _ = read_checkpoint(run.last)
        for k in wa:
            assert torch.equal(wa[k], wb[k]), k


@pytest.mark.parametrize(("first_epoch", "rank", "world"), [(0, 0, 1), (1, 0, 2), (1, 1, 2), (2, 1, 3)])
def test_loader_items_are_the_in_process_samples(first_epoch, rank, world):
    """Item i of the run-long loader dataset is the sample the in-process path draws at that step (any rank)."""
    from extendgan_geo.training.loop import _RunSamples

    class Recorder:
        def sample(self, split, epoch, index):
            return {"hr": (split, epoch, index), "ref": None, "gap": None, "factor": None}

    epochs, steps, batch = 4, 3, 2
    items = _RunSamples(Recorder(), first_epoch, epochs, steps, batch, rank, world)  # type: ignore[arg-type]
    expected = [
        ("train", epoch, (step * world + rank) * batch + k)
        for epoch in range(first_epoch, epochs)
        for step in range(steps)
        for k in range(batch)
    ]
    assert len(items) == len(expected)
    assert [items[i]["hr"] for i in range(len(items))] == expected


def test_log_records_the_wait_for_data_and_keeps_an_old_logs_columns(train_raster, tmp_path):
    import csv

    first = train(tiny(tmp_path, train_raster, epochs=1))
    log = os.path.join(os.path.dirname(first.last), "log.csv")
    with open(log) as f:
        rows = list(csv.DictReader(f))
    assert 0 <= float(rows[0]["data_wait_s"]) <= float(rows[0]["seconds"])
    # A log written before the column existed: the resumed run appends rows that fit its header.
    with open(log) as f:
        lines = f.read().splitlines()
    header = lines[0].split(",")
    cut = header.index("data_wait_s")
    with open(log, "w") as f:
        f.write("\n".join(",".join(line.split(",")[:cut]) for line in lines) + "\n")
    train(tiny(tmp_path, train_raster, epochs=2, resume=first.last))
    with open(log) as f:
        rows = list(csv.reader(f))
    assert len(rows) == 3 and all(len(r) == cut for r in rows)


def test_compile_trains_the_same_weights(train_raster, tmp_path, monkeypatch):
    """`compile = true` runs the training steps through torch.compile; the weights match plain torch."""
    from extendgan_geo.model.checkpoint import read_checkpoint
    from extendgan_geo.training import loop

    calls = []

    def backend(gm, example_inputs):  # what torch.compile hands a backend: run the traced graph as is
        calls.append(len(example_inputs))
        return gm.forward

    monkeypatch.setattr(loop, "COMPILE_BACKEND", backend)
    plain = train(tiny(tmp_path / "a", train_raster, lambda_adv=0.0))
    compiled = train(tiny(tmp_path / "b", train_raster, lambda_adv=0.0, compile=True))
    assert calls, "the generator did not go through torch.compile"
    wa, _ = read_checkpoint(plain.last)
    wb, _ = read_checkpoint(compiled.last)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6, msg=k)


def test_compile_flag_reaches_the_run(train_raster, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from extendgan_geo.cli.main import cli
    from extendgan_geo.training import loop

    monkeypatch.setattr(loop, "COMPILE_BACKEND", "eager")
    out = tmp_path / "run"
    args = ["train", "--hr", train_raster, "-o", str(out), "--epochs", "1", "--samples-per-epoch", "2", "-q"]
    args += ["--batch-size", "2", "--crop", "64", "--width", "4", "--device", "cpu", "--compile"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "compile = true" in (out / "config.toml").read_text()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's backward
def test_compile_with_inductor_trains_like_plain_torch(train_raster, tmp_path):
    """The real code generator (a compile of about a minute and a half on the 2-core VM): same losses."""
    from torch._dynamo.utils import counters

    kw = {"lambda_adv": 0.0, "triplet": False, "bandwise": 4, "width": 8}
    plain = train(tiny(tmp_path / "a", train_raster, **kw))
    counters.clear()
    compiled = train(tiny(tmp_path / "b", train_raster, compile=True, **kw))
    assert counters["stats"]["unique_graphs"] > 0, "nothing was compiled"
    for a, b in zip(plain.history, compiled.history, strict=True):
        assert a["loss_rec"] == pytest.approx(b["loss_rec"], rel=1e-4)


def test_mask_kinds_and_resampling_flags(train_raster, tmp_path):
    from click.testing import CliRunner

    from extendgan_geo.cli.main import cli

    out = tmp_path / "run"
    args = ["train", "--hr", train_raster, "-o", str(out), "--epochs", "1", "--samples-per-epoch", "2", "-q"]
    args += ["--batch-size", "2", "--crop", "64", "--width", "4", "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "--mask-kinds", "seam,full", "--resampling", "lanczos"])
    assert result.exit_code == 0, result.output
    written = (out / "config.toml").read_text()
    assert 'mask_kinds = ["seam", "full"]' in written and 'resampling = "lanczos"' in written
    bad = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "bad"), "--mask-kinds", "seam,clouds"])
    assert bad.exit_code != 0 and "unknown or no kinds" in bad.output
    assert not (tmp_path / "bad").exists()


def test_blind_crops_match_the_reference_on_their_outer_ring():
    """A crop without known pixels is not matched on its own truth: its inside keeps the reference's own error."""
    from extendgan_geo.training.data import _match

    rng = np.random.default_rng(0)
    hr = rng.uniform(100, 900, (2, 64, 64)).astype(np.float32)
    ref = 2 * hr + 10
    ref[:, 8:-8, 8:-8] += 40  # radiometry drifts inside the hole
    out = _match(hr, ref, np.ones((64, 64), bool))
    inside = (out - hr)[:, 8:-8, 8:-8]
    ring = (out - hr)[:, :4]
    np.testing.assert_allclose(ring, 0, atol=1e-3)
    np.testing.assert_allclose(inside, 20, atol=1e-3)  # (ref - 10) / 2 inside is hr + 20
    gap = np.zeros((64, 64), bool)
    gap[:4] = True  # mostly known: fitted on the known pixels, drifted ones included, as a fill does
    assert float(np.abs(_match(hr, ref, gap)[:, :4] - hr[:, :4]).mean()) > 1


def test_scale_input_run_starts_from_a_plain_checkpoint_and_fills_with_the_scale(train_raster, tmp_path):
    """--scale-input --init PLAIN starts from PLAIN's output; its checkpoint fills, reading TileBatch.scale."""
    from extendgan_geo.fillers.base import TileBatch
    from extendgan_geo.fillers.gan import load_gan_filler
    from extendgan_geo.model.checkpoint import load_generator, read_metadata
    from extendgan_geo.training.loop import Trainer

    plain = train(tiny(tmp_path / "a", train_raster, epochs=1, bandwise=3, residual=True)).best
    run = tiny(tmp_path / "b", train_raster, epochs=1, bandwise=3, residual=True, scale_input=True, init=plain)
    data = RasterSamples([SourceSpec(train_raster)], crop=64, block=64, seed=3, bandwise=3)
    trainer = Trainer(run, data, torch.device("cpu"), 1)
    trainer.init_from(plain)
    batch = {k: torch.from_numpy(np.stack([data.sample("train", 0, i)[k] for i in range(2)])) for k in SAMPLE_KEYS}
    generator, _ = load_generator(plain)
    with torch.no_grad():
        widened = trainer.g(batch["hr"], batch["ref"], batch["gap"], batch["factor"])
        torch.testing.assert_close(widened, generator(batch["hr"], batch["ref"], batch["gap"]))
    data.close()

    scaled = train(run).best
    assert read_metadata(scaled)["scale_range"] == [2.0, 10.0]
    assert read_metadata(scaled)["generator"]["scale_input"] is True
    assert read_metadata(plain)["generator"]["scale_input"] is False
    filler = load_gan_filler(scaled, device="cpu", bands=3)
    with torch.no_grad():
        filler.generator.enc1.feature.weight[:, -1].fill_(0.5)  # make the factor matter
    rng = np.random.default_rng(0)
    hr = rng.uniform(100, 900, (1, 3, 64, 64)).astype(np.float32)
    gap = np.zeros((1, 1, 64, 64), bool)
    gap[..., 16:48, 16:48] = True
    ref = (hr * 0.5 + 20).astype(np.float32)
    origin = np.zeros((1, 2), np.int64)
    filler.prepare(TileBatch(hr, ref, gap, origin))
    filler.coarse_to_fine = False  # one pass at each factor (coarse to fine: tests/test_coarse_to_fine.py)
    near, far, top, beyond = (filler(TileBatch(hr * ~gap, ref, gap, origin, s)) for s in (1.5, 9.0, 10.0, 30.0))
    assert np.isfinite(near).all() and not np.allclose(near, far)
    np.testing.assert_array_equal(top, beyond)  # kept inside the trained 2-10x

    last = os.path.join(os.path.dirname(scaled), "last.safetensors")
    with pytest.raises(CheckpointError, match="scale-input"):  # resumed without the flag: a clear error
        train(dataclasses.replace(run, scale_input=False, init=None, resume=last, epochs=2))


def test_a_real_pairs_samples_carry_its_scale_factor(make_raster, make_reference):
    data = RasterSamples([SourceSpec(str(make_raster(bands=3)), str(make_reference(bands=3)), ref_indexes=(2, 3, 4))],
                         crop=64, block=64, seed=0, min_valid=0.0)  # fmt: skip
    assert data.sample("train", 0, 0)["factor"] == pytest.approx(7.5, rel=0.05)  # 30 m in EPSG:4326 over 4 m
    data.close()


def test_the_recorded_scale_range_covers_real_pairs(make_raster, make_reference, tmp_path):
    """A model's scale range (which coarse to fine reads) is its simulated factors plus its pairs' ratios."""
    from extendgan_geo.training.loop import _scale_range

    hr = str(make_raster(bands=3))
    pair = SourceSpec(hr, str(make_reference(bands=3)), ref_indexes=(2, 3, 4))
    cfg = tiny(tmp_path, hr)  # simulated factors 2-10 by default
    for sources, expected in (([pair], (7.5, 7.5)), ([pair, SourceSpec(hr)], (2.0, 10.0))):
        data = RasterSamples(sources, crop=64, block=64, seed=0, min_valid=0.0)
        try:
            assert _scale_range(cfg, data) == pytest.approx(expected, rel=0.05)
        finally:
            data.close()
