"""Settings of a fill run as frozen, self-validating dataclasses.

Defaults live here and nowhere else: the CLI reads them for its `show_default` values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from extendgan_geo.errors import ConfigError

BlendKind = Literal["cosine", "linear", "none"]
MethodKind = Literal["auto", "gan", "match", "reference", "fillnodata"]
DeviceKind = Literal["auto", "cpu", "cuda"]
PrecisionKind = Literal["fp32", "bf16"]
UncertaintyKind = Literal["local", "flips", "fit"]
# Resampling kernels that make sense for bringing a coarse reference onto a fine grid. "nearest" is allowed
# but never the default: it leaves the reference's 30 m blocks in the fill.
ResamplingKind = Literal["bilinear", "cubic", "cubic_spline", "lanczos", "average", "nearest"]
# The kernels training can simulate references with (extendgan_geo.degrade), each as GDAL warps them.
SIMULATED_KERNELS = ("bilinear", "cubic", "lanczos")


@dataclass(frozen=True)
class TileConfig:
    """How the scene is cut into model windows and blended back.

    Attributes:
        size: window edge in HR pixels (the model's input size).
        overlap: pixels shared by neighbouring windows.
        blend: weight profile over the overlap ("cosine" = raised cosine, "linear" = ramp, "none" = flat).
        batch_size: windows per call of the filler.
    """

    size: int = 256
    overlap: int = 64
    blend: BlendKind = "cosine"
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ConfigError(f"tile size must be at least 16 px, got {self.size}")
        if not 0 <= self.overlap <= self.size // 2:
            raise ConfigError(
                f"overlap must be in [0, {self.size // 2}] px for a {self.size} px tile, got {self.overlap}"
            )
        if self.blend not in get_args(BlendKind):
            raise ConfigError(f"blend must be one of {get_args(BlendKind)}, got {self.blend!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")

    @property
    def stride(self) -> int:
        """Distance between the origins of neighbouring windows, in px."""
        return self.size - self.overlap


@dataclass(frozen=True)
class OutputConfig:
    """How the filled raster is written.

    Attributes:
        cog: write a Cloud Optimized GeoTIFF (else a tiled GeoTIFF).
        creation_options: GDAL creation options that override the defaults (e.g. {"compress": "deflate"}).
        overwrite: replace an existing output file.
        write_fill_mask: write the `<out>.fillmask.tif` sidecar (0 kept, 1 filled, 2 gap left unfilled).
        tmpdir: folder for intermediate files; None = the output's folder.
        uncertainty: path of a float32 raster, aligned with the output, giving for each filled pixel how much the
            method's prediction is to be doubted (file units; 0 outside the gap, NaN where unfilled); None = none.
        uncertainty_method: how that is estimated. "local" (gan and match; the default): the local variability
            of the filled image, the RMS over bands of the standard deviation in a 7 x 7 neighbourhood, since
            fills miss most where the scene has edges and texture (it ranks errors best, docs/model.md, and costs
            no extra model run); "flips" (gan): the spread of the predictions for the four flips of each window,
            whose mean is then the output (four model runs); "fit" (match): the RMS residual of each window's fit.
    """

    cog: bool = True
    creation_options: dict[str, str] = field(default_factory=dict)
    overwrite: bool = False
    write_fill_mask: bool = True
    tmpdir: str | None = None
    uncertainty: str | None = None
    uncertainty_method: UncertaintyKind = "local"

    def __post_init__(self) -> None:
        if self.uncertainty_method not in get_args(UncertaintyKind):
            raise ConfigError(
                f"uncertainty method must be one of {get_args(UncertaintyKind)}, got {self.uncertainty_method!r}"
            )


@dataclass(frozen=True)
class FillConfig:
    """Everything that decides what a fill run computes.

    Attributes:
        indexes: HR bands to fill, 1-based; None = every band that is not alpha.
        ref_indexes: reference bands paired with `indexes`, 1-based; None = the same count, in order.
        nodata: override the HR nodata value (None = use the file's).
        ref_nodata: override the reference nodata value (None = use the file's).
        mask_layer: layer of the vector mask file (None = its first layer).
        mask_buffer: grow the gap by this many HR pixels (seams and fuzzy cloud edges).
        resampling: kernel that warps the reference onto the HR grid. Lanczos (the default) gave `match` and the
            bundled model 0.18-0.19 dB more than cubic convolution on the 80 validation cases (docs/model.md).
        coregister: estimate and remove a global sub-pixel shift of the reference.
        heal: for method match, carry the residual of the known pixels along the gap edge a few pixels into the
            gap (`extendgan_geo.heal`), so the fill meets its surroundings without a step (gan shapes its own edge).
        coarse_to_fine: for method gan, fill windows whose reference is nearly as coarse as the top of the model's
            trained range or coarser (9x for the bundled 1-10x model) in two or three passes: first on a grid where
            it is about 6x coarser than a cell, then at full resolution with that fill as the reference
            (`extendgan_geo.fillers.gan.CASCADE_FROM`; docs/model.md).
        method: "auto" (the bundled or `model` generator when it fits the bands, else "match"), "match"
            (per-window radiometric matching), "gan" (the Extend-GAN generator), or the floor
            baselines "reference" (the warped reference as it is) and "fillnodata" (GDAL inverse-distance fill,
            no reference).
        model: path of a checkpoint for method "gan" (None = the bundled model).
        device: torch device for learned fillers.
        precision: arithmetic of learned fillers ("bf16" autocast is faster on CPUs with bf16 and on GPUs).
        compile: run learned fillers through `torch.compile` (a one-off compile per process and band count,
            cached on disk by torch; then about 1.3-1.6x faster per window on CPUs). Falls back to plain torch with a
            warning when compiling fails (no C++ compiler, an unsupported platform).
        match_min_known: share of known pixels in a window at which "match" trusts the window fit fully.
        tiles: window grid and blending.
    """

    indexes: tuple[int, ...] | None = None
    ref_indexes: tuple[int, ...] | None = None
    nodata: float | None = None
    ref_nodata: float | None = None
    mask_layer: str | None = None
    mask_buffer: int = 0
    resampling: ResamplingKind = "lanczos"
    coregister: bool = False
    heal: bool = True
    coarse_to_fine: bool = True
    method: MethodKind = "auto"
    model: str | None = None
    device: DeviceKind = "auto"
    precision: PrecisionKind = "fp32"
    compile: bool = False
    match_min_known: float = 0.05
    tiles: TileConfig = field(default_factory=TileConfig)

    def __post_init__(self) -> None:
        for name in ("indexes", "ref_indexes"):
            value = getattr(self, name)
            if value is not None and (not value or min(value) < 1):
                raise ConfigError(f"{name} must be 1-based band numbers, got {value}")
        if self.mask_buffer < 0:
            raise ConfigError(f"mask buffer must be >= 0 px, got {self.mask_buffer}")
        if self.resampling not in get_args(ResamplingKind):
            raise ConfigError(f"resampling must be one of {get_args(ResamplingKind)}, got {self.resampling!r}")
        if self.method not in get_args(MethodKind):
            raise ConfigError(f"method must be one of {get_args(MethodKind)}, got {self.method!r}")
        if self.device not in get_args(DeviceKind):
            raise ConfigError(f"device must be one of {get_args(DeviceKind)}, got {self.device!r}")
        if self.precision not in get_args(PrecisionKind):
            raise ConfigError(f"precision must be one of {get_args(PrecisionKind)}, got {self.precision!r}")
        if not 0.0 < self.match_min_known <= 1.0:
            raise ConfigError(f"match_min_known must be in (0, 1], got {self.match_min_known}")
