"""The pieces every trainer here shares: the EMA update, one plain optimiser step and the outer training loop.

A trainer passed to ``fit_loop`` has ``step`` (int), ``rank`` (int), ``out`` (Path), ``stop_requested`` (bool)
and ``save()``; its config has ``max_steps``, ``log_every``, ``sample_every``, ``save_every``,
``time_limit_minutes`` and ``progress``. Used by ``tts.train`` and ``vocoder_vae.train``.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable

import torch

from latentlm.config import save_config


@torch.no_grad()
def ema_update_(ema: dict[str, torch.Tensor], state: dict[str, torch.Tensor], decay: float) -> None:
    """In place: ema <- decay * ema + (1 - decay) * state for float tensors; other tensors are copied."""
    for k, v in state.items():
        if v.dtype.is_floating_point:
            ema[k].lerp_(v.detach(), 1 - decay)
        else:
            ema[k].copy_(v)


def optimizer_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched,
    terms: dict[str, torch.Tensor],
    clip: float = 1.0,
) -> None:
    """Backward of ``model.total_loss(terms)``, gradient clipping, optimiser and scheduler step: the inner step of
    the small in-process trainers (toy, text, image); ``tts.train`` and ``vocoder_vae.train`` add accumulation,
    autocast and EMA around their own."""
    loss = model.total_loss(terms)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()


def fit_loop(
    trainer,
    cfg,
    step_fn: Callable[[], dict[str, float]],
    desc: str,
    postfix: Callable[[dict[str, float]], dict[str, str]],
    sample_fn: Callable | None = None,
) -> None:
    """Run ``step_fn`` (one optimisation step, returns its logs) until ``cfg.max_steps``, a time limit, or
    SIGINT/SIGTERM (the step in flight finishes, then the state is saved and the loop stops: rerun to resume).
    Rank 0 writes TensorBoard scalars (``OUT/tb``), the resolved config (``OUT/config.yaml``), a progress bar
    (or a log line every ``log_every`` steps without one; logged values are means over those steps, each key
    over the steps that report it) and, every ``sample_every`` steps, ``sample_fn(writer)``. Saves every
    ``save_every`` steps and at the end. With ``schedule_to_time_limit`` (where the config has it) and a time
    limit, ``cfg.max_steps`` is re-estimated every step so the schedule ends on time. A non-finite loss is an
    error, unless the step function skipped that update itself (its logs then hold ``skipped``: 1)."""
    writer = None
    if trainer.rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        trainer.out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, trainer.out / "config.yaml")
        writer = SummaryWriter(str(trainer.out / "tb"))

    def on_signal(signum, frame) -> None:
        trainer.stop_requested = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = None
    if cfg.progress and trainer.rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=trainer.step, desc=desc, dynamic_ncols=True)
    t0, start = time.monotonic(), trainer.step
    limit = cfg.time_limit_minutes * 60
    fit = (
        _HorizonFit(cfg.max_steps, limit) if getattr(cfg, "schedule_to_time_limit", False) and limit else None
    )
    window: dict[str, tuple[float, int]] = {}  # per log key: (sum, count) since the last log line
    try:
        while trainer.step < cfg.max_steps:
            logs = step_fn()
            if logs.get("skipped"):  # the step function refused a non-finite update and counts them
                if trainer.rank == 0:
                    print(
                        f"step {trainer.step}: non-finite loss or gradient, update skipped: {logs}",
                        flush=True,
                    )
            elif not math.isfinite(logs["total"]):
                raise RuntimeError(f"step {trainer.step}: non-finite loss {logs}")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(**postfix(logs), refresh=False)
            for k, v in logs.items():  # means over the log window: one step's values are too noisy to read
                total, n = window.get(k, (0.0, 0))
                window[k] = (total + v, n + 1)
            if writer is not None and trainer.step % cfg.log_every == 0:
                means = {k: total / n for k, (total, n) in window.items()}
                window.clear()
                for k, v in means.items():
                    writer.add_scalar(f"train/{k}", v, trainer.step)
                if bar is None:
                    elapsed = time.monotonic() - t0
                    terms = " ".join(f"{k} {v:.4g}" for k, v in means.items())
                    rate = (trainer.step - start) / elapsed
                    print(f"step {trainer.step} ({rate:.2f} it/s, {elapsed:.0f} s): {terms}", flush=True)
            if (
                writer is not None
                and sample_fn is not None
                and cfg.sample_every
                and trainer.step % cfg.sample_every == 0
            ):
                sample_fn(writer)
            if trainer.step % cfg.save_every == 0:
                trainer.save()
            elapsed = time.monotonic() - t0
            horizon = fit.update(trainer.step, elapsed) if fit else cfg.max_steps
            stop, horizon = _agree(trainer, trainer.stop_requested or 0 < limit <= elapsed, horizon)
            if horizon != cfg.max_steps:  # the LR schedule reads cfg.max_steps
                cfg.max_steps = horizon
                if bar is not None:
                    bar.total = horizon
            if stop:
                break
        trainer.save()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()


class _HorizonFit:
    """``schedule_to_time_limit``: the step the time limit will be reached at, from the measured step rate (the
    first 10 steps, which carry start-up costs, are left out), capped by the configured ``max_steps``. Setting
    it as ``max_steps`` every step makes a cosine schedule end at the time limit instead of being cut off high."""

    def __init__(self, cap: int, limit_s: float, skip: int = 10):
        self.cap, self.limit, self.skip = cap, limit_s, skip
        self.first: tuple[int, float] | None = None
        self.seen = 0

    def update(self, step: int, elapsed: float) -> int:
        self.seen += 1
        if self.seen == self.skip:
            self.first = (step, elapsed)
        if self.first is None or step <= self.first[0]:
            return self.cap
        rate = (step - self.first[0]) / max(elapsed - self.first[1], 1e-9)
        return max(step + 1, min(self.cap, int(step + rate * (self.limit - elapsed))))


def _agree(trainer, stop: bool, horizon: int) -> tuple[bool, int]:
    """Under torch.distributed every rank must leave the loop at the same step, but wall clocks and signals
    differ between ranks: any rank stopping stops all, and the smallest horizon wins."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return stop, horizon
    t = torch.tensor([-float(stop), float(horizon)], device=getattr(trainer, "device", None))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t[0] < 0), int(t[1])
