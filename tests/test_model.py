"""The Extend-GAN model: shapes, LARN (eq. 5-8), losses, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extendgan_geo.errors import CheckpointError
from extendgan_geo.model import losses
from extendgan_geo.model.checkpoint import load_generator, read_checkpoint, save_checkpoint, state_tensors
from extendgan_geo.model.discriminator import Discriminator
from extendgan_geo.model.generator import Generator, GeneratorConfig
from extendgan_geo.model.layers import LARN


@pytest.mark.parametrize("bands", [1, 3, 4])
@pytest.mark.parametrize(("h", "w"), [(64, 64), (37, 50), (68, 92)])
def test_generator_shapes(bands, h, w):
    g = Generator(GeneratorConfig(bands=bands, ref_bands=bands, width=4))
    out = g(torch.randn(2, bands, h, w), torch.randn(2, bands, h, w), torch.zeros(2, 1, h, w))
    assert out.shape == (2, bands, h, w)
    assert torch.isfinite(out).all()


def test_generator_ref_bands_may_differ():
    g = Generator(GeneratorConfig(bands=4, ref_bands=7, width=4))
    assert g(torch.randn(1, 4, 32, 32), torch.randn(1, 7, 32, 32), torch.ones(1, 1, 32, 32)).shape == (
        1,
        4,
        32,
        32,
    )


def test_paper_preset_parameter_count():
    g = Generator(GeneratorConfig(bands=3, ref_bands=3, width=32))
    d = Discriminator(3, 3, width=64)
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    assert n_g == 3_464_371  # the authors' generator, layer for layer
    assert n_d == 7_000_704 - 256 * 256 * (16 - 9)  # their 4x4 head is a 3x3 head here (any crop size)


@pytest.mark.parametrize("size", [64, 96, 128, 256])
def test_discriminator_any_crop_size(size):
    d = Discriminator(4, 4, width=8)
    assert d(torch.randn(2, 4, size, size), torch.zeros(2, 1, size, size), torch.randn(2, 4, size, size)).shape == (2,)


def test_larn_matches_hand_computed_example():
    # One channel, four pixels; m = 1 marks the missing region.
    x = torch.tensor([1.0, 3.0, 10.0, 20.0]).view(1, 1, 2, 2)
    m = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 1, 2, 2)
    larn = LARN(1, eps=0.0)
    y = larn(x, m)
    # Known region {1, 3}: mean 2, std 1. Missing region {10, 20}: mean 15, std 5.
    # Eq. 6: x~ = 1 * 1 * (x - 15) / 5 + 1 * 2 -> {1, 3}; eq. 5 keeps the known pixels.
    torch.testing.assert_close(y.view(-1), torch.tensor([1.0, 3.0, 1.0, 3.0]))


def test_larn_soft_mask_and_learnable_parameters():
    x = torch.tensor([2.0, 4.0, 6.0, 8.0]).view(1, 1, 2, 2)
    m = torch.tensor([0.0, 0.0, 1.0, 0.5]).view(1, 1, 2, 2)
    larn = LARN(1, eps=0.0)
    with torch.no_grad():
        larn.gamma.fill_(2.0)
        larn.beta.fill_(0.5)
    y = larn(x, m).view(-1)
    w_p, w_q = m.view(-1), 1 - m.view(-1)
    v = x.view(-1)
    mu_p = (v * w_p).sum() / w_p.sum()
    mu_q = (v * w_q).sum() / w_q.sum()
    sd_p = torch.sqrt((w_p * (v - mu_p) ** 2).sum() / w_p.sum())
    sd_q = torch.sqrt((w_q * (v - mu_q) ** 2).sum() / w_q.sum())
    moved = 2.0 * sd_q * (v - mu_p) / sd_p + 0.5 * mu_q
    torch.testing.assert_close(y, w_q * v + w_p * moved)


def test_larn_switch_off():
    g = Generator(GeneratorConfig(bands=3, ref_bands=3, width=4, larn=False))
    assert not any("larn" in name for name, _ in g.named_parameters())


def test_triplet_loss_zero_when_margin_met_positive_otherwise():
    torch.manual_seed(0)
    truth = torch.rand(2, 3, 48, 48) * 2 - 1
    ref = torch.nn.functional.avg_pool2d(truth, 8).repeat_interleave(8, -1).repeat_interleave(8, -2)
    gap = torch.zeros(2, 1, 48, 48)
    gap[..., 24:] = 1
    assert losses.triplet_ssim(truth, truth, ref, gap, margin=0.1).item() == 0.0
    assert losses.triplet_ssim(ref, truth, ref, gap, margin=0.1).item() > 0.1


def test_hinge_losses():
    assert losses.d_hinge(torch.tensor([2.0]), torch.tensor([-2.0])).item() == 0.0
    assert losses.d_hinge(torch.tensor([0.0]), torch.tensor([0.0])).item() == 2.0
    assert losses.g_hinge(torch.tensor([1.0, 3.0])).item() == -2.0
    assert losses.g_hinge(torch.tensor([-1.0, 3.0])).item() == -1.5  # eq. 4 as printed: ReLU inside
    assert losses.g_hinge(torch.tensor([-1.0, 3.0]), relu=False).item() == -1.0


def test_ssim_identical_is_one():
    x = torch.rand(1, 2, 32, 32)
    assert torch.allclose(losses.ssim_map(x, x, data_range=1.0), torch.ones(1))


def test_checkpoint_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(1)
    cfg = GeneratorConfig(bands=3, ref_bands=3, width=4, residual=True)
    g = Generator(cfg).eval()
    meta = {"generator": cfg.__dict__ | {}, "scaling": {"hr": {"low": [0, 0, 0], "high": [1, 1, 1]}}}
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, state_tensors("generator", g), meta)
    g2, meta2 = load_generator(path)
    x = torch.randn(1, 3, 40, 40)
    gap = torch.ones(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(g(x, x, gap), g2(x, x, gap))
    assert meta2["generator"]["residual"] is True
    assert (tmp_path / "m.json").exists()


def test_checkpoint_refuses_foreign_files(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        read_checkpoint(bad)
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "y.safetensors"))
    with pytest.raises(CheckpointError, match="no extendgan-geo metadata"):
        read_checkpoint(tmp_path / "y.safetensors")


def test_scaling_round_trip():
    from extendgan_geo.scaling import BandScaling

    s = BandScaling((100.0, 0.0), (300.0, 50.0))
    x = np.array([[100.0, 200.0, 300.0], [0.0, 25.0, 50.0]])
    np.testing.assert_allclose(s.to_model(x), [[-1, 0, 1], [-1, 0, 1]])
    np.testing.assert_allclose(s.from_model(s.to_model(x)), x, rtol=1e-6)


@pytest.mark.parametrize("bandwise", [False, True])
def test_inference_in_place_gating_equals_the_autograd_path(bandwise):
    torch.manual_seed(0)
    cfg = (
        GeneratorConfig(bands=1, ref_bands=1, width=6, bandwise=True, residual=True)
        if bandwise
        else GeneratorConfig(bands=3, ref_bands=3, width=6)
    )
    g = Generator(cfg).eval()
    with torch.no_grad():
        for p in g.parameters():  # LARN's gamma and beta away from their init
            p.add_(0.05 * torch.randn_like(p))
    hr, ref = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    gap = torch.zeros(2, 1, 64, 64)
    gap[0, :, 20:50, 10:40] = 1
    gap[1, :, :, 32:] = 1
    with torch.enable_grad():
        slow = g(hr, ref, gap)
    with torch.inference_mode():
        fast = g(hr, ref, gap)
    assert slow.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bandwise", [True, False])
def test_scale_input_widened_from_a_plain_generator_keeps_its_output(bandwise):
    from extendgan_geo.model.generator import with_scale_input

    bands = 1 if bandwise else 3
    kw = {"bands": bands, "ref_bands": bands, "width": 4, "residual": True, "bandwise": bandwise}
    torch.manual_seed(0)
    plain = Generator(GeneratorConfig(**kw)).eval()
    scaled = Generator(GeneratorConfig(**kw, scale_input=True)).eval()
    scaled.load_state_dict(with_scale_input(plain.state_dict()))
    hr, ref = torch.randn(2, 3, 36, 40), torch.randn(2, 3, 36, 40)
    gap = torch.zeros(2, 1, 36, 40)
    gap[..., 10:30, 8:30] = 1
    with torch.no_grad():
        base = plain(hr, ref, gap)
        for factor in (1.0, 3.0, 10.0):
            torch.testing.assert_close(scaled(hr, ref, gap, torch.full((2,), factor)), base)
        with pytest.raises(ValueError, match="scale factor"):
            scaled(hr, ref, gap)
        scaled.enc1.feature.weight[:, -1].fill_(0.5)  # once trained, the factor changes the prediction
        near, far = scaled(hr, ref, gap, torch.full((2,), 2.0)), scaled(hr, ref, gap, torch.full((2, 1, 1, 1), 8.0))
    assert not torch.allclose(near, far)
