"""The shipped training settings parse and describe the bundled model's network."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from extendgan_geo.training.config import build_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))
META = json.loads((ROOT / "extendgan_geo" / "weights" / "default.json").read_text())


def test_configs_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert {
        "default.toml",
        "default_finetune.toml",
        "default_gpu.toml",
        "default_gpu_b.toml",
        "default_gpu_c.toml",
        "default_gpu_d.toml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_builds_the_bundled_network(path: Path) -> None:
    cfg = build_config("small", str(path), {})
    generator = META["generator"]
    assert cfg.width == generator["width"]
    assert bool(cfg.bandwise) == generator["bandwise"]
    assert cfg.residual == generator["residual"]
    assert cfg.larn == generator["larn"]
    assert cfg.scale_input == generator.get("scale_input", False)
    assert tuple(cfg.factor) == tuple(META["scale_range"])
    # Every stage trains and validates on files of the corpus, never a validation file in training.
    assert cfg.hr and cfg.val_hr
    assert not set(cfg.hr) & set(cfg.val_hr)


def test_last_stage_is_the_bundled_run() -> None:
    """The bundled model's recorded settings are those of configs/default_gpu_d.toml (its last stage)."""
    cfg = dataclasses.asdict(build_config("small", str(ROOT / "configs" / "default_gpu_d.toml"), {}))
    recorded = META["config"]
    for key in ("init", "out", "crop", "batch_size", "lr_g", "epochs", "samples_per_epoch", "resampling", "seed"):
        assert recorded[key] == cfg[key], key
    assert META["resampling"] == cfg["resampling"]
    assert [Path(p).name for p in cfg["hr"]] == META["training_data"]
