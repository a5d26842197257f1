"""DiffusionHead: a small AdaLN-Zero SwiGLU MLP that denoises one latent vector given the trunk's hidden state.

Dimension legend: M rows (positions that carry a latent, flattened over the batch), D latent dim,
C trunk (model) dim, W head width, H SwiGLU hidden width, F timestep-frequency dim.

Architecture (DESIGN.md; DiT/MAR-style AdaLN-Zero):
    h = Linear(D -> W)(x_t)
    c = Linear(C -> W)(RMSNorm(cond)) + MLP(sinusoid(t))             conditioning vector [M, W]
    depth x [ shift, scale, gate = Linear(SiLU(c)); h = h + gate * SwiGLU(RMSNorm(h) * (1 + scale) + shift) ]
    out = Linear(W -> D)(RMSNorm(h) * (1 + scale) + shift)            raw model output: eps or v
The modulation layers (the only ones with biases) and the output Linear start at zero, so the initial output
is exactly zero and every block starts as the identity.

Verbs:
- ``loss(target, cond, mask)``: each (target, cond) pair is repeated ``batch_mul`` times with fresh noise and
  t ~ U{0..T-1}; MSE to the eps / v target, averaged over D and the draws, then a (weighted) mean over the
  selected positions.
- ``sample_reference(cond, ...)``: the same, written plainly (``forward`` + ``cfg_combine`` in the public solvers);
  the fused ``sample`` is held to it.
- ``sample(cond, ...)``: x_T ~ N(0, temperature^2 I), then DPM-Solver++(2M) or ancestral DDPM (see
  ``latentlm/diffusion.py``). ``temperature`` scales the initial noise and, for DDPM, every injected noise draw;
  temperature = 1 samples the model, < 1 trades diversity for typicality, 0 gives the deterministic ODE image of
  x_T = 0 with DPM-Solver++. CFG runs cond and uncond rows in one batched forward and combines the raw model
  outputs (equivalent to combining x0 or eps, since those are affine in the output with weights summing to 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlm.diffusion import (
    DiffusionConfig,
    Generators,
    NoiseSchedule,
    Spacing,
    cfg_combine,
    ddpm_ancestral,
    ddpm_ancestral_indexed,
    ddpm_timesteps,
    dpm_solver_pp_2m,
    dpm_solver_pp_2m_indexed,
    randn_rows,
    solver_timesteps,
    training_timesteps,
)
from latentlm.linear import DecodeLinear, decode_weight
from latentlm.transformer import RMSNorm, rms_normalize


@dataclass
class HeadConfig:
    latent_dim: int = 16  # D
    cond_dim: int = 256  # C of the trunk
    width: int = 256  # W
    depth: int = 4
    mlp_ratio: float = 4.0  # SwiGLU hidden H = width * mlp_ratio * 2/3, rounded to a multiple of 8
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def __post_init__(self) -> None:
        for name in ("latent_dim", "cond_dim", "width"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HeadConfig.{name} must be positive, got {getattr(self, name)}")
        if self.depth < 0:
            raise ValueError(f"HeadConfig.depth must be >= 0, got {self.depth}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"HeadConfig.mlp_ratio must be positive, got {self.mlp_ratio}")

    @property
    def hidden(self) -> int:
        return max(8, 8 * round(self.width * self.mlp_ratio * 2 / 3 / 8))


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of integer timesteps: t [M] -> [M, dim] float32 (cos half, then sin half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # [M, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [M, 2*half]
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.w_in = DecodeLinear(width, 2 * hidden, bias=False)
        self.w_out = DecodeLinear(hidden, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.w_in(x).chunk(2, dim=-1)  # [M, H] each
        return self.w_out(F.silu(a) * b)


class HeadBlock(nn.Module):
    """RMSNorm -> AdaLN shift/scale -> SwiGLU -> gate -> residual."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm = RMSNorm(width)
        self.mlp = SwiGLU(width, hidden)
        self.ada = DecodeLinear(width, 3 * width)  # zero-initialised by the head

    def forward(self, h: Tensor, c_act: Tensor) -> Tensor:
        shift, scale, gate = self.ada(c_act).chunk(3, dim=-1)  # [M, W] each
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    FREQ_DIM = 256  # F

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.schedule = NoiseSchedule(cfg.diffusion)
        W = cfg.width
        self.x_in = DecodeLinear(cfg.latent_dim, W, bias=False)
        self.cond_norm = RMSNorm(cfg.cond_dim)
        self.cond_proj = DecodeLinear(cfg.cond_dim, W, bias=False)
        self.t_mlp = nn.Sequential(DecodeLinear(self.FREQ_DIM, W), nn.SiLU(), DecodeLinear(W, W))
        self.blocks = nn.ModuleList(HeadBlock(W, cfg.hidden) for _ in range(cfg.depth))
        self.final_norm = RMSNorm(W)
        self.final_ada = DecodeLinear(W, 2 * W)
        self.out = DecodeLinear(W, cfg.latent_dim, bias=False)
        # an optional compiled one-step sampler (latentlm/onnx_step.py OnnxHeadRuntime: x_T, cond -> x0) used by
        # ``sample`` for steps=1 without guidance; not a module, never saved
        self.runtime = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """AdaLN-Zero: modulation layers and the output projection start at zero."""
        for ada in [b.ada for b in self.blocks] + [self.final_ada]:
            nn.init.zeros_(ada.weight)
            nn.init.zeros_(ada.bias)
        nn.init.zeros_(self.out.weight)

    def _norms(self) -> list[RMSNorm]:
        return [b.norm for b in self.blocks] + [self.final_norm]

    # ---- shapes ------------------------------------------------------------------------------------------
    def _check_cond(self, cond: Tensor, rows: int | None = None, name: str = "cond") -> None:
        C = self.cfg.cond_dim
        if cond.ndim != 2 or cond.shape[1] != C or (rows is not None and cond.shape[0] != rows):
            want = f"[{rows if rows is not None else 'M'}, {C}]"
            raise ValueError(f"{name} must have shape {want}, got {list(cond.shape)}")

    def _check_latent(self, x: Tensor, name: str) -> None:
        if x.ndim != 2 or x.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"{name} must have shape [M, {self.cfg.latent_dim}], got {list(x.shape)}")

    # ---- network -----------------------------------------------------------------------------------------
    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """x_t [M, D], t Long[M] in [0, T), cond [M, C] -> raw model output [M, D] (eps or v)."""
        self._check_latent(x_t, "x_t")
        M = x_t.shape[0]
        self._check_cond(cond, M)
        if t.shape != (M,) or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(f"t must be an integer tensor of shape [{M}], got {t.dtype} {list(t.shape)}")
        temb = timestep_embedding(t, self.FREQ_DIM).to(x_t.dtype)  # [M, F]
        c = self.cond_proj(self.cond_norm(cond)) + self.t_mlp(temb)  # [M, W]
        c_act = F.silu(c)
        h = self.x_in(x_t)  # [M, W]
        for block in self.blocks:
            h = block(h, c_act)
        shift, scale = self.final_ada(c_act).chunk(2, dim=-1)  # [M, W] each
        return self.out(self.final_norm(h) * (1 + scale) + shift)

    # ---- training ----------------------------------------------------------------------------------------
    def loss(
        self,
        target: Tensor,
        cond: Tensor,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Diffusion loss (scalar). target [M, D] clean latents, cond [M, C], mask [M] bool or float weights.

        Rows with mask == 0 are dropped before any computation (they cannot affect values or gradients, even
        if they hold NaN); the result is sum(w * loss_row) / sum(w) over the kept rows, 0 when none is kept.
        Noise and t are drawn with ``generator``, which must live on the data's device.
        """
        self._check_latent(target, "target")
        M = target.shape[0]
        self._check_cond(cond, M)
        weights = None
        if mask is not None:
            if mask.shape != (M,):
                raise ValueError(f"mask must have shape [{M}], got {list(mask.shape)}")
            weights = mask.to(torch.float32)
            if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
                raise ValueError("mask weights must be finite and >= 0")
            keep = weights > 0  # [M]
            target, cond, weights = target[keep], cond[keep], weights[keep]
        m, bm = target.shape[0], self.cfg.diffusion.batch_mul
        x0 = target.repeat(bm, 1)  # [bm*m, D], row r is position r % m
        c = cond.repeat(bm, 1)  # [bm*m, C]
        t = training_timesteps(self.cfg.diffusion, bm * m, generator, target.device)  # [bm*m]
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.schedule.q_sample(x0, t, noise)
        out = self(x_t, t, c)
        err = (out.float() - self.schedule.target(x0, noise, t).float()).square().mean(-1)  # [bm*m]
        per_row = err.view(bm, m).mean(0)  # [m]
        if weights is None:
            return per_row.mean() if m > 0 else per_row.sum()
        return (per_row * weights).sum() / weights.sum().clamp_min(1e-12)

    # ---- sampling ----------------------------------------------------------------------------------------
    def reference_denoiser(self, cond: Tensor, cfg: float = 1.0, uncond: Tensor | None = None):
        """The plain data predictor the solvers call, ``denoise(x_t [M, D], t Long[M]) -> x0_hat [M, D]``:
        ``forward`` on the cond rows (and the uncond rows, combined by ``cfg_combine`` when cfg != 1), then the
        x0 prediction (``to_x0_eps``)."""
        M = cond.shape[0]

        def denoise(x: Tensor, t: Tensor) -> Tensor:
            if cfg != 1.0:
                out = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond]))
                out = cfg_combine(out[:M], out[M:], cfg)
            else:
                out = self(x, t, cond)
            return self.schedule.to_x0_eps(out, x, t)[0]

        return denoise

    @torch.no_grad()
    def sample_reference(
        self,
        cond: Tensor,
        steps: int = 10,
        cfg: float = 1.0,
        uncond: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        solver: Literal["dpm++2m", "ddpm"] = "dpm++2m",
        spacing: Spacing = "quadratic",
    ) -> Tensor:
        """What ``sample`` computes, written plainly: ``reference_denoiser`` inside the public solvers
        (tests/test_fast_paths.py holds ``sample`` to it). Slow."""
        denoise = self.reference_denoiser(cond, cfg, uncond)
        x_T = torch.randn((cond.shape[0], self.cfg.latent_dim), generator=generator) * temperature
        if solver == "dpm++2m":
            return dpm_solver_pp_2m(denoise, x_T, self.schedule, steps, spacing)
        return ddpm_ancestral(denoise, x_T, self.schedule, generator, steps, temperature)

    @torch.no_grad()
    def sample(
        self,
        cond: Tensor,
        steps: int = 10,
        cfg: float = 1.0,
        uncond: Tensor | None = None,
        temperature: float = 1.0,
        generator: Generators = None,
        solver: Literal["dpm++2m", "ddpm"] = "dpm++2m",
        spacing: Spacing = "quadratic",
        noise: Tensor | None = None,
    ) -> Tensor:
        """cond [M, C] -> latents [M, D] (dtype of cond).

        ``steps``: network evaluations (x2 rows with CFG). For ``ddpm`` it is the number of respaced ancestral
        steps; pass ``steps=cfg.diffusion.num_train_steps`` for the full reference sampler. ``spacing`` applies
        to DPM-Solver++ only. ``cfg`` != 1 needs ``uncond`` [M, C] (e.g. the trunk state for a null condition).

        Computes what ``forward`` + ``cfg_combine`` + ``to_x0_eps`` inside ``dpm_solver_pp_2m`` /
        ``ddpm_ancestral`` compute (to float rounding; tests/test_fast_paths.py checks it), organised for small
        batches where per-op overhead dominates: the condition projection runs once per call, the timestep
        embeddings and every block's AdaLN modulation for all solver steps run as one batched matmul each before
        the loop, RMSNorm weights and (1 + scale) are folded into one scale, CFG combines the final features
        before the (linear, bias-free) output layer, and the loop uses precomputed Python-float coefficients.
        ``generator``: one torch.Generator for all rows, or a sequence with one per row (row i's noise then
        depends only on ``generator[i]``: batched rows reproduce single-row calls).
        ``noise`` [M, D]: the standard-normal draw to start from (x_T = noise * temperature) instead of one from
        ``generator`` (distillation pairs a student's input with the teacher's sample from the same x_T).
        """
        self._check_cond(cond)
        M = cond.shape[0]
        guided = cfg != 1.0
        if guided:
            if uncond is None:
                raise ValueError(f"cfg={cfg} needs an `uncond` condition tensor of shape [{M}, C]")
            self._check_cond(uncond, M, "uncond")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if solver not in ("dpm++2m", "ddpm"):
            raise ValueError(f"solver must be 'dpm++2m' or 'ddpm', got {solver!r}")
        shape = (M, self.cfg.latent_dim)
        if noise is not None and tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}")
        start = randn_rows(shape, generator, cond.device, torch.float32) if noise is None else noise.float()
        if self.runtime is not None and steps == 1 and not guided and solver == "dpm++2m":
            return self.runtime(start * temperature, cond).to(cond.dtype)
        ts = (
            solver_timesteps(self.schedule, steps, spacing)
            if solver == "dpm++2m"
            else ddpm_timesteps(self.schedule, steps)
        )
        c_in = torch.cat([cond, uncond]) if guided else cond  # [R, C], R = 2M or M
        dtype = cond.dtype
        c_base = self.cond_proj(self.cond_norm(c_in))  # [R, W], the same for every step
        mods = _Modulation(self, c_base, ts)
        ab = [self.schedule.alpha_sigma(t) for t in ts]  # Python floats
        eps_pred = self.cfg.diffusion.prediction == "eps"
        # weights as cached contiguous [in, out] copies (latentlm/linear.py) and the per-block RMSNorm epsilons
        w_x = decode_weight(self.x_in)
        w_mlp = [(decode_weight(b.mlp.w_in), decode_weight(b.mlp.w_out)) for b in self.blocks]
        w_out = decode_weight(self.out)
        W = self.cfg.width
        inv_w = torch.full((W, 1), 1.0 / W, dtype=dtype, device=cond.device)  # [W, 1]: mean over W by matmul
        eps = [torch.full((1, 1), n.eps, dtype=dtype, device=cond.device) for n in self._norms()]

        def denoise_at(x: Tensor, i: int) -> Tensor:  # x [M, D] float32 -> x0_hat [M, D] float32
            h = torch.mm(x.to(dtype), w_x)  # [M, W]
            if guided:
                h = torch.cat([h, h])  # [2M, W]: cond rows, then uncond rows
            step = mods.at(i)  # 3 * depth + 2 tensors [R, W]
            for j, (w_in, w_o) in enumerate(w_mlp):
                shift, scale, gate = step[3 * j : 3 * j + 3]
                y = _ada_rms(h, shift, scale, eps[j], inv_w)  # AdaLN(RMSNorm(h)) [R, W]
                a, b = torch.mm(y, w_in).chunk(2, dim=-1)  # SwiGLU: [R, H] each
                h = torch.addcmul(h, gate, torch.mm(F.silu(a) * b, w_o))
            y = _ada_rms(h, step[-2], step[-1], eps[-1], inv_w)  # [R, W]
            if guided:  # the output layer is linear without bias: guide its input
                y = torch.lerp(y[M:], y[:M], cfg)  # uncond + cfg * (cond - uncond): [M, W]
            a, s = ab[i]
            if not eps_pred and y.dtype == torch.float32:  # v: x0 = a * x - s * v, the matmul does the sum
                return torch.addmm(a * x, y, w_out, alpha=-s)
            out = torch.mm(y, w_out).float()  # [M, D] eps or v
            if eps_pred:
                return torch.sub(x, out, alpha=s) / a
            return torch.sub(a * x, out, alpha=s)

        x_T = start * temperature
        if solver == "dpm++2m":
            x0 = dpm_solver_pp_2m_indexed(denoise_at, x_T, self.schedule, steps, spacing)
        else:
            x0 = ddpm_ancestral_indexed(denoise_at, x_T, self.schedule, generator, steps, temperature)
        return x0.to(dtype)


def _ada_rms(h: Tensor, shift: Tensor, scale: Tensor, eps: Tensor, inv_w: Tensor) -> Tensor:
    """shift + RMSNorm_unweighted(h) * scale for h [R, W] (scale has the norm weight folded in); eps [1, 1],
    inv_w [W, 1] filled with 1/W.

    The mean square goes through a matmul (on this CPU a row reduction right after a large matmul measured
    slower): mean(h^2) + eps = addmm(eps, h * h, 1/W) -> [R, 1]."""
    if h.dtype != torch.float32:
        return torch.addcmul(shift, rms_normalize(h, float(eps)), scale)
    r = torch.addmm(eps, h * h, inv_w).rsqrt_()  # [R, 1]
    return torch.addcmul(shift, h, scale * r)


class _Modulation:
    """AdaLN modulation of every block for each solver step, computed in batched chunks of steps.

    For step i: c = cond_proj(RMSNorm(cond)) + t_mlp(sinusoid(t_i)) and c_act = SiLU(c) as in ``forward``;
    ``at(i)`` gives, each [R, W], (shift, scale', gate) per block, then (shift, scale') of the final layer, with
    scale' = norm.weight * (1 + scale), so AdaLN(RMSNorm(h)) = shift + RMSNorm_unweighted(h) * scale'.
    Steps are processed ``chunk`` at a time to bound memory for long grids (full DDPM) and large R.
    """

    MAX_ELEMENTS = 1 << 22  # per chunk of precomputed modulation values (16 MiB in float32)

    def __init__(self, head: DiffusionHead, c_base: Tensor, ts: list[int]):
        self.head, self.c_base, self.ts = head, c_base, ts
        R, W = c_base.shape
        self.n = 3 * len(head.blocks) + 2  # modulation vectors per step
        self.chunk = max(1, min(len(ts), self.MAX_ELEMENTS // max(R * W * self.n, 1)))
        self.lo, self.values = -1, None

    def _compute(self, lo: int) -> None:
        head, c_base = self.head, self.c_base
        ts = self.ts[lo : lo + self.chunk]
        t = torch.tensor(ts, dtype=torch.long, device=c_base.device)  # [S]
        temb = head.t_mlp(timestep_embedding(t, head.FREQ_DIM).to(c_base.dtype))  # [S, W]
        c_act = F.silu(c_base[None] + temb[:, None])  # [S, R, W]
        parts = []
        for ada, norm in [(b.ada, b.norm) for b in head.blocks] + [(head.final_ada, head.final_norm)]:
            mod = list(ada(c_act).chunk(3 if ada is not head.final_ada else 2, dim=-1))  # [S, R, W] each
            mod[1] = (1 + mod[1]) * norm.weight.to(c_act.dtype)
            parts += mod
        self.values = torch.stack(parts, dim=1)  # [S, n, R, W]
        self.lo = lo

    def at(self, i: int) -> tuple[Tensor, ...]:
        if self.values is None or not self.lo <= i < self.lo + self.chunk:
            self._compute(i - i % self.chunk)
        return self.values[i - self.lo].unbind(0)  # n x [R, W]
