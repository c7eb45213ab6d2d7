"""`--method gan`: an Extend-GAN generator checkpoint behind the filler interface.

The reference is first brought to HR radiometry by the same per-window matching as `--method match` (when the
checkpoint was trained with `ref_input = "matched"`), then both are scaled with the fixed per-band statistics
stored in the checkpoint, passed through the generator in batches, and scaled back to file units.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from importlib import resources
from typing import Any

import numpy as np

from extendgan_geo import allocator
from extendgan_geo.errors import BandMismatchError, CheckpointError, ConfigError
from extendgan_geo.fillers.base import TileBatch
from extendgan_geo.fillers.match import MatchFiller, fit_gain_bias
from extendgan_geo.scaling import BandScaling, WindowScaling, band_range

logger = logging.getLogger(__name__)

BUNDLED = "extendgan_geo.weights"
# torch.compile backend of --compile ("eager" skips code generation: the tests use it to check the plumbing).
COMPILE_BACKEND = "inductor"
# Windows with a smaller share of known HR pixels (deep inside holes wider than a window) take the matched
# reference, `match`'s prediction, unless the model was trained on such windows (mask kind "full"): the shipped one
# never saw them (its crops always keep known pixels) and there fell 0.1-0.3 dB below `match` (docs/model.md). The
# model does not run for them.
MIN_CONTEXT = 0.01
# Compiled generators run one call at a time: torch.compile is not thread-safe, and batch and mosaic may run several
# fillers on the threads of one process. A failed compile is remembered for the process, so later fillers (one per
# batch job or mosaic strip) neither retry it nor warn again.
_COMPILE_LOCK = threading.Lock()
_compile_failed: str | None = None
# Coarse to fine: a reference at least CASCADE_FROM times the top of the model's trained scale range coarser than the
# HR (9x for the bundled 1-10x model) first fills the windows on a coarser grid, where it is s1 = min(CASCADE_STAGE x
# top, scale / 2) times coarser than a cell (the range where the model gains most); that fill, upsampled
# bilinearly, is the reference of the full-resolution pass (again coarse to fine while it stays that coarse, up to
# MAX_PASSES passes in all). Chosen on the corpus' training rasters (never the validation files, docs/model.md):
# with the bundled model it turned -0.24 dB against `match` at 30x into +0.22 and +0.61 at 10x into +0.78 (measured
# before the fix of the reference's intermediate grid; validation files after it: -0.06 -> +0.29 at 30x); at 8x,
# where it is not used, a coarse pass changed little. Models trained to less than CASCADE_MIN_TOP never use it (their
# coarse pass would be under 2x, and the passes would not get any finer).
CASCADE_FROM = 0.9
CASCADE_STAGE = 0.6
CASCADE_MIN_TOP = 2.0 / CASCADE_STAGE
MAX_PASSES = 3


def bundled_model() -> str | None:
    """Path of the model shipped in the package, or None when there is none."""
    try:
        files = resources.files(BUNDLED)
    except ModuleNotFoundError:
        return None
    path = files / "default.safetensors"
    return str(path) if path.is_file() else None


def model_fits(model: str | None, bands: int) -> bool:
    """Whether `model` (or the bundled one when None) can fill `bands` bands; False when there is none.

    Raises:
        CheckpointError: `model` is given but unreadable.
    """
    from extendgan_geo.model.checkpoint import read_metadata

    path = model or bundled_model()
    if path is None:
        return False
    gen = read_metadata(path)["generator"]
    return bool(gen.get("bandwise")) or int(gen["bands"]) == bands


def pick_device(device: str) -> str:
    """Resolve "auto" to "cuda" when available, else "cpu".

    Raises:
        ConfigError: "cuda" was asked for and torch sees no GPU.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA GPU; expected --device cpu or auto")
    return device


class GanFiller:
    """A trained generator as a filler.

    Args:
        generator: the torch generator (eval mode).
        meta: checkpoint metadata.
        model_hash: sha256 of the checkpoint file.
        device: torch device name.
        precision: "fp32" or "bf16" (autocast).
        bands: the run's band count (bandwise models).
        compile: run the generator through `torch.compile`; plain torch, with a warning, if compiling fails.
        coarse_to_fine: fill windows with a reference about as coarse as the model's trained top factor or
            coarser in two or three passes (see CASCADE_FROM).
    """

    name = "gan"
    supports_spread = True
    spread_methods = ("local", "flips")

    def __init__(
        self,
        generator: Any,
        meta: dict[str, Any],
        *,
        model_hash: str,
        device: str,
        precision: str = "fp32",
        bands: int | None = None,
        compile: bool = False,
        coarse_to_fine: bool = True,
    ) -> None:
        self.generator = generator.to(device)
        self.coarse_to_fine = coarse_to_fine
        self.compiled: Any = None
        self._rows = 0  # the batch size a compiled GPU generator is called with (smaller batches are padded)
        if compile and _compile_failed is None:
            import torch

            # Inductor compiles lazily, at the first call of each input shape; failures surface there.
            self.compiled = torch.compile(self.generator, backend=COMPILE_BACKEND, dynamic=False)
        elif compile:
            logger.info("--compile skipped: torch.compile failed earlier in this process (%s)", _compile_failed)
        self.precision = precision
        self.meta = meta
        self.model_hash = model_hash
        self.device = device
        cfg = meta["generator"]
        self.bandwise = bool(cfg.get("bandwise", False))
        if self.bandwise:
            # One set of weights for any band count: the run's own count, reference bands paired one to one.
            if bands is None:
                raise ValueError("a bandwise model needs the run's band count")
            self.bands: int | None = bands
            self.ref_bands: int | None = bands
        else:
            self.bands = int(cfg["bands"])
            self.ref_bands = int(cfg["ref_bands"])
        # The generator is fully convolutional (it pads to a multiple of 4 itself): any tile works unless the
        # checkpoint pins one.
        self.tile: int | None = int(meta["tile"]) if meta.get("tile") else None
        self.ref_input = meta.get("ref_input", "matched")
        self.window: WindowScaling | None = None
        self.band_range: np.ndarray | None = None
        if "window" in meta["scaling"]:
            self.window = WindowScaling.from_dict(meta["scaling"]["window"])
        else:
            self.scaling = BandScaling.from_dict(meta["scaling"]["hr"])
            self.ref_scaling = (
                self.scaling if self.ref_input == "matched" else BandScaling.from_dict(meta["scaling"]["ref"])
            )
        self.matcher = MatchFiller(self.bands) if self.ref_input == "matched" else None
        # --uncertainty-method flips: predict the four flips of each window and output their mean plus one channel,
        # the RMS over bands of their standard deviation (file units). ("local" is the engine's.)
        self.spread = False
        self.spread_method = "local"
        # Whether the model learned to fill windows without known pixels (see MIN_CONTEXT).
        self.blind_trained = "full" in (meta.get("config") or {}).get("mask_kinds", ())
        # Whether the model also reads the reference's scale factor (TileBatch.scale), kept inside the range it was
        # trained on (a fill beyond it is warned about by the pipeline).
        self.scale_input = bool(cfg.get("scale_input", False))
        low, high = meta.get("scale_range") or (1.0, float("inf"))
        self.scale_range = (float(low), float(high))
        # Coarse to fine from this scale factor on, with a coarse pass at most `cascade_stage` (never without a
        # recorded range, for models trained only near the HR, nor for checkpoints that read the raw reference or
        # pin their window size).
        self.cascade_from = CASCADE_FROM * self.scale_range[1]
        self.cascade_stage = CASCADE_STAGE * self.scale_range[1]
        self.cascade_able = self.scale_range[1] >= CASCADE_MIN_TOP and self.matcher is not None and self.tile is None

    def prepare(self, sample: TileBatch) -> None:
        """Fit the scene-wide radiometric match of the reference and the scene's band ranges."""
        if self.matcher is not None:
            self.matcher.prepare(sample)
        if self.window is not None:
            self.band_range = _known_range(sample)

    def _to_model(self, batch: TileBatch, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        """HR and reference in model range, and the inverse map of the output."""
        ref_ok = np.isfinite(ref).all(axis=1, keepdims=True)
        if self.window is not None:
            ranges = self.band_range if self.band_range is not None else _known_range(batch)
            mean, std = self.window.stats(np.where(ref_ok, ref, np.nan), ranges)
            hr = (batch.hr - mean) / std
            ref_m = np.where(ref_ok, (np.nan_to_num(ref) - mean) / std, 0.0)
            return hr, ref_m, lambda y: y * std + mean
        hr = self.scaling.to_model(batch.hr, axis=1)
        ref_m = np.where(ref_ok, self.ref_scaling.to_model(np.nan_to_num(ref), axis=1), 0.0)
        return hr, ref_m, lambda y: self.scaling.from_model(y, axis=1)

    def __call__(self, batch: TileBatch) -> np.ndarray:
        """Predict the windows: (N, C, T, T) float32 in file units, NaN where the reference has no data."""
        ref = self.matcher(batch) if self.matcher is not None else batch.ref
        ref_ok = np.isfinite(ref).all(axis=1, keepdims=True)
        # Windows the model runs on: all, or with a matched reference to fall back on, those with known pixels.
        run = np.ones(len(batch), bool)
        if self.matcher is not None and not self.blind_trained:
            run = (~batch.gap).mean(axis=(1, 2, 3)) >= MIN_CONTEXT
        pred = np.where(ref_ok, ref, np.float32(np.nan)).astype(np.float32)
        spread = np.zeros((len(batch), 1, *pred.shape[2:]), np.float32)  # the flips' (none where skipped)
        if not run.any():
            return self._with_spread(pred, spread, ref_ok)
        sub = self._refined(TileBatch(batch.hr[run], ref[run], batch.gap[run], batch.origins[run], batch.scale))
        flips: list[tuple[int, ...]] = [(), (-1,), (-2,), (-2, -1)] if self.spread else [()]
        stack = self._predict(sub, flips)
        pred[run] = np.where(ref_ok[run], stack.mean(axis=0), np.float32(np.nan))
        if self.spread:
            spread[run] = np.sqrt(stack.var(axis=0).mean(axis=1, keepdims=True))
        return self._with_spread(pred, spread, ref_ok)

    def _predict(self, sub: TileBatch, flips: list[tuple[int, ...]], coarse: bool = False) -> np.ndarray:
        """The model's prediction of every pixel of the windows, one per flip: (F, N, C, H, W) in file units.

        `coarse`: a coarse pass (see CASCADE_FROM), run as one batch with the plain generator.
        """
        import torch

        hr, ref_m, from_model = self._to_model(sub, sub.ref)
        gap = sub.gap.astype(np.float32)
        bf16 = self.precision == "bf16"
        # On CPUs one window per call is faster than a batch (0.58 vs 1.0 s per window for the paper network,
        # docs/benchmarks.md); GPUs take the whole batch, and so do CPUs for coarse passes, whose small windows cost
        # mostly per-call overhead. Coarse passes skip a compiled generator: their shapes differ from the windows'
        # and their batches vary in size, and each new shape would cost a compile.
        step = 1 if self.device == "cpu" and not coarse else len(sub)
        variants = []
        with (
            torch.inference_mode(),
            torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=bf16),
        ):
            # Made inside inference mode, like their flipped copies: a compiled generator sees one kind of tensor
            # (inference tensors and normal ones would each cost a compile).
            arrays = [hr, ref_m, gap]
            if self.scale_input:
                level = min(max(sub.scale, self.scale_range[0]), self.scale_range[1])
                arrays.append(np.full((len(sub), 1, 1, 1), level, np.float32))
            tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device) for a in arrays]
            for dims in flips:
                outs = []
                for i in range(0, len(sub), step):
                    args = [t[i : i + step] for t in tensors]
                    if dims:
                        args = [a.flip(dims) for a in args]
                    y = (self.generator(*args) if coarse else self._forward(*args)).float()
                    outs.append((y.flip(dims) if dims else y).cpu())
                variants.append(from_model(torch.cat(outs).numpy()))
        return np.stack(variants)

    def _refined(self, sub: TileBatch, depth: int = 1) -> TileBatch:
        """The windows, with a reference `cascade_from` or more times coarser refined coarse to fine (CASCADE_FROM).

        A reference that coarse is replaced by the model's fill of the same windows on a grid where it is about
        `cascade_stage` times coarser: the known HR pixels averaged into the coarse cells (a cell more than half
        unknown is a gap), the matched reference averaged likewise. Windows without a known cell there take the
        averaged reference, as windows without known pixels do (MIN_CONTEXT), unless the model learned to fill them.
        Each cell of the fill mixes its known pixels and the prediction by their shares; the fill is upsampled
        bilinearly and matched to the known HR pixels like any reference. `depth` counts the passes so far.
        """
        h, w = sub.hr.shape[-2:]
        cells = self._coarse_step(h, sub.scale, depth)
        if cells is None:
            return sub
        import torch
        import torch.nn.functional as F

        size = (cells, self._coarse_step(w, sub.scale, depth) or cells)

        def down(a: np.ndarray) -> np.ndarray:
            return F.interpolate(torch.from_numpy(a.astype(np.float32)), size=size, mode="area").numpy()

        known = (~sub.gap).astype(np.float32)
        share = down(known)
        known_sum = down(sub.hr * known)  # the known pixels' values times their share of each cell
        hr = known_sum / np.maximum(share, 1e-12)
        gap = share < 0.5
        ref_ok = np.isfinite(sub.ref).all(axis=1, keepdims=True)
        # Pixels without reference take their window's mean: the coarse cells they share stay defined.
        valid = np.where(ref_ok, sub.ref, 0.0)
        mean = valid.sum(axis=(2, 3), keepdims=True) / np.maximum(ref_ok.sum(axis=(2, 3), keepdims=True), 1)
        ref = down(np.where(ref_ok, valid, mean)).astype(np.float32)
        hr = np.where(gap, 0.0, hr).astype(np.float32)
        coarse = TileBatch(hr, ref, gap, sub.origins, sub.scale * size[0] / h)
        pred = self._predict(coarse, [()], coarse=True)[0]
        if not self.blind_trained:
            blind = (~gap).mean(axis=(1, 2, 3)) < MIN_CONTEXT
            pred[blind] = ref[blind]
        # Each cell's mean: its known pixels for their share of it, the prediction for the rest (a cell half
        # known is half each; a hard known/gap split leaves steps along slanted gap edges).
        filled = known_sum + (1.0 - share) * pred
        up = F.interpolate(torch.from_numpy(filled.astype(np.float32)), size=(h, w), mode="bilinear").numpy()
        for i in range(len(sub)):
            gain, bias, _ = fit_gain_bias(sub.hr[i], up[i], ~sub.gap[i, 0] & ref_ok[i, 0])
            up[i] = gain[:, None, None] * up[i] + bias[:, None, None]
        ref = np.where(ref_ok, up, np.nan).astype(np.float32)
        return self._refined(TileBatch(sub.hr, ref, sub.gap, sub.origins, h / size[0]), depth + 1)

    def passes(self, scale: float, size: int) -> list[float]:
        """The reference's scale factor in each model pass over a `size` px window, coarsest first."""
        out: list[float] = []
        while (cells := self._coarse_step(size, scale, len(out) + 1)) is not None:
            out.append(scale * cells / size)
            scale = size / cells
        return [*out, scale]

    def _coarse_step(self, size: int, scale: float, depth: int) -> int | None:
        """Cells across `size` HR pixels of a coarse pass before pass `depth`, or None for no coarse pass.

        There the reference is min(`cascade_stage`, scale / 2) times coarser than a cell (more in windows too small
        for 8 cells). None when coarse to fine is off or unfit for the model, the reference is finer than
        `cascade_from`, MAX_PASSES would be exceeded, or the next pass would not be at least 1.25x finer.
        """
        if not (self.coarse_to_fine and self.cascade_able) or scale < self.cascade_from or depth >= MAX_PASSES:
            return None
        cells = max(8, round(size * min(self.cascade_stage, scale / 2) / scale))
        return cells if size / cells <= 0.8 * scale else None

    def _with_spread(self, pred: np.ndarray, spread: np.ndarray, ref_ok: np.ndarray) -> np.ndarray:
        """`pred`, plus the flip spread as one more channel when asked for."""
        if not self.spread:
            return pred
        return np.concatenate([pred, np.where(ref_ok, spread, np.float32(np.nan))], axis=1).astype(np.float32)

    def _forward(self, *args: Any) -> Any:
        """The generator's output, compiled when asked for and possible."""
        global _compile_failed
        if self.compiled is None:
            return self.generator(*args)
        import torch
        from torch._dynamo.exc import TorchDynamoException

        n = len(args[0])
        self._rows = max(self._rows, n) if self.device != "cpu" else n
        padded = args
        if n < self._rows:
            # The last batch of a GPU run is smaller: pad it to the compiled size instead of compiling again.
            padded = tuple(torch.cat([a, a[-1:].expand(self._rows - n, *a.shape[1:])]) for a in args)
        try:
            with _COMPILE_LOCK:
                return self.compiled(*padded)[:n]
        except TorchDynamoException as exc:  # compiling failed: no C++ compiler, an unsupported platform or op
            self.compiled = None
            with _COMPILE_LOCK:
                first = _compile_failed is None
                _compile_failed = f"{type(exc).__name__}: {_first_line(exc)}"
            if first:
                warnings.warn(
                    f"--compile: torch.compile failed ({_compile_failed}); running the generator without it",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self.generator(*args)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"


def _known_range(batch: TileBatch) -> np.ndarray:
    """(C,) p99 - p1 of the known HR pixels of a batch (the scene sample), per band."""
    known = ~batch.gap[:, 0]
    pixels = np.moveaxis(batch.hr, 1, 0)[:, known]
    if pixels.shape[1] == 0:
        return np.ones(batch.hr.shape[1], np.float32)
    return band_range(pixels)


def load_gan_filler(
    model: str | None,
    *,
    device: str,
    bands: int,
    precision: str = "fp32",
    compile: bool = False,
    coarse_to_fine: bool = True,
) -> GanFiller:
    """Load an Extend-GAN checkpoint (or the bundled one) as a filler.

    Args:
        model: checkpoint path, or None for the model shipped in the package.
        device: "auto", "cpu" or "cuda".
        bands: HR band count the run fills.
        precision: "fp32" or "bf16".
        compile: run the generator through `torch.compile`.
        coarse_to_fine: fill windows with a reference beyond the model's range coarse to fine (CASCADE_FROM).

    Raises:
        CheckpointError: no checkpoint, or an unreadable one.
        BandMismatchError: the checkpoint was trained for another band count.
    """
    from extendgan_geo.model.checkpoint import file_sha256, load_generator

    path = model or bundled_model()
    if path is None:
        raise CheckpointError(
            "--method gan found no bundled model in this installation; expected a checkpoint: pass --model PATH "
            "(from `egan-fill train`) or use --method match"
        )
    generator, meta = load_generator(path)
    trained = int(meta["generator"]["bands"])
    if not meta["generator"].get("bandwise") and trained != bands:
        names = ",".join(meta.get("band_names", [])) or f"{trained} bands"
        raise BandMismatchError(
            f"model {os.path.basename(path)!r} was trained for {trained} bands ({names}) but {bands} are selected; "
            f"expected {trained}: select them with -b/--bidx and --ref-bidx, use the bundled band-agnostic model "
            "(no --model), or train one for this layout: egan-fill train --hr FILE -b ... (docs/training.md)"
        )
    device = pick_device(device)
    if device == "cpu":
        allocator.tune()  # the generator's feature maps are reused, not faulted in again, window after window
    filler = GanFiller(
        generator,
        meta,
        model_hash=file_sha256(path),
        device=device,
        precision=precision,
        bands=bands,
        compile=compile,
        coarse_to_fine=coarse_to_fine,
    )
    logger.info("gan: %s (%s), device %s", os.path.basename(path), filler.model_hash[:12], filler.device)
    return filler
