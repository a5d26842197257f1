"""sigma-VAE and learned-variance VAE bottlenecks."""

import pytest
import torch

from latentlm.sigma_vae import BottleneckConfig, expected_sigma, make_bottleneck


def test_sigma_kind_noise_is_one_scalar_per_example():
    b = make_bottleneck(BottleneckConfig(kind="sigma", latent_dim=8, sigma_scale=0.5)).train()
    mu = torch.randn(4096, 8, 16)  # [B, D, T]
    out = b(mu, generator=torch.Generator().manual_seed(0))
    noise = out.z - mu
    per_example_std = noise.std(dim=(1, 2))  # [B]
    # Within one example the noise is i.i.d. with a single sigma: its std estimates that sigma.
    assert per_example_std.std() > 0.1  # sigmas differ across examples
    assert per_example_std.mean().item() == pytest.approx(expected_sigma(0.5), rel=0.05)
    assert torch.allclose(out.losses["mean_penalty"], mu.pow(2).mean())
    b.eval()
    assert torch.equal(b(mu).z, mu)


def test_gaussian_kind_kl_and_channels():
    b = make_bottleneck(BottleneckConfig(kind="gaussian", latent_dim=4))
    assert b.in_channels == 8
    h = torch.zeros(2, 8, 5)  # mu = 0, logvar = 0 -> KL 0
    assert b(h).losses["kl"].item() == pytest.approx(0.0, abs=1e-7)
    h[:, :4] = 1.0  # mu = 1 -> KL = 0.5 per element
    assert b(h).losses["kl"].item() == pytest.approx(0.5, abs=1e-6)
    assert b.mean(h).shape == (2, 4, 5)
    with pytest.raises(ValueError, match="expects 8 channels"):
        b(torch.zeros(2, 4, 5))


def test_channel_last_layout_and_seeded():
    b = make_bottleneck(BottleneckConfig(latent_dim=3)).train()
    h = torch.randn(2, 7, 3)  # [B, T, D]
    z1 = b(h, channel_dim=-1, generator=torch.Generator().manual_seed(5)).z
    z2 = b(h, channel_dim=-1, generator=torch.Generator().manual_seed(5)).z
    assert torch.equal(z1, z2) and not torch.equal(z1, h)
