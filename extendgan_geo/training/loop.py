"""The training loop: Adam on G and D, hinge GAN + SSIM triplet + L1 (eq. 12), validation, checkpoints, resume.

Runs on CPU, on CUDA with bf16 autocast, and on several GPUs or machines with torch's DistributedDataParallel
when launched by `torchrun` (each rank draws its own share of the deterministic sample sequence).
"""

from __future__ import annotations

import collections.abc
import csv
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from extendgan_geo import __version__, allocator
from extendgan_geo.degrade import DegradeConfig
from extendgan_geo.errors import CheckpointError, ConfigError
from extendgan_geo.model import losses
from extendgan_geo.model.checkpoint import module_state, read_checkpoint, save_checkpoint, state_tensors
from extendgan_geo.model.discriminator import Discriminator
from extendgan_geo.model.generator import Generator, GeneratorConfig, with_scale_input
from extendgan_geo.training.config import TrainConfig, to_toml
from extendgan_geo.training.data import RasterSamples, SourceSpec

logger = logging.getLogger(__name__)
# torch.compile backend of `compile = true` ("eager" skips code generation: the tests use it to check the plumbing).
COMPILE_BACKEND = "inductor"
# What a training batch holds: HR, matched reference, gap and the reference scale factor (for scale-input models).
SAMPLE_KEYS = ("hr", "ref", "gap", "factor")

LOG_FIELDS = [
    "epoch",
    "step",
    "lr_g",
    "lr_d",
    "loss_g",
    "loss_adv",
    "loss_rec",
    "loss_triplet",
    "loss_d",
    "val_mae",
    "val_psnr",
    "val_ssim",
    "match_mae",
    "match_psnr",
    "match_ssim",
    "seconds",
    "samples_per_s",
    "data_wait_s",
]


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        best: path of the best generator checkpoint (lowest validation MAE in the gap).
        last: path of the last full checkpoint (resumable).
        epochs: epochs run in this call.
        history: one dict per epoch, as in the CSV log.
    """

    best: str
    last: str
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but torch sees no CUDA GPU; expected --device cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    allocator.tune()  # CPU steps reuse freed feature maps instead of faulting them in again (extendgan_geo.allocator)
    return torch.device("cpu")


def _dist_init(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched by torchrun; (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _batch(
    data: RasterSamples, split: str, epoch: int, ids: list[int], device: torch.device
) -> dict[str, torch.Tensor]:
    samples = [data.sample(split, epoch, i) for i in ids]
    return {k: torch.from_numpy(np.stack([s[k] for s in samples])).to(device) for k in SAMPLE_KEYS}


class Trainer:
    """Models, optimisers and state of one run."""

    g_run: nn.Module
    d_run: nn.Module

    def __init__(self, cfg: TrainConfig, data: RasterSamples, device: torch.device, world: int) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        torch.manual_seed(cfg.seed)
        bands = 1 if cfg.bandwise else data.bands
        gcfg = GeneratorConfig(
            bands=bands,
            ref_bands=bands,
            width=cfg.width,
            larn=cfg.larn,
            larn_stats=cfg.larn_stats,  # type: ignore[arg-type]
            instance_norm=cfg.instance_norm,
            residual=cfg.residual,
            bandwise=bool(cfg.bandwise),
            scale_input=cfg.scale_input,
        )
        self.gcfg = gcfg
        self.g: nn.Module = Generator(gcfg).to(device)
        # A bandwise generator is judged band by band by a one-band discriminator.
        self.d: nn.Module = Discriminator(bands, bands, width=cfg.disc_width).to(device)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.g_run, self.d_run = self.g, self.d
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.g_run = DistributedDataParallel(self.g, device_ids=ids)
            self.d_run = DistributedDataParallel(self.d, device_ids=ids)
        if cfg.compile:
            # Fixed shapes (batch x crop), so one graph; validation's other batch sizes run the plain module.
            self.g_run = cast(nn.Module, torch.compile(self.g_run, backend=COMPILE_BACKEND, dynamic=False))
        self.epoch = 0
        self.best_mae = math.inf
        self.amp = cfg.amp and device.type == "cuda"
        # The validation samples do not change between epochs: drawn once, kept on the device.
        self._val_batches: list[dict[str, torch.Tensor]] | None = None

    def set_lr(self, epoch: int) -> tuple[float, float]:
        """Cosine decay to 1 % of the base rates over the run (or constant)."""
        f = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * epoch / self.cfg.epochs)) if self.cfg.cosine else 1.0
        for opt, base in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * f
        return self.cfg.lr_g * f, self.cfg.lr_d * f

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One generator update then one discriminator update (1:1, as in the authors' code).

        With lambda_adv = 0 the discriminator is neither run nor updated (a reconstruction-only stage, about
        twice as fast); with lambda_triplet = 0 or triplet off, the triplet loss is not computed.
        """
        cfg = self.cfg
        hr, ref, gap = batch["hr"], batch["ref"], batch["gap"]
        adversarial = cfg.lambda_adv > 0
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.g_run(hr, ref, gap, batch["factor"])
            comp = out * gap + hr * (1.0 - gap)
            if cfg.bandwise:
                hr, ref, gap, comp = _per_band(hr, ref, gap, comp)
            rec = losses.l1(out.float().reshape(hr.shape), hr, gap, known_weight=cfg.known_weight)
            adv = losses.g_hinge(self.d_run(comp, gap, ref).float(), relu=cfg.adv_relu) if adversarial else rec * 0
        triplet = cfg.triplet and cfg.lambda_triplet > 0
        tri = losses.triplet_ssim(comp.float(), hr, ref, gap, margin=cfg.margin) if triplet else rec * 0
        loss_g = cfg.lambda_rec * rec + cfg.lambda_adv * adv + cfg.lambda_triplet * tri
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()  # type: ignore[no-untyped-call]
        self.opt_g.step()
        loss_d = rec.detach() * 0
        if adversarial:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                loss_d = losses.d_hinge(self.d_run(hr, gap, ref).float(), self.d_run(comp.detach(), gap, ref).float())
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()  # type: ignore[no-untyped-call]
            self.opt_d.step()
        return {
            "loss_g": loss_g.item(),
            "loss_adv": adv.item(),
            "loss_rec": rec.item(),
            "loss_triplet": float(tri.item()),
            "loss_d": loss_d.item(),
        }

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Gap-only MAE, PSNR and SSIM in model range ([-1, 1] ~ p1..p99), for the model and for matching."""
        n = min(self.cfg.val_samples, max(1, self.data.count("val")) * 8) if self.data.count("val") else 0
        if n == 0:
            return {}
        self.g.eval()
        sums: dict[str, float] = dict.fromkeys(
            ("val_mae", "val_psnr", "val_ssim", "match_mae", "match_psnr", "match_ssim"), 0.0
        )
        if self._val_batches is None:
            self._val_batches = [
                _batch(self.data, "val", 0, list(range(start, min(n, start + self.cfg.batch_size))), self.device)
                for start in range(0, n, self.cfg.batch_size)
            ]
        for b in self._val_batches:
            out = self.g(b["hr"], b["ref"], b["gap"], b["factor"]).float()
            for name, pred in (("val", out), ("match", b["ref"])):
                comp = pred * b["gap"] + b["hr"] * (1 - b["gap"])
                for k, v in _gap_metrics(comp, b["hr"], b["gap"]).items():
                    sums[f"{name}_{k}"] += v * len(pred)
        self.g.train()
        return {k: v / n for k, v in sums.items()}

    def tensors(self, full: bool) -> dict[str, torch.Tensor]:
        """Generator weights; with `full`, also the discriminator and both optimiser states (for resume)."""
        out = state_tensors("generator", self.g)
        if full:
            out.update(state_tensors("discriminator", self.d))
            for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
                for idx, st in opt.state_dict()["state"].items():
                    for key, value in st.items():
                        out[f"{name}.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        return out

    def meta(self, val: dict[str, float]) -> dict[str, Any]:
        """Checkpoint metadata: architecture, bands, scaling, training data, validation metrics, settings."""
        cfg, data = self.cfg, self.data
        names = [data.sources[0].hr.src.descriptions[i - 1] or f"band {i}" for i in data.sources[0].hr.indexes]
        if data.scaling is not None:
            scaling = {"hr": data.scaling.to_dict()}
        else:
            scaling = {"window": data.window_scaling.to_dict()}
            names = []
        return {
            "generator": dataclasses.asdict(self.gcfg),
            "discriminator": {"width": cfg.disc_width},
            "bands": None if cfg.bandwise else data.bands,
            "band_names": names,
            "dtype": sorted({s.hr.src.dtypes[0] for s in data.sources}),
            "scaling": scaling,
            "ref_input": "matched",
            "tile": None,
            "train_crop": cfg.crop,
            "resampling": cfg.resampling,
            "scale_range": _scale_range(cfg, data),
            "training_data": [s.spec.hr for s in data.sources if s.spec.split != "val"],
            "validation_data": [s.spec.hr for s in data.sources if s.spec.split == "val"],
            "training_pairs": [[s.spec.hr, s.spec.ref] for s in data.sources if s.spec.ref],
            "validation": val,
            "epoch": self.epoch,
            "best_mae": self.best_mae if math.isfinite(self.best_mae) else None,
            "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "extra"},
            "version": __version__,
        }

    def init_from(self, path: str) -> None:
        """Start the generator from the weights of a checkpoint (fine-tuning); "default" = the bundled model."""
        if path == "default":
            from extendgan_geo.fillers.gan import bundled_model

            found = bundled_model()
            if found is None:
                raise CheckpointError("init 'default': this installation bundles no model; expected a checkpoint path")
            path = found
        tensors, meta = read_checkpoint(path)
        theirs = _generator_config(meta, f"init {path!r}") or GeneratorConfig()
        state = module_state("generator", tensors)
        if self.gcfg.scale_input and not theirs.scale_input:  # widened: the new input channel starts at zero
            theirs, state = dataclasses.replace(theirs, scale_input=True), with_scale_input(state)
        if theirs != self.gcfg:
            raise CheckpointError(
                f"init {path!r}: its generator {dataclasses.asdict(theirs)} differs from this run's "
                f"{dataclasses.asdict(self.gcfg)}; expected the same width, bandwise and residual settings"
            )
        self.g.load_state_dict(state)

    def load(self, path: str) -> None:
        """Restore models, optimisers, epoch and best score from a full checkpoint."""
        tensors, meta = read_checkpoint(path)
        if "epoch" not in meta or not any(k.startswith("opt_g.") for k in tensors):
            raise CheckpointError(f"{path!r} is not a resumable checkpoint; expected last.safetensors of a run")
        theirs = _generator_config(meta, f"resume {path!r}")
        if theirs is not None and theirs != self.gcfg:
            raise CheckpointError(
                f"resume {path!r}: its generator {dataclasses.asdict(theirs)} differs from this run's "
                f"{dataclasses.asdict(self.gcfg)}; expected the settings the run started with (e.g. --scale-input)"
            )
        for prefix, module in (("generator", self.g), ("discriminator", self.d)):
            module.load_state_dict(module_state(prefix, tensors))
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            state = opt.state_dict()
            restored: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith(name + "."):
                    _, idx, field_name = key.split(".", 2)
                    restored.setdefault(int(idx), {})[field_name] = value.to(self.device)
            state["state"] = restored
            opt.load_state_dict(state)
        self.epoch = int(meta["epoch"])
        self.best_mae = meta.get("best_mae") or math.inf


def _scale_range(cfg: TrainConfig, data: RasterSamples) -> list[float]:
    """The reference scale factors the model saw: the simulated range and every real pair's pixel-size ratio."""
    pairs = [float(s.ref.scale) for s in data.sources if s.ref is not None]
    simulated = any(s.ref is None for s in data.sources)
    factors = [*(cfg.factor if simulated or not pairs else ()), *pairs]
    return [round(min(factors), 4), round(max(factors), 4)]


def _generator_config(meta: dict[str, Any], what: str) -> GeneratorConfig | None:
    """The generator settings a checkpoint records (None when it records none).

    Raises:
        CheckpointError: they cannot be read (`what` names the checkpoint and why it was opened).
    """
    if meta.get("generator") is None:
        return None
    try:
        return GeneratorConfig.from_dict(meta["generator"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{what}: unreadable generator settings ({exc}); expected a checkpoint of egan-fill train"
        ) from exc


def _per_band(hr: torch.Tensor, ref: torch.Tensor, gap: torch.Tensor, comp: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(N, C, H, W) images and (N, 1, H, W) gap -> N*C one-band images and their gaps."""
    n, c, h, w = hr.shape
    return (
        hr.reshape(n * c, 1, h, w),
        ref.reshape(n * c, 1, h, w),
        gap.repeat_interleave(c, dim=0),
        comp.reshape(n * c, 1, h, w),
    )


def _gap_metrics(pred: torch.Tensor, truth: torch.Tensor, gap: torch.Tensor) -> dict[str, float]:
    w = gap.expand_as(pred)
    denom = w.sum().clamp_min(1.0)
    mae = ((pred - truth).abs() * w).sum() / denom
    mse = (((pred - truth) ** 2) * w).sum() / denom
    psnr = 10 * torch.log10(4.0 / mse.clamp_min(1e-10))
    ssim = losses.masked_ssim(pred, truth, gap, data_range=2.0).mean()
    return {"mae": mae.item(), "psnr": psnr.item(), "ssim": ssim.item()}


def train(cfg: TrainConfig, progress: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train Extend-GAN on the rasters of `cfg`; write checkpoints and a CSV log into `cfg.out`.

    Args:
        cfg: the run's settings.
        progress: called with (steps advanced, steps in the run) after each step.

    Returns:
        TrainResult with the checkpoint paths and per-epoch history.

    Raises:
        EganError: bad inputs, settings or resume checkpoint.
    """
    device = _device(cfg)
    rank, world = _dist_init(device)
    specs = (
        [SourceSpec(p, indexes=cfg.bidx) for p in cfg.hr]
        + [SourceSpec(h, r, indexes=cfg.bidx, ref_indexes=cfg.ref_bidx) for h, r in cfg.pairs]
        + [SourceSpec(p, indexes=cfg.bidx, split="val") for p in cfg.val_hr]
    )
    if cfg.val_hr:
        train_only = [s for s in specs if s.split is None]
        specs = [dataclasses.replace(s, split="train") for s in train_only] + specs[len(train_only) :]
    pool = _load_masks(cfg.mask_files)
    kinds = cfg.mask_kinds + (("file",) if pool and "file" not in cfg.mask_kinds else ())
    data = RasterSamples(
        specs,
        crop=cfg.crop,
        block=cfg.block,
        val_fraction=cfg.val_fraction,
        mask_kinds=kinds,
        mask_pool=pool,
        degrade=DegradeConfig(factor=cfg.factor),
        seed=cfg.seed,
        bandwise=cfg.bandwise,
        resampling=cfg.resampling,
    )
    trainer = Trainer(cfg, data, device, world)
    if cfg.resume:
        trainer.load(cfg.resume)
    elif cfg.init:
        trainer.init_from(cfg.init)
    os.makedirs(cfg.out, exist_ok=True)
    best, last = os.path.join(cfg.out, "best.safetensors"), os.path.join(cfg.out, "last.safetensors")
    log_path = os.path.join(cfg.out, "log.csv")
    if rank == 0:
        with open(os.path.join(cfg.out, "config.toml"), "w") as f:
            f.write(to_toml(cfg))
    steps = cfg.samples_per_epoch // (cfg.batch_size * world)
    history = []
    start_epoch = trainer.epoch
    started = time.perf_counter()
    batches = _batches(trainer, start_epoch, steps, rank, world)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if cfg.max_minutes and epoch > start_epoch and _past(started, cfg.max_minutes, device, world):
                logger.info("max_minutes %g reached after epoch %d; resume from %s", cfg.max_minutes, epoch, last)
                break
            row = _run_epoch(trainer, epoch, batches, steps, world, rank, progress, (cfg.epochs - start_epoch) * steps)
            trainer.epoch = epoch + 1
            if rank == 0:
                improved = row.get("val_mae", -math.inf) < trainer.best_mae or not math.isfinite(trainer.best_mae)
                if improved and "val_mae" in row:
                    trainer.best_mae = row["val_mae"]
                meta = trainer.meta({k: v for k, v in row.items() if k.startswith(("val_", "match_"))})
                save_checkpoint(last, trainer.tensors(full=True), meta)
                if improved or not os.path.exists(best):
                    save_checkpoint(best, trainer.tensors(full=False), meta)
                _append_csv(log_path, row)
                logger.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in row.items()})
            history.append(row)
    finally:
        batches.close()  # stops the loader processes, also when a step raises
        data.close()
    return TrainResult(best, last, len(history), history)


def _past(started: float, minutes: float, device: torch.device, world: int) -> bool:
    """Whether the time budget is spent; with several ranks, rank 0's clock decides for all (no rank stops alone)."""
    past = time.perf_counter() - started > 60 * minutes
    if world > 1:
        flag = torch.tensor([float(past)], device=device)
        dist.broadcast(flag, src=0)
        past = bool(flag.item())
    return past


class _RunSamples(torch.utils.data.Dataset[dict[str, np.ndarray]]):
    """The training samples of a run for one rank from `first_epoch` on, in step order (what `_batch` would draw).

    Item i is sample `(step * world + rank) * batch + k` of epoch `first_epoch + i // per_epoch`, so one loader
    (and one set of worker processes) serves every epoch.
    """

    def __init__(
        self, data: RasterSamples, first_epoch: int, epochs: int, steps: int, batch: int, rank: int, world: int
    ):
        self.data, self.first_epoch, self.epochs = data, first_epoch, epochs
        self.steps, self.batch, self.rank, self.world = steps, batch, rank, world

    def __len__(self) -> int:
        return (self.epochs - self.first_epoch) * self.steps * self.batch

    def key(self, i: int) -> tuple[int, int]:
        """(epoch, sample index) of item i."""
        epoch, j = divmod(i, self.steps * self.batch)
        step, k = divmod(j, self.batch)
        return self.first_epoch + epoch, (step * self.world + self.rank) * self.batch + k

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        s = self.data.sample("train", *self.key(i))
        return {key: s[key] for key in SAMPLE_KEYS}


def _reopen_in_worker(_: int) -> None:
    info = torch.utils.data.get_worker_info()
    assert info is not None
    cast(_RunSamples, info.dataset).data.reopen()


def _batches(
    trainer: Trainer, first_epoch: int, steps: int, rank: int, world: int
) -> collections.abc.Generator[dict[str, torch.Tensor], None, None]:
    """Every batch of the run from `first_epoch` on for this rank, epoch after epoch.

    Drawn here, or by `workers` processes started once for the whole run (same samples, same order).
    """
    cfg, device = trainer.cfg, trainer.device
    items = _RunSamples(trainer.data, first_epoch, cfg.epochs, steps, cfg.batch_size, rank, world)
    if not cfg.workers:
        for start in range(0, len(items), cfg.batch_size):
            keys = [items.key(i) for i in range(start, start + cfg.batch_size)]  # one epoch per batch
            yield _batch(trainer.data, "train", keys[0][0], [index for _, index in keys], device)
        return
    loader = torch.utils.data.DataLoader(
        items,
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        worker_init_fn=_reopen_in_worker,
        pin_memory=device.type == "cuda",
        prefetch_factor=4,
    )
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _run_epoch(
    trainer: Trainer,
    epoch: int,
    batches: Iterator[dict[str, torch.Tensor]],
    steps: int,
    world: int,
    rank: int,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> dict[str, float]:
    """Train on the next `steps` batches, then validate; the row of the CSV log.

    data_wait_s is the time spent waiting for batches: near zero when the model sets the pace, most of the epoch
    when drawing samples does (then add --workers).
    """
    cfg = trainer.cfg
    lr_g, lr_d = trainer.set_lr(epoch)
    t0 = time.perf_counter()
    wait = 0.0
    sums: dict[str, float] = {}
    for _ in range(steps):
        t_wait = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t_wait
        for k, v in trainer.step(batch).items():
            sums[k] = sums.get(k, 0.0) + v
        if progress:
            progress(1, total)
    seconds = time.perf_counter() - t0
    row: dict[str, float] = {"epoch": epoch + 1, "step": (epoch + 1) * steps, "lr_g": lr_g, "lr_d": lr_d}
    row.update({k: v / steps for k, v in sums.items()})
    row.update(trainer.validate() if rank == 0 else {})
    row.update(seconds=seconds, samples_per_s=steps * cfg.batch_size * world / seconds, data_wait_s=wait)
    return row


def _append_csv(path: str, row: dict[str, float]) -> None:
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    fields = LOG_FIELDS
    if not new:  # a resumed run keeps the columns its log has (older versions wrote fewer)
        with open(path, newline="") as f:
            fields = next(csv.reader(f), []) or LOG_FIELDS
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _load_masks(paths: tuple[str, ...]) -> list[np.ndarray]:
    """User mask rasters as bool arrays (non-zero = gap)."""
    import rasterio

    pool = []
    for p in paths:
        with rasterio.open(p) as src:
            pool.append(src.read(1, masked=True).filled(0) != 0)
    return pool
