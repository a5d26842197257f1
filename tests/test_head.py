"""DiffusionHead: AdaLN-Zero init, masked loss, reproducible sampling, and a trained head's distributions + CFG."""

from __future__ import annotations

import pytest
import torch

from latentlm.config import from_dict, load_config, to_dict
from latentlm.diffusion import DiffusionConfig
from latentlm.head import DiffusionHead, HeadConfig


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors: on the loaded 2-core box one thread ran this file ~20x faster than two (14 s vs 275 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_head(prediction: str = "v", seed: int = 0) -> DiffusionHead:
    torch.manual_seed(seed)
    cfg = HeadConfig(
        latent_dim=4, cond_dim=12, width=32, depth=2, diffusion=DiffusionConfig(prediction=prediction)
    )
    return DiffusionHead(cfg)


def randomized_head(seed: int = 0) -> DiffusionHead:
    """A head whose zero-initialised layers are filled with noise, so cond, t and x_t all shape the output."""
    head = small_head(seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return head


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- construction and shapes -----------------------------------------------------------------------------
def test_config_validation_and_hidden_width():
    with pytest.raises(ValueError, match="latent_dim"):
        HeadConfig(latent_dim=0)
    with pytest.raises(ValueError, match="depth"):
        HeadConfig(depth=-1)
    assert HeadConfig(width=256, mlp_ratio=4.0).hidden == 680  # 256 * 4 * 2/3 = 682.7 -> multiple of 8


def test_config_round_trips_through_the_loader():
    cfg = load_config(HeadConfig, None, ["diffusion.prediction=eps", "width=64"])
    assert cfg.width == 64 and cfg.diffusion.prediction == "eps"
    assert from_dict(HeadConfig, to_dict(cfg)) == cfg


def test_forward_checks_shapes():
    head = small_head()
    x, c, t = randn(5, 4), randn(5, 12), torch.zeros(5, dtype=torch.long)
    assert head(x, t, c).shape == (5, 4)
    with pytest.raises(ValueError, match="x_t"):
        head(randn(5, 3), t, c)
    with pytest.raises(ValueError, match="cond"):
        head(x, t, randn(4, 12))
    with pytest.raises(ValueError, match="integer tensor"):
        head(x, t.float(), c)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_adaln_zero_initial_output_is_exactly_zero_then_learns(prediction):
    head = small_head(prediction)
    x, c = randn(64, 4, seed=1), randn(64, 12, seed=2)
    t = torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(head(x, t, c), torch.zeros(64, 4))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    head.loss(x, c, generator=torch.Generator().manual_seed(4)).backward()
    opt.step()
    assert head(x, t, c).abs().max() > 0  # not a dead network: the zero output layer received a gradient


# ---- loss ----------------------------------------------------------------------------------------------
def test_loss_ignores_masked_rows_even_when_they_hold_nan():
    head = randomized_head()  # non-zero everywhere, so every parameter receives a gradient
    target, cond = randn(10, 4, seed=5), randn(10, 12, seed=6)
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    poisoned_t, poisoned_c = target.clone(), cond.clone()
    poisoned_t[~mask], poisoned_c[~mask] = float("nan"), 1e6

    def loss_and_grads(tgt, c, m):
        head.zero_grad()
        loss = head.loss(tgt, c, m, generator=torch.Generator().manual_seed(7))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in head.parameters()]

    ref_loss, ref_grads = loss_and_grads(target[mask], cond[mask], None)
    loss, grads = loss_and_grads(poisoned_t, poisoned_c, mask)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)
    # Float 0/1 weights select the same rows; constant weights equal the unweighted mean.
    float_loss, _ = loss_and_grads(poisoned_t, poisoned_c, mask.float())
    torch.testing.assert_close(float_loss, ref_loss, rtol=1e-6, atol=0)
    const_loss, _ = loss_and_grads(target, cond, torch.full((10,), 2.5))
    plain_loss, _ = loss_and_grads(target, cond, None)
    torch.testing.assert_close(const_loss, plain_loss)
    # A kept row does matter.
    moved = target.clone()
    moved[0] += 3.0
    assert abs(loss_and_grads(moved, cond, mask)[0] - ref_loss) > 1e-3


def test_loss_with_everything_masked_is_zero_and_backpropagates():
    head = small_head()
    loss = head.loss(randn(6, 4), randn(6, 12), torch.zeros(6), generator=torch.Generator().manual_seed(0))
    assert loss.item() == 0.0
    loss.backward()


def test_loss_rejects_bad_inputs():
    head = small_head()
    with pytest.raises(ValueError, match="mask"):
        head.loss(randn(6, 4), randn(6, 12), torch.ones(5))
    with pytest.raises(ValueError, match=">= 0"):
        head.loss(randn(6, 4), randn(6, 12), -torch.ones(6))
    with pytest.raises(ValueError, match="cond"):
        head.loss(randn(6, 4), randn(6, 11))


def test_batch_mul_averages_independent_noise_draws():
    """4 draws per row: same expected loss as 1 draw, about half the spread across generator seeds."""

    def losses(batch_mul):
        head = randomized_head()
        head.cfg.diffusion.batch_mul = batch_mul
        target, cond = randn(16, 4, seed=1), randn(16, 12, seed=2)
        with torch.no_grad():
            return torch.stack(
                [head.loss(target, cond, generator=torch.Generator().manual_seed(s)) for s in range(150)]
            )

    one, four = losses(1), losses(4)
    assert abs(one.mean() - four.mean()) < 3 * one.std() / 150**0.5
    assert one.std() / four.std() > 1.5  # sqrt(4) = 2 for independent draws


def test_loss_decreases_on_a_fixed_evaluation_draw():
    """Targets are a fixed linear function of the condition; held-out loss on fixed noise must drop a lot."""
    head = small_head()
    proj = randn(12, 4, seed=8) / 12**0.5
    cond_eval = randn(256, 12, seed=9)

    def eval_loss():
        with torch.no_grad():
            return head.loss(cond_eval @ proj, cond_eval, generator=torch.Generator().manual_seed(10)).item()

    before = eval_loss()
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(11)
    for _ in range(150):
        cond = torch.randn(128, 12, generator=g)
        loss = head.loss(cond @ proj, cond, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.7 * before


# ---- sampling -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["dpm++2m", "ddpm"])
def test_sampling_is_reproducible_per_generator(solver):
    head = randomized_head()
    cond, uncond = randn(8, 12, seed=1), randn(8, 12, seed=2)

    def draw(seed, **kw):
        return head.sample(cond, steps=8, solver=solver, generator=torch.Generator().manual_seed(seed), **kw)

    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (8, 4) and torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(draw(0, cfg=2.0, uncond=uncond), draw(0, cfg=2.0, uncond=uncond))
    assert not torch.allclose(draw(0, cfg=2.0, uncond=uncond), a)


def test_temperature_zero_makes_the_ode_sampler_deterministic():
    head = randomized_head()
    cond = randn(8, 12, seed=1)
    a = head.sample(cond, temperature=0.0, generator=torch.Generator().manual_seed(0))
    b = head.sample(cond, temperature=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_sample_rejects_bad_arguments():
    head = small_head()
    cond = randn(8, 12)
    with pytest.raises(ValueError, match="uncond"):
        head.sample(cond, cfg=1.5)
    with pytest.raises(ValueError, match="uncond"):
        head.sample(cond, cfg=1.5, uncond=randn(7, 12))
    with pytest.raises(ValueError, match="temperature"):
        head.sample(cond, temperature=-1.0)
    with pytest.raises(ValueError, match="solver"):
        head.sample(cond, solver="euler")


# ---- a trained head: distributions, not means; classifier-free guidance -----------------------------------
SD = 0.12
MODES = torch.tensor([[-1.2, -0.5], [0.0, -0.5], [1.2, -0.5], [0.0, 0.9]])  # L, S (shared), R1, R2
CLASS_W = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 1 / 3, 1 / 3, 1 / 3]])  # class 0: L/S, class 1: S/R1/R2
COND_DIM = 16


def draw_mixture(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 2, (n,), generator=g)
    comp = torch.multinomial(CLASS_W[y], 1, generator=g).squeeze(1)  # [n]
    return MODES[comp] + SD * torch.randn(n, 2, generator=g), y


def mode_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(proportion per mode [4], per-axis std within each mode (nan if < 20 samples) [4], on-mode fraction)."""
    d = torch.cdist(x, MODES)  # [M, 4]
    nearest = d.argmin(1)
    props = torch.stack([(nearest == k).float().mean() for k in range(4)])
    stds = torch.stack(
        [
            x[nearest == k].std(0).mean() if (nearest == k).sum() >= 20 else torch.tensor(float("nan"))
            for k in range(4)
        ]
    )
    return props, stds, float((d.min(1).values < 3 * SD).float().mean())


@pytest.fixture(scope="module")
def trained():
    """Train a small head for 400 steps (a few seconds) with condition dropout 0.1 to a null vector."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(3, COND_DIM, generator=g)  # class 0, class 1, null
    torch.manual_seed(0)
    cfg = HeadConfig(
        latent_dim=2, cond_dim=COND_DIM, width=64, depth=2, diffusion=DiffusionConfig(batch_mul=4)
    )
    head = DiffusionHead(cfg)
    steps = 400
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    losses = []
    for _ in range(steps):
        x, y = draw_mixture(256, g)
        drop = torch.rand(256, generator=g) < 0.1
        loss = head.loss(x, emb[torch.where(drop, 2, y)], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return head.eval(), emb, losses


@pytest.mark.slow
def test_trained_head_loss_went_down(trained):
    _, _, losses = trained
    first, last = sum(losses[:20]) / 20, sum(losses[-50:]) / 50
    assert last < 0.7 * first


@pytest.mark.slow
@pytest.mark.parametrize("solver, steps, n, tol", [("dpm++2m", 10, 2000, 0.06), ("ddpm", 100, 600, 0.1)])
def test_trained_head_covers_every_mode_in_proportion(trained, solver, steps, n, tol):
    head, emb, _ = trained
    for k in range(2):
        x = head.sample(
            emb[k].expand(n, COND_DIM), steps=steps, solver=solver, generator=torch.Generator().manual_seed(k)
        )
        props, stds, on_mode = mode_stats(x)
        torch.testing.assert_close(props, CLASS_W[k], rtol=0, atol=tol)
        assert on_mode > 0.9
        used = CLASS_W[k] > 0
        assert bool((stds[used] > 0.6 * SD).all()) and bool((stds[used] < 1.6 * SD).all()), (
            stds
        )  # not collapsed


@pytest.mark.slow
def test_classifier_free_guidance_strengthens_the_condition(trained):
    """Mode S is shared by both classes, so p(class | x) is ambiguous there. Guided sampling follows
    p(x|c)^s p(x)^(1-s): with s = 3, class 0 should leave S for its own mode L (0.7 -> ~0.9 analytically),
    and class 1 should leave S for R1/R2 (1/3 -> ~0.1)."""
    head, emb, _ = trained
    n = 2000
    uncond = emb[2].expand(n, COND_DIM)
    props = {}
    for k in range(2):
        for scale in (1.0, 3.0):
            x = head.sample(
                emb[k].expand(n, COND_DIM),
                cfg=scale,
                uncond=uncond,
                generator=torch.Generator().manual_seed(5),
            )
            props[k, scale] = mode_stats(x)[0]
    assert props[0, 3.0][0] > props[0, 1.0][0] + 0.15  # class 0 lands on its own mode L more often
    assert props[1, 3.0][1] < props[1, 1.0][1] - 0.15  # class 1 avoids the shared mode S
    assert props[0, 3.0][2:].sum() < 0.02 and props[1, 3.0][0] < 0.02  # and never crosses to the other class


def test_logit_normal_timesteps_train_the_head():
    """The head's loss runs with logit-normal timesteps, differs from the uniform draw, and gives gradients."""
    from latentlm.diffusion import DiffusionConfig
    from latentlm.head import DiffusionHead, HeadConfig

    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(6, 4, generator=g), torch.randn(6, 8, generator=g)
    losses = {}
    for mode in ("uniform", "logit_normal"):
        torch.manual_seed(0)
        head = DiffusionHead(
            HeadConfig(
                latent_dim=4, cond_dim=8, width=16, depth=2, diffusion=DiffusionConfig(t_sampling=mode)
            )
        )
        loss = head.loss(x, c, generator=torch.Generator().manual_seed(1))
        loss.backward()
        assert torch.isfinite(loss) and head.out.weight.grad is not None
        losses[mode] = loss.item()
    assert losses["uniform"] != losses["logit_normal"]
