"""latentlm.training.fit_loop: the cosine horizon fitted to a time limit, and ranks that agree on when to stop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from latentlm.training import _HorizonFit, fit_loop


@dataclass
class _Cfg:
    max_steps: int = 1_000_000
    time_limit_minutes: float = 0.0
    schedule_to_time_limit: bool = False
    log_every: int = 1000
    sample_every: int = 0
    save_every: int = 1000
    progress: bool = False


class _Trainer:
    def __init__(self, out: Path, rank: int = 0, stop_at: int | None = None, sleep: float = 0.0):
        self.out, self.rank, self.step, self.stop_requested = out, rank, 0, False
        self.stop_at, self.sleep, self.saves = stop_at, sleep, 0
        self.device = torch.device("cpu")

    def save(self) -> None:
        self.saves += 1

    def step_fn(self) -> dict[str, float]:
        time.sleep(self.sleep)
        self.step += 1
        if self.step == self.stop_at:
            self.stop_requested = True  # e.g. SIGTERM reached this rank only
        return {"total": 1.0}


def test_horizon_follows_the_measured_rate_and_the_cap():
    fit = _HorizonFit(cap=1000, limit_s=100.0, skip=2)
    horizons = [fit.update(step, elapsed=step / 2.0) for step in range(1, 21)]  # 2 steps/s
    assert horizons[0] == 1000  # nothing measured yet: the configured max_steps
    assert horizons[-1] == 200  # 20 steps done at 10 s, 90 s left at 2/s: 20 + 180
    assert _HorizonFit(cap=50, limit_s=100.0, skip=2).update(3, 1.5) <= 50


def test_schedule_ends_at_the_time_limit(tmp_path):
    cfg = _Cfg(time_limit_minutes=0.6 / 60, schedule_to_time_limit=True)
    tr = _Trainer(tmp_path, sleep=0.005)
    fit_loop(tr, cfg, tr.step_fn, desc="t", postfix=lambda logs: {})
    assert cfg.max_steps < 1_000_000  # the horizon was fitted to the time left ...
    assert tr.step <= cfg.max_steps + 1 and tr.saves >= 1  # ... and the loop ended on it or on the clock
    plain = _Cfg(max_steps=7)
    tr = _Trainer(tmp_path)
    fit_loop(tr, plain, tr.step_fn, desc="t", postfix=lambda logs: {})
    assert tr.step == 7 and plain.max_steps == 7  # without the option nothing changes


def test_logged_values_are_means_over_the_window(tmp_path, capsys):
    tr = _Trainer(tmp_path)

    def step_fn():
        tr.step += 1
        return {"total": float(tr.step), **({"rare": float(tr.step)} if tr.step % 2 == 0 else {})}

    fit_loop(tr, _Cfg(max_steps=8, log_every=4), step_fn, desc="t", postfix=lambda logs: {})
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step ")]
    assert len(lines) == 2
    assert lines[0].endswith("total 2.5 rare 3") and lines[1].endswith("total 6.5 rare 7")


def _rank(rank: int, init: str, out: str, result) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        tr = _Trainer(Path(out) / str(rank), rank=rank, stop_at=3 if rank == 1 else None)
        fit_loop(tr, _Cfg(max_steps=50), tr.step_fn, desc="t", postfix=lambda logs: {})
        result[rank] = tr.step
    finally:
        dist.destroy_process_group()


def test_ranks_stop_together_when_one_is_told_to(tmp_path):
    torch.set_num_threads(1)
    result = mp.Manager().dict()
    init = f"file://{tmp_path / 'store'}"
    mp.spawn(_rank, args=(init, str(tmp_path), result), nprocs=2, join=True)
    assert dict(result) == {0: 3, 1: 3}  # rank 0 would otherwise run on to 50 and hang in a collective
