"""Checkpoints: weights in safetensors with the JSON metadata embedded in its header (never pickles).

The metadata (`format`, architecture config, bands and names, dtype, scaling statistics, tile size, reference
resampling and input mode, scale range, training data list, validation metrics, package version) describes the
model fully, so filling rebuilds the generator from the file alone. A readable copy is written next to it as
`<name>.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from extendgan_geo import __version__
from extendgan_geo.errors import CheckpointError
from extendgan_geo.model.generator import Generator, GeneratorConfig

FORMAT = "extendgan-geo/1"


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """Write `tensors` and `meta` atomically; return the sha256 of the file.

    Args:
        path: destination `.safetensors` path.
        tensors: name -> tensor (e.g. `{"generator." + k: v}` of a state dict).
        meta: JSON-serialisable metadata; `format` and `version` are added.
    """
    path = os.fspath(path)
    meta = {**meta, "format": FORMAT, "version": meta.get("version", __version__)}
    tmp = f"{path}.partial"
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
        tmp,
        metadata={"egan": json.dumps(meta)},
    )
    os.replace(tmp, path)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    return file_sha256(path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors and metadata.

    Raises:
        CheckpointError: missing file, not safetensors, no or wrong metadata.
    """
    path = os.fspath(path)
    meta = read_metadata(path)
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"model {path!r} is not a safetensors file ({exc}); expected a checkpoint") from exc
    return tensors, meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without loading its tensors.

    Raises:
        CheckpointError: missing file, not safetensors, no or wrong metadata.
    """
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"model {path!r} does not exist; expected an extendgan-geo .safetensors checkpoint")
    try:
        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"model {path!r} is not a safetensors file ({exc}); expected a checkpoint") from exc
    try:
        meta = json.loads(header["egan"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"model {path!r} has no extendgan-geo metadata; expected a file written by `egan-fill train`"
        ) from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"model {path!r} has format {meta.get('format')!r}; expected {FORMAT!r}")
    return dict(meta)


def load_generator(path: str | os.PathLike[str]) -> tuple[Generator, dict[str, Any]]:
    """Rebuild the generator of a checkpoint, in eval mode.

    Raises:
        CheckpointError: unreadable file or weights that do not fit the stored architecture.
    """
    tensors, meta = read_checkpoint(path)
    generator = Generator(GeneratorConfig.from_dict(meta["generator"]))
    try:
        generator.load_state_dict(module_state("generator", tensors))
    except RuntimeError as exc:
        raise CheckpointError(f"model {path!r}: weights do not fit its architecture ({exc})") from exc
    generator.eval()
    return generator, meta


def state_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """`{prefix.name: tensor}` for every parameter and buffer of `module`."""
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def module_state(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict of one module from checkpoint tensors: the inverse of `state_tensors`."""
    return {k.removeprefix(prefix + "."): v for k, v in tensors.items() if k.startswith(prefix + ".")}
