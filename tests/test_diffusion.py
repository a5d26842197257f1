"""Noise schedule, targets and samplers, checked against closed forms and exact (analytic) denoisers."""

from __future__ import annotations

import math

import pytest
import torch

from latentlm.diffusion import (
    DiffusionConfig,
    NoiseSchedule,
    cfg_combine,
    ddpm_ancestral,
    dpm_solver_pp_2m,
    solver_timesteps,
)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors: on the loaded 2-core box one thread ran this file ~20x faster than two (14 s vs 275 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


COSINE = NoiseSchedule(DiffusionConfig())


# ---- exact denoisers ----------------------------------------------------------------------------------------
def gaussian_denoiser(schedule: NoiseSchedule, mu: float, s: float):
    """E[x0 | x_t] for x0 ~ N(mu, s^2) per dimension."""

    def denoise(x, t):
        ac = schedule.alphas_cumprod[t].to(x)[:, None]  # [M, 1]
        a = ac.sqrt()
        return mu + a * s**2 / (ac * s**2 + 1 - ac) * (x - a * mu)

    return denoise


MODES = torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5]], dtype=torch.float64)  # [K, 2]
MODE_W = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
MODE_SD = 0.1


def gmm_denoiser(schedule: NoiseSchedule, weights: torch.Tensor = MODE_W):
    """Posterior mean of an isotropic 2-D Gaussian mixture: responsibilities times per-component posteriors."""

    def denoise(x, t):
        ac = schedule.alphas_cumprod[t].to(x)[:, None]  # [M, 1]
        a, var = ac.sqrt(), ac * MODE_SD**2 + 1 - ac  # marginal variance of each component at t
        diff = x[:, None, :] - a[:, None] * MODES[None]  # [M, K, 2]
        resp = (torch.log(weights)[None] - 0.5 * diff.square().sum(-1) / var).softmax(-1)  # [M, K]
        post = MODES[None] + (a * MODE_SD**2 / var)[:, None] * diff  # [M, K, 2]
        return (resp[..., None] * post).sum(1)

    return denoise


def gmm_draw(n: int, g: torch.Generator, weights: torch.Tensor = MODE_W) -> torch.Tensor:
    comp = torch.multinomial(weights, n, replacement=True, generator=g)
    return MODES[comp] + MODE_SD * torch.randn(n, 2, generator=g, dtype=torch.float64)


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def mode_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(proportion per mode [K], mean per-axis std within each mode [K], fraction within 4 sd of a mode)."""
    d = torch.cdist(x, MODES)  # [M, K]
    nearest = d.argmin(1)
    props = torch.stack([(nearest == k).double().mean() for k in range(len(MODES))])
    stds = torch.stack([x[nearest == k].std(0).mean() for k in range(len(MODES))])
    return props, stds, float((d.min(1).values < 4 * MODE_SD).double().mean())


# ---- schedule ------------------------------------------------------------------------------------------------
def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="num_train_steps"):
        DiffusionConfig(num_train_steps=1)
    with pytest.raises(ValueError, match="schedule"):
        DiffusionConfig(schedule="sigmoid")
    with pytest.raises(ValueError, match="prediction"):
        DiffusionConfig(prediction="x0")
    with pytest.raises(ValueError, match="batch_mul"):
        DiffusionConfig(batch_mul=0)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_alphas_cumprod_strictly_decreasing_in_unit_interval(kind):
    ac = NoiseSchedule(DiffusionConfig(schedule=kind)).alphas_cumprod
    assert ac.shape == (1000,) and ac.dtype == torch.float64
    assert bool((ac > 0).all()) and bool((ac < 1).all())
    assert bool((ac[1:] < ac[:-1]).all())


def test_cosine_schedule_matches_closed_form():
    # Unclipped, the product of (1 - beta) telescopes to f((t+1)/T) / f(0), f(u) = cos^2((u+s)/(1+s) pi/2).
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    for t in (0, 1, 249, 499, 749, 998):
        assert float(COSINE.alphas_cumprod[t]) == pytest.approx(f((t + 1) / 1000) / f(0), rel=1e-9)
    assert float(COSINE.alphas_cumprod[499]) == pytest.approx(0.4938, abs=1e-3)  # ~ half signal mid-way
    # The last beta would be 1 (alpha_bar(1) = 0) and is clipped to 0.999.
    assert float(COSINE.betas[-1]) == pytest.approx(0.999)
    assert float(COSINE.alphas_cumprod[-1]) == pytest.approx(0.001 * f(0.999) / f(0), rel=1e-9)


def test_linear_schedule_endpoints():
    sched = NoiseSchedule(DiffusionConfig(schedule="linear"))
    assert float(sched.betas[0]) == pytest.approx(1e-4) and float(sched.betas[-1]) == pytest.approx(0.02)
    assert float(sched.alphas_cumprod[0]) == pytest.approx(1 - 1e-4)


def test_continuous_helpers_consistent_and_interpolate():
    t = torch.arange(1000)
    a, s, lam = COSINE.alpha_t(t), COSINE.sigma_t(t), COSINE.lambda_t(t)
    torch.testing.assert_close(a.square() + s.square(), torch.ones(1000, dtype=torch.float64))
    torch.testing.assert_close(a.square(), COSINE.alphas_cumprod)
    torch.testing.assert_close(lam, torch.log(a / s))
    assert bool((lam[1:] < lam[:-1]).all())
    mid = float(COSINE.lambda_t(499.5))
    assert float(lam[500]) < mid < float(lam[499])
    assert float(COSINE.alpha_t(499.5)) ** 2 == pytest.approx(
        math.sqrt(float(COSINE.alphas_cumprod[499] * COSINE.alphas_cumprod[500])), rel=1e-12
    )  # log(alpha_bar) is interpolated linearly
    with pytest.raises(ValueError, match="t must lie"):
        COSINE.lambda_t(1000)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_q_sample_target_round_trip(prediction):
    sched = NoiseSchedule(DiffusionConfig(prediction=prediction))
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 16, generator=g, dtype=torch.float64)
    noise = torch.randn(64, 16, generator=g, dtype=torch.float64)
    t = torch.cat([torch.tensor([0, 999]), torch.randint(0, 1000, (62,), generator=g)])
    x_t = sched.q_sample(x0, t, noise)
    a, s = sched.alpha_t(t)[:, None], sched.sigma_t(t)[:, None]
    torch.testing.assert_close(x_t, a * x0 + s * noise)
    out = sched.target(x0, noise, t)
    torch.testing.assert_close(out, noise if prediction == "eps" else a * noise - s * x0)
    x0_hat, eps_hat = sched.to_x0_eps(out, x_t, t)
    # eps-prediction divides by alpha_{999} ~ 5e-5 at the last step, hence the looser float64 tolerance there.
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-9)
    torch.testing.assert_close(eps_hat, noise, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="integer"):
        sched.q_sample(x0, t.double(), noise)


def test_v_round_trip_in_float32():
    sched = NoiseSchedule(DiffusionConfig(prediction="v"))
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(2, 256, 8, generator=g)
    t = torch.randint(0, 1000, (256,), generator=g)
    x0_hat, eps_hat = sched.to_x0_eps(sched.target(x0, noise, t), sched.q_sample(x0, t, noise), t)
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-5)
    torch.testing.assert_close(eps_hat, noise, rtol=0, atol=1e-5)


@pytest.mark.parametrize("spacing", ["quadratic", "time", "logsnr"])
@pytest.mark.parametrize("steps", [2, 5, 10, 20, 100, 1000])
def test_solver_timesteps_are_distinct_and_span_the_schedule(spacing, steps):
    ts = solver_timesteps(COSINE, steps, spacing)
    assert len(ts) == steps and ts[0] == 999 and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:]))


def test_solver_timesteps_rejects_bad_requests():
    with pytest.raises(ValueError, match="steps"):
        solver_timesteps(COSINE, 0)
    with pytest.raises(ValueError, match="exceed"):
        solver_timesteps(COSINE, 1001)
    with pytest.raises(ValueError, match="spacing"):
        solver_timesteps(COSINE, 10, "karras")


# ---- classifier-free guidance ----------------------------------------------------------------------------
def test_cfg_combine_and_equivalence_across_parameterisations():
    g = torch.Generator().manual_seed(2)
    c, u, x_t = torch.randn(3, 32, 4, generator=g, dtype=torch.float64)
    assert cfg_combine(c, u, 1.0) is c
    torch.testing.assert_close(cfg_combine(c, u, 0.0), u)
    torch.testing.assert_close(cfg_combine(c, u, 2.5), u + 2.5 * (c - u))
    # Guiding v and converting equals converting and guiding x0 (affine map, weights sum to one).
    t = torch.randint(0, 1000, (32,), generator=g)
    sched = NoiseSchedule(DiffusionConfig(prediction="v"))
    guided_then_x0 = sched.to_x0_eps(cfg_combine(c, u, 3.0), x_t, t)[0]
    x0_then_guided = cfg_combine(sched.to_x0_eps(c, x_t, t)[0], sched.to_x0_eps(u, x_t, t)[0], 3.0)
    torch.testing.assert_close(guided_then_x0, x0_then_guided)


# ---- samplers with exact denoisers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "spacing, steps, tol",
    [("quadratic", 10, 0.08), ("quadratic", 20, 0.03), ("time", 20, 0.15), ("logsnr", 20, 0.08)],
)
@pytest.mark.parametrize("mu, s", [(0.7, 0.5), (-0.3, 1.0)])
def test_dpm_solver_gaussian_mean_and_std(spacing, steps, tol, mu, s):
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(20000, 1, generator=g, dtype=torch.float64)
    x = dpm_solver_pp_2m(gaussian_denoiser(COSINE, mu, s), x_T, COSINE, steps, spacing)
    assert float(x.mean()) == pytest.approx(mu, abs=0.03)
    assert float(x.std()) / s == pytest.approx(1.0, abs=tol)


def test_dpm_solver_converges_to_the_exact_ode_solution():
    """Many steps: the deterministic Gaussian flow maps x_T to mu + s * x_T (VP marginals stay Gaussian)."""
    g = torch.Generator().manual_seed(4)
    x_T = torch.randn(1000, 1, generator=g, dtype=torch.float64)
    x = dpm_solver_pp_2m(gaussian_denoiser(COSINE, 0.7, 0.5), x_T, COSINE, 500, "time")
    exact = 0.7 + 0.5 * x_T  # alpha_{999} mu is negligible (5e-5)
    assert float((x - exact).abs().max()) < 2e-3


def test_ddpm_ancestral_gaussian_mean_and_std():
    g = torch.Generator().manual_seed(5)
    x_T = torch.randn(8000, 1, generator=g, dtype=torch.float64)
    x = ddpm_ancestral(gaussian_denoiser(COSINE, 0.7, 0.5), x_T, COSINE, g)
    assert float(x.mean()) == pytest.approx(0.7, abs=0.02)
    assert float(x.std()) == pytest.approx(0.5, rel=0.03)
    cold = ddpm_ancestral(gaussian_denoiser(COSINE, 0.7, 0.5), x_T, COSINE, g, steps=100, temperature=0.5)
    assert float(cold.std()) < 0.8 * float(x.std())  # temperature shrinks the injected noise


def test_ddpm_ancestral_is_reproducible_with_a_generator():
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    den = gmm_denoiser(COSINE)
    a = ddpm_ancestral(den, x_T, COSINE, torch.Generator().manual_seed(7), steps=50)
    b = ddpm_ancestral(den, x_T, COSINE, torch.Generator().manual_seed(7), steps=50)
    c = ddpm_ancestral(den, x_T, COSINE, torch.Generator().manual_seed(8), steps=50)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.fixture(scope="module")
def gmm_reference():
    """Exact mixture draws, shared x_T, and the 1000-step ancestral DDPM reference samples (computed once)."""
    g = torch.Generator().manual_seed(6)
    n = 3000
    truth = gmm_draw(n, g)
    x_T = torch.randn(n, 2, generator=g, dtype=torch.float64)
    ddpm = ddpm_ancestral(gmm_denoiser(COSINE), x_T, COSINE, g)
    return truth, x_T, ddpm, g


def check_gmm_samples(x: torch.Tensor, truth: torch.Tensor, prop_tol: float = 0.03, ed_tol: float = 0.006):
    props, stds, on_mode = mode_stats(x)
    torch.testing.assert_close(props, MODE_W, rtol=0, atol=prop_tol)
    torch.testing.assert_close(stds, torch.full_like(stds, MODE_SD), rtol=0, atol=0.025)  # not collapsed
    assert on_mode > 0.95
    assert energy_distance(x, truth) < ed_tol


def test_gmm_ddpm_reference_matches_the_mixture(gmm_reference):
    truth, _, ddpm, g = gmm_reference
    check_gmm_samples(ddpm, truth)
    # The threshold is discriminative: wrong mode weights (0.5/0.4/0.1) are clearly farther away.
    wrong = gmm_draw(len(truth), g, torch.tensor([0.5, 0.4, 0.1], dtype=torch.float64))
    assert energy_distance(wrong, truth) > 0.012


# Uniform-in-time spacing at 10 steps smears the small mode (within-mode std 0.23 instead of 0.1): not listed.
@pytest.mark.parametrize(
    "spacing, steps, prop_tol, ed_tol",
    [("quadratic", 10, 0.045, 0.01), ("quadratic", 20, 0.03, 0.006), ("time", 20, 0.03, 0.006)],
)
def test_gmm_dpm_solver_agrees_with_ddpm_in_distribution(gmm_reference, spacing, steps, prop_tol, ed_tol):
    """2-D mixture with narrow modes: DPM-Solver++ recovers weights and widths and matches DDPM-1000."""
    truth, x_T, ddpm, _ = gmm_reference
    dpm = dpm_solver_pp_2m(gmm_denoiser(COSINE), x_T, COSINE, steps, spacing)
    check_gmm_samples(dpm, truth, prop_tol, ed_tol)
    assert energy_distance(dpm, ddpm) < ed_tol


def test_training_timesteps_uniform_and_logit_normal():
    """Uniform draws are torch.randint's (what the head always drew: old runs resume bit for bit); logit-normal
    draws put ~73% of the mass in the middle half of [0, T) (P(|z| < logit 0.75) for std 1), uniform 50%."""
    from latentlm.diffusion import DiffusionConfig, training_timesteps

    n, T = 200_000, 1000
    uni = training_timesteps(DiffusionConfig(), n, torch.Generator().manual_seed(3))
    assert torch.equal(uni, torch.randint(0, T, (n,), generator=torch.Generator().manual_seed(3)))
    ln = training_timesteps(DiffusionConfig(t_sampling="logit_normal"), n, torch.Generator().manual_seed(3))
    assert ln.dtype == torch.long and int(ln.min()) >= 0 and int(ln.max()) <= T - 1
    mid = lambda t: ((t >= T // 4) & (t < 3 * T // 4)).float().mean().item()  # noqa: E731
    assert abs(mid(uni) - 0.5) < 0.01 and abs(mid(ln) - 0.728) < 0.01
    shifted = training_timesteps(DiffusionConfig(t_sampling="logit_normal", t_logit_mean=1.0), n)
    assert shifted.float().mean() > ln.float().mean() + 100  # a positive mean leans to the noisy end
    with pytest.raises(ValueError, match="t_sampling"):
        DiffusionConfig(t_sampling="beta")
    with pytest.raises(ValueError, match="t_logit_std"):
        DiffusionConfig(t_sampling="logit_normal", t_logit_std=0.0)
