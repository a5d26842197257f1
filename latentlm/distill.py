"""Distil a diffusion head into a one-step head (latentlm/one_step.py) on recorded trunk states.

Dimension legend: N recorded states, C trunk width, D latent dim, K noise draws per state.

    states = HeadRecorder(model.heads["audio"])          # swap in, decode as usual (reference path), swap out
    data = teacher_targets(teacher, states.cond(), states.uncond(), cfg_scale=3.0, steps=10, draws=4)
    student, report = distill(teacher, data, train_steps=3000)

``teacher_targets`` draws K starting noises z and a temperature tau ~ U[0, max_temperature] per pair and runs the
teacher's guided DPM-Solver++ from x_T = tau * z (the same deterministic map the decoder uses). ``distill`` fits
the student, started from the teacher's weights, by mean squared error between its one-step sample from the same
x_T (conditioned on the cond state alone) and the teacher's; a held-out slice of states reports how close the
student gets, beside the teacher's own one-step estimate (where the student starts) for scale.
Recording decodes on-policy: the states are the ones the decoder meets, drift included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from latentlm.head import DiffusionHead
from latentlm.one_step import student_from


class HeadRecorder(nn.Module):
    """Stands in for a diffusion head during decoding: records every (cond, uncond) it is asked to sample
    from, then samples with the wrapped head. Rows without guidance record their cond as uncond too."""

    def __init__(self, head: DiffusionHead):
        super().__init__()
        self.head = head
        self.conds: list[Tensor] = []
        self.unconds: list[Tensor] = []

    def sample(self, cond: Tensor, *args, uncond: Tensor | None = None, **kwargs) -> Tensor:
        self.conds.append(cond.detach().float().cpu())
        self.unconds.append((cond if uncond is None else uncond).detach().float().cpu())
        return self.head.sample(cond, *args, uncond=uncond, **kwargs)

    def states(self) -> tuple[Tensor, Tensor]:
        """-> cond [N, C], uncond [N, C] (float32, CPU)."""
        if not self.conds:
            raise ValueError("the recorder saw no latent: decode something with it first")
        return torch.cat(self.conds), torch.cat(self.unconds)


class StudentRecorder(HeadRecorder):
    """A ``HeadRecorder`` whose samples come from a one-step ``student`` instead of the wrapped head: decoding with
    guidance (two trunk rows) then walks the student's own trajectory while every (cond, uncond) it meets is kept,
    so a student can be distilled again on the states it visits (on-policy, DAgger-style). The student samples
    from the cond row alone, in one step, at the call's temperature and with its generator."""

    def __init__(self, head: DiffusionHead, student: DiffusionHead):
        super().__init__(head)
        self.student = student

    def sample(self, cond: Tensor, *args, uncond: Tensor | None = None, **kwargs) -> Tensor:
        self.conds.append(cond.detach().float().cpu())
        self.unconds.append((cond if uncond is None else uncond).detach().float().cpu())
        kw = {k: kwargs[k] for k in ("temperature", "generator") if k in kwargs}
        return self.student.sample(cond, steps=1, **kw)


@dataclass
class Targets:
    cond: Tensor  # [N*K, C] (row j is state j % N)
    x_T: Tensor  # [N*K, D] starting point tau * z
    x0: Tensor  # [N*K, D] the teacher's guided sample from x_T
    states: int  # N


@torch.no_grad()
def teacher_targets(
    teacher: DiffusionHead,
    cond: Tensor,
    uncond: Tensor,
    *,
    cfg_scale: float,
    steps: int,
    draws: int = 4,
    max_temperature: float = 1.0,
    generator: torch.Generator | None = None,
    batch: int = 2048,
) -> Targets:
    """K = ``draws`` (x_T, teacher sample) pairs per recorded state; cond / uncond [N, C]."""
    if cond.shape != uncond.shape or cond.ndim != 2:
        raise ValueError(f"cond and uncond must both be [N, C], got {list(cond.shape)} and {list(uncond.shape)}")
    n, d = cond.shape[0], teacher.cfg.latent_dim
    c = cond.repeat(draws, 1)  # [N*K, C]
    u = uncond.repeat(draws, 1)
    z = torch.randn(n * draws, d, generator=generator)
    tau = torch.rand(n * draws, 1, generator=generator) * max_temperature
    x_T = z * tau  # [N*K, D]
    x0 = torch.empty_like(x_T)
    for lo in range(0, n * draws, batch):
        sl = slice(lo, lo + batch)
        x0[sl] = teacher.sample(
            c[sl], steps=steps, cfg=cfg_scale, uncond=u[sl] if cfg_scale != 1.0 else None, noise=x_T[sl]
        ).float()
    return Targets(cond=c, x_T=x_T, x0=x0, states=n)


def one_step(head: DiffusionHead, x_T: Tensor, cond: Tensor) -> Tensor:
    """The differentiable one-step sample: the head's x0 prediction at t = T-1 from x_T (``to_x0_eps``), what
    ``head.sample(cond, steps=1, noise=x_T, temperature=1)`` returns."""
    t = torch.full((x_T.shape[0],), head.schedule.num_steps - 1, dtype=torch.long, device=x_T.device)
    out = head(x_T.to(cond.dtype), t, cond).float()
    return head.schedule.to_x0_eps(out, x_T, t)[0]


@dataclass
class DistillReport:
    train_steps: int  # of the student kept (the best held-out error)
    val_mse: float  # student vs teacher on held-out states
    start_mse: float  # the teacher's own one-step estimate vs its full sample (where the student starts)
    target_var: float  # variance of the teacher's samples (the scale of the errors)
    seconds: float


def distill(
    teacher: DiffusionHead,
    data: Targets,
    *,
    train_steps: int = 3000,
    batch: int = 512,
    lr: float = 3e-4,
    val_fraction: float = 0.05,
    generator: torch.Generator | None = None,
    log_every: int = 0,
    val_every: int = 500,
) -> tuple[DiffusionHead, DistillReport]:
    """Fit a one-step student to ``data``; the last ``val_fraction`` of the states (all their draws) is held
    out and measured every ``val_every`` steps: the student returned is the one with the lowest held-out error
    (it can memorise its states). AdamW with a cosine decay to 10 % of ``lr``."""
    n = data.states
    n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
    state = torch.arange(data.x_T.shape[0]) % n
    val = state >= n - n_val
    tr_idx, val_idx = (~val).nonzero().squeeze(-1), val.nonzero().squeeze(-1)
    if tr_idx.numel() == 0:
        raise ValueError("no training pairs: record more states")
    student = student_from(teacher).train()
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)

    def val_mse(head: DiffusionHead) -> float:
        idx = val_idx if val_idx.numel() else tr_idx
        with torch.no_grad():
            errs = [
                (one_step(head, data.x_T[i], data.cond[i]) - data.x0[i]).square().mean(-1)
                for i in idx.split(4096)
            ]
        return float(torch.cat(errs).mean())

    start = val_mse(teacher)
    best, best_state, best_step = float("inf"), None, 0
    t0 = time.time()
    for step in range(train_steps):
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(train_steps, 1))))
        pick = tr_idx[torch.randint(0, tr_idx.numel(), (batch,), generator=generator)]
        pred = one_step(student, data.x_T[pick], data.cond[pick])
        loss = (pred - data.x0[pick]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % val_every == 0 or step + 1 == train_steps:
            err = val_mse(student)
            if err < best:
                best, best_step = err, step + 1
                best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
            if log_every:
                print(f"distill step {step + 1}/{train_steps} loss {loss.item():.4f} held-out {err:.4f}", flush=True)
    student.load_state_dict(best_state)
    student.eval()
    report = DistillReport(
        train_steps=best_step,
        val_mse=best,
        start_mse=start,
        target_var=float(data.x0.var(0).mean()),
        seconds=time.time() - t0,
    )
    return student, report
