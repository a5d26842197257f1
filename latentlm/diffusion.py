"""Next-token diffusion: noise schedule, training targets, samplers and classifier-free guidance.

Pure functions over tensors; the network lives in ``latentlm/head.py``. Conventions (DDPM, Ho et al. 2020):

- Discrete training time t in {0, ..., T-1} (T = ``num_train_steps``); ``alphas_cumprod[t]`` = alpha_bar_t.
  x_t = alpha_t * x0 + sigma_t * eps with alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t).
- ``cosine`` schedule: Nichol & Dhariwal 2021, alpha_bar(u) = cos^2((u + s) / (1 + s) * pi / 2), s = 0.008,
  beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), 0.999).
  ``linear``: betas linspace(1e-4, 0.02) * 1000/T.
- Predictions: ``eps`` (the noise) or ``v`` = alpha_t * eps - sigma_t * x0 (Salimans & Ho 2022).
  With the cosine schedule the last step has alpha_{T-1} ~ 5e-5, so an eps-model's x0 estimate there is
  amplified ~2e4x. Measured on a toy 2-D conditional mixture: the v head samples correctly, the same head
  trained with eps samples garbage (std ~400) with both samplers; clamping x0 to +-3 rescues 100-step DDPM
  but not 10-step DPM-Solver++. Use v-prediction (the default, as in VibeVoice) with this schedule.
- Log-SNR lambda_t = log(alpha_t / sigma_t). The continuous-time helpers accept fractional t and interpolate
  log(alpha_bar) linearly between integer steps (as DPM-Solver's discrete-time wrapper does).

Samplers take a data-prediction function ``denoise(x_t [M, ...], t LongTensor[M]) -> x0_hat [M, ...]``:

- ``dpm_solver_pp_2m``: DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Alg. 2), deterministic, ``steps``
  network evaluations at integer timesteps from T-1 down to 0 (both included). Default spacing ``quadratic``
  (t = (T-1) u^2, u uniform); ``time`` (uniform in t) and ``logsnr`` (uniform in lambda) are available.
  Measured with an exact Gaussian-mixture denoiser (3 modes, std 0.1, cosine T=1000), energy distance to the
  truth at 5/10/20 steps: quadratic 0.05/0.001/0.0001, time 0.25/0.002/0.001, logsnr 0.33/0.05/0.002.
  The first step is first order, the others second order; the very last step jumps to sigma = 0 by returning
  the data prediction at t = 0 (first order, as lambda = +inf there; at t = 0 sigma is only 0.006).
- ``ddpm_ancestral``: the ancestral reference sampler (posterior variance beta_tilde, "fixed small"); all T
  steps by default, or a respaced subsequence (Nichol & Dhariwal) when ``steps`` is given. Respaced, it
  under-disperses (exact Gaussian denoiser, data std 0.5: sample std 0.38 / 0.43 / 0.49 at 10 / 20 / 100
  steps, 0.50 at 1000); for few steps use DPM-Solver++.

Temperature: the caller scales the initial noise x_T by it (see ``DiffusionHead.sample``); the ancestral
sampler also scales each injected noise draw by ``temperature``. temperature = 1 samples the model.

Classifier-free guidance: ``cfg_combine`` = uncond + scale * (cond - uncond). Because eps, v and x0 are all
affine in the model output for a fixed (x_t, t) and the weights sum to one, guiding eps, v or x0 gives the
same result; the head combines raw model outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x_t [M, ...], t Long[M]) -> x0_hat [M, ...]


@dataclass
class DiffusionConfig:
    num_train_steps: int = 1000
    schedule: Literal["cosine", "linear"] = "cosine"  # cosine = Nichol & Dhariwal (s=0.008), betas <= 0.999
    prediction: Literal["eps", "v"] = "v"
    batch_mul: int = 4  # noise draws per condition in training (MAR/LatentLM)
    # training timesteps: "uniform" over [0, T), or "logit_normal": t = floor(T * sigmoid(n)), n ~ N(mean, std)
    # (SD3 / Pocket TTS: more draws at mid noise, fewer at the nearly clean and nearly pure-noise ends)
    t_sampling: Literal["uniform", "logit_normal"] = "uniform"
    t_logit_mean: float = 0.0
    t_logit_std: float = 1.0

    def __post_init__(self) -> None:
        if self.num_train_steps < 2:
            raise ValueError(f"num_train_steps must be >= 2, got {self.num_train_steps}")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"schedule must be 'cosine' or 'linear', got {self.schedule!r}")
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {self.prediction!r}")
        if self.batch_mul < 1:
            raise ValueError(f"batch_mul must be >= 1, got {self.batch_mul}")
        if self.t_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"t_sampling must be 'uniform' or 'logit_normal', got {self.t_sampling!r}")
        if not (
            math.isfinite(self.t_logit_mean) and math.isfinite(self.t_logit_std) and self.t_logit_std > 0
        ):
            raise ValueError(
                f"t_logit_mean must be finite and t_logit_std > 0, got {self.t_logit_mean}, {self.t_logit_std}"
            )


def training_timesteps(
    cfg: DiffusionConfig, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Tensor:
    """n training timesteps Long[n] in [0, num_train_steps), drawn as ``cfg.t_sampling`` says."""
    T = cfg.num_train_steps
    if cfg.t_sampling == "uniform":
        return torch.randint(0, T, (n,), generator=generator, device=device)
    z = torch.randn(n, generator=generator, device=device) * cfg.t_logit_std + cfg.t_logit_mean
    return (torch.sigmoid(z) * T).long().clamp_(0, T - 1)


def _cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


def _linear_betas(num_steps: int) -> Tensor:
    scale = 1000 / num_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)


class NoiseSchedule:
    """Discrete VP schedule: ``alphas_cumprod`` [T] float64 on CPU; row lookups follow the input's device."""

    def __init__(self, cfg: DiffusionConfig):
        self.cfg = cfg
        self.num_steps = cfg.num_train_steps
        betas = _cosine_betas(self.num_steps) if cfg.schedule == "cosine" else _linear_betas(self.num_steps)
        self.betas = betas  # [T]
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)  # [T], strictly decreasing in (0, 1)
        self._log_ac = torch.log(self.alphas_cumprod)  # [T]
        self._tables: dict[tuple, tuple[Tensor, Tensor]] = {}
        self._plans: dict[
            tuple, list
        ] = {}  # solver grids and per-step coefficients (Python floats), by request

    def alpha_sigma(self, t: int) -> tuple[float, float]:
        """alpha_t, sigma_t at an integer step as Python floats (the float64 table values ``_coefs`` rounds)."""
        ac = self.alphas_cumprod[t]
        return float(ac.sqrt()), float((1.0 - ac).sqrt())

    # ---- per-row lookups for training and model-output conversion -----------------------------------------
    def _coefs(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """alpha_t, sigma_t for integer t [M], shaped [M, 1, ...] to broadcast against ``like`` [M, ...]."""
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(f"t must be an integer tensor, got {t.dtype}")
        if t.ndim != 1 or t.shape[0] != like.shape[0]:
            raise ValueError(f"t must have shape [{like.shape[0]}], got {list(t.shape)}")
        key = (like.device, like.dtype)
        if key not in self._tables:
            a, s = self.alphas_cumprod.sqrt(), (1.0 - self.alphas_cumprod).sqrt()  # [T] float64
            if like.dtype != torch.float64:
                a, s = a.float(), s.float()  # some devices (MPS) have no float64
            self._tables[key] = (a.to(like.device, like.dtype), s.to(like.device, like.dtype))
        a_tab, s_tab = self._tables[key]
        shape = (-1,) + (1,) * (like.ndim - 1)
        return a_tab[t].view(shape), s_tab[t].view(shape)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = alpha_t * x0 + sigma_t * noise. x0, noise [M, ...]; t Long[M]."""
        a, s = self._coefs(t, x0)
        return a * x0 + s * noise

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Regression target of the model: eps, or v = alpha_t * eps - sigma_t * x0."""
        if self.cfg.prediction == "eps":
            return noise
        a, s = self._coefs(t, x0)
        return a * noise - s * x0

    def to_x0_eps(self, model_out: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Model output (eps or v) -> (x0_hat, eps_hat)."""
        a, s = self._coefs(t, x_t)
        if self.cfg.prediction == "eps":
            return (x_t - s * model_out) / a, model_out
        return a * x_t - s * model_out, s * x_t + a * model_out

    # ---- continuous-time helpers (scalars / CPU float64) for the solver ------------------------------------
    def log_alpha_cumprod(self, t: float | int | Tensor) -> Tensor:
        """log(alpha_bar) at integer or fractional t in [0, T-1], linear interpolation between steps."""
        tt = torch.as_tensor(t, dtype=torch.float64).cpu()
        if bool((tt < 0).any()) or bool((tt > self.num_steps - 1).any()):
            raise ValueError(f"t must lie in [0, {self.num_steps - 1}], got {t}")
        lo = tt.floor().long().clamp(max=self.num_steps - 2)
        frac = tt - lo
        return self._log_ac[lo] * (1 - frac) + self._log_ac[lo + 1] * frac

    def alpha_t(self, t: float | int | Tensor) -> Tensor:
        return torch.exp(0.5 * self.log_alpha_cumprod(t))

    def sigma_t(self, t: float | int | Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(self.log_alpha_cumprod(t)))

    def lambda_t(self, t: float | int | Tensor) -> Tensor:
        """Log-SNR log(alpha_t / sigma_t); strictly decreasing in t."""
        lac = self.log_alpha_cumprod(t)
        return 0.5 * lac - 0.5 * torch.log(-torch.expm1(lac))


Spacing = Literal["quadratic", "time", "logsnr"]


def solver_timesteps(schedule: NoiseSchedule, steps: int, spacing: Spacing = "quadratic") -> list[int]:
    """``steps`` distinct integer timesteps, strictly decreasing from T-1 to 0 (both included).

    ``quadratic``: t = (T-1) u^2 (u uniform in [0, 1]), denser near the data; ``time``: uniform in t;
    ``logsnr``: uniform in lambda_t (snapped to the nearest integer step). Collisions after rounding are
    pushed apart by one step so every grid has exactly ``steps`` entries.
    """
    T = schedule.num_steps
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps > T:
        raise ValueError(f"steps ({steps}) cannot exceed num_train_steps ({T})")
    key = ("grid", steps, spacing)
    if key not in schedule._plans:  # the schedule is immutable: compute each grid once
        schedule._plans[key] = _solver_timesteps(schedule, steps, spacing)
    return list(schedule._plans[key])


def _solver_timesteps(schedule: NoiseSchedule, steps: int, spacing: Spacing) -> list[int]:
    T = schedule.num_steps
    if steps == 1:
        return [T - 1]
    u = torch.linspace(1.0, 0.0, steps, dtype=torch.float64)  # [steps]
    if spacing == "time":
        ts = ((T - 1) * u).round().long().tolist()
    elif spacing == "quadratic":
        ts = ((T - 1) * u.square()).round().long().tolist()
    elif spacing == "logsnr":
        lam = schedule.lambda_t(torch.arange(T))  # [T], decreasing
        targets = lam[-1] + (1.0 - u) * (lam[0] - lam[-1])  # [steps]
        ts = (lam[None, :] - targets[:, None]).abs().argmin(dim=1).tolist()  # [steps]
    else:
        raise ValueError(f"spacing must be one of 'quadratic', 'time', 'logsnr', got {spacing!r}")
    ts[0], ts[-1] = T - 1, 0
    for i in range(1, steps):  # room at the top: t_i <= t_{i-1} - 1
        ts[i] = min(ts[i], ts[i - 1] - 1)
    ts[-1] = 0
    for i in range(steps - 2, -1, -1):  # room at the bottom: t_i >= t_{i+1} + 1
        ts[i] = max(ts[i], ts[i + 1] + 1)
    return ts


def _t_vec(t: int, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)  # [M]


def dpm_solver_pp_2m_coefs(
    schedule: NoiseSchedule, steps: int, spacing: Spacing = "quadratic"
) -> list[tuple[float, float, float, float]]:
    """Per transition i -> i+1 of the ``solver_timesteps`` grid (steps - 1 entries), Python floats
    (ratio, coef, w0, w1) with x_{i+1} = ratio * x_i + coef * D, D = w0 * x0_i - w1 * x0_{i-1} (w0 = 1, w1 = 0
    on the first step). Computed once per (steps, spacing) and cached on the schedule: the solver loop then does
    no schedule lookups, tensor creation or host syncs."""
    key = ("dpm++2m", steps, spacing)
    if key not in schedule._plans:
        ts = solver_timesteps(schedule, steps, spacing)
        coefs, h_prev = [], 0.0
        for i in range(len(ts) - 1):
            t, t_next = ts[i], ts[i + 1]
            lam, lam_next = float(schedule.lambda_t(t)), float(schedule.lambda_t(t_next))
            h = lam_next - lam
            if i == 0:
                w0, w1 = 1.0, 0.0
            else:
                r = h_prev / h
                w0, w1 = 1 + 0.5 / r, 0.5 / r
            ratio = float(schedule.sigma_t(t_next) / schedule.sigma_t(t))
            coef = -float(schedule.alpha_t(t_next)) * math.expm1(-h)
            coefs.append((ratio, coef, w0, w1))
            h_prev = h
        schedule._plans[key] = coefs
    return schedule._plans[key]


Generators = torch.Generator | Sequence[torch.Generator] | None


def randn_rows(shape: tuple[int, ...], generator: Generators, device, dtype) -> Tensor:
    """Standard normal noise [M, ...]: from one generator, or row i from ``generator[i]`` (one per row, so a
    row's draws do not depend on which other rows share the batch)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for {shape[0]} rows")
    return torch.cat(
        [torch.randn((1, *shape[1:]), generator=g, device=device, dtype=dtype) for g in generator]
    )


def dpm_solver_pp_2m_indexed(
    denoise_at: Callable[[Tensor, int], Tensor],
    x_T: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    spacing: Spacing = "quadratic",
) -> Tensor:
    """``dpm_solver_pp_2m`` with a denoiser called as ``denoise_at(x, i)``: i indexes
    ``solver_timesteps(schedule, steps, spacing)``, so the caller can precompute everything that depends on t."""
    coefs = dpm_solver_pp_2m_coefs(schedule, steps, spacing)
    x = x_T
    x0_prev: Tensor | None = None
    for i in range(steps):
        x0 = denoise_at(x, i)
        if i == steps - 1:
            return x0  # final jump to sigma = 0: lambda = +inf, the first-order update is x0 itself
        ratio, coef, w0, w1 = coefs[i]
        d = x0 if x0_prev is None else torch.sub(w0 * x0, x0_prev, alpha=w1)
        x = torch.add(ratio * x, d, alpha=coef)
        x0_prev = x0
    raise AssertionError("unreachable")


def dpm_solver_pp_2m(
    denoise: Denoiser, x_T: Tensor, schedule: NoiseSchedule, steps: int, spacing: Spacing = "quadratic"
) -> Tensor:
    """DPM-Solver++(2M), data prediction, ``steps`` denoiser calls; x_T [M, ...] at t = T-1 -> x0 [M, ...].

    Update from s to t (h = lambda_t - lambda_s, D the (extrapolated) data prediction):
        x_t = (sigma_t / sigma_s) x_s - alpha_t * expm1(-h) * D,
        D = x0(s) first step, else (1 + 1/(2r)) x0(s) - 1/(2r) x0(s_prev), r = h_prev / h.
    """
    ts = solver_timesteps(schedule, steps, spacing)
    return dpm_solver_pp_2m_indexed(lambda x, i: denoise(x, _t_vec(ts[i], x)), x_T, schedule, steps, spacing)


def ddpm_timesteps(schedule: NoiseSchedule, steps: int | None = None) -> list[int]:
    """The grid ``ddpm_ancestral`` visits: all T steps for ``steps=None``, else uniform in time."""
    if steps is None:
        return list(range(schedule.num_steps - 1, -1, -1))
    return solver_timesteps(schedule, steps, "time")


def ddpm_coefs(schedule: NoiseSchedule, steps: int | None = None) -> list[tuple[float, float, float]]:
    """Per step of ``ddpm_timesteps``: Python floats (c_x0, c_xt, std) of the posterior
    x_prev = c_x0 * x0 + c_xt * x_t + std * noise (std = 0 on the last step). Cached on the schedule."""
    key = ("ddpm", steps)
    if key not in schedule._plans:
        ts = ddpm_timesteps(schedule, steps)
        ac = schedule.alphas_cumprod.tolist()  # [T] Python floats (the float64 table)
        coefs = []
        for i, t in enumerate(ts):
            ac_t = ac[t]
            ac_prev = ac[ts[i + 1]] if i + 1 < len(ts) else 1.0
            beta = 1.0 - ac_t / ac_prev
            c_x0 = math.sqrt(ac_prev) * beta / (1.0 - ac_t)
            c_xt = math.sqrt(1.0 - beta) * (1.0 - ac_prev) / (1.0 - ac_t)
            var = beta * (1.0 - ac_prev) / (1.0 - ac_t)
            coefs.append((c_x0, c_xt, math.sqrt(var) if var > 0 else 0.0))
        schedule._plans[key] = coefs
    return schedule._plans[key]


def ddpm_ancestral_indexed(
    denoise_at: Callable[[Tensor, int], Tensor],
    x_T: Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator | None,
    steps: int | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """``ddpm_ancestral`` with a denoiser called as ``denoise_at(x, i)``, i indexing ``ddpm_timesteps``."""
    x = x_T
    for i, (c_x0, c_xt, std) in enumerate(ddpm_coefs(schedule, steps)):
        x0 = denoise_at(x, i)
        x = c_x0 * x0 + c_xt * x
        if std > 0:
            noise = randn_rows(tuple(x.shape), generator, x.device, x.dtype)
            x = x + (std * temperature) * noise
    return x


def ddpm_ancestral(
    denoise_x0_fn: Denoiser,
    x_T: Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator | None,
    steps: int | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """Ancestral DDPM from t = T-1 to 0 with posterior variance beta_tilde; x_T [M, ...] -> x0 [M, ...].

    ``steps=None`` runs all T steps; otherwise a respaced subsequence (uniform in time, endpoints included)
    with the effective betas 1 - alpha_bar_t / alpha_bar_prev. Injected noise is scaled by ``temperature``.
    """
    ts = ddpm_timesteps(schedule, steps)
    return ddpm_ancestral_indexed(
        lambda x, i: denoise_x0_fn(x, _t_vec(ts[i], x)), x_T, schedule, generator, steps, temperature
    )


def cfg_combine(cond_out: Tensor, uncond_out: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: uncond + scale * (cond - uncond); scale = 1 returns ``cond_out`` as is."""
    if scale == 1.0:
        return cond_out
    return uncond_out + scale * (cond_out - uncond_out)
