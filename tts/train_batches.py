"""Training micro-batches: which rows (a cursor through the length-bucketed epochs) and how they are laid out.

``build_micro_batch`` turns one planned ``Job`` into the packed ``Batch`` the trainer feeds the model, on the
CPU, identically in the training process or in a data-loader worker (``MicroBatches``): every random draw is
seeded from the job's key. ``LayoutView`` is what laying out reads from the model (token layout, latent dims and
statistics), so workers need neither the weights nor the GPU the model may sit on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from latentlm.model import LatentLM
from tts import ctc
from tts.data import PromptTargetDataset, collate
from tts.layout import training_batch

if TYPE_CHECKING:
    from tts.train_config import TrainConfig


@dataclass
class Cursor:
    """Where a walk through the epochs' micro-batches stands."""

    epoch: int
    pos: int
    batches: list | None = None
    shared: bool = False


@dataclass
class Job:
    """One micro-batch to lay out: dataset indices, its epoch, its random key, and the position after it."""

    idx: list[int]
    epoch: int
    key: int
    pos_after: int


class LayoutView:
    """What laying a batch out reads from the model (token layout, latent dims, normalisation), on the CPU: it
    travels to data workers without the weights, and without the GPU the model may sit on."""

    def __init__(self, lm: LatentLM):
        self.layout, self.latent_dims = lm.layout, dict(lm.latent_dims)
        self._stats = {m: lm.latent_stats(m, "cpu") for m in self.latent_dims}

    def normalize(self, modality: str, z: Tensor) -> Tensor:  # [..., D] -> [..., D]
        mean, std = self._stats[modality]
        return (z - mean) / std


def build_micro_batch(ds: PromptTargetDataset, view: LayoutView, cfg: TrainConfig, job: Job):
    """(packed Batch, align splits, CTC spans or None) of one job, all on the CPU; in a worker or in-process,
    the same job gives the same batch."""
    ds.set_epoch(job.epoch)
    collated = collate([ds[i] for i in job.idx])
    blind, spans = None, None
    if cfg.ctc_weight > 0 and cfg.ctc_blind > 0:
        blind, spans = ctc.blind_spans(collated, cfg.ctc_blind, torch.Generator().manual_seed(job.key + 2))
    batch = training_batch(
        view,
        collated,
        p_uncond=cfg.p_uncond,
        p_drop_prompt=cfg.p_drop_prompt,
        prompt_loss_weight=cfg.prompt_loss_weight,
        latent_noise_scale=cfg.latent_noise_scale,
        input_noise=cfg.input_noise,
        generator=torch.Generator().manual_seed(job.key),
        blind=blind,
    )
    return batch, collated["align_split"], spans


class MicroBatches(torch.utils.data.Dataset):
    """Data-loader view: item ``job`` -> (job, built micro-batch)."""

    def __init__(self, ds: PromptTargetDataset, view: LayoutView, cfg: TrainConfig):
        self.ds, self.view, self.cfg = ds, view, cfg

    def __getitem__(self, job: Job):
        return job, build_micro_batch(self.ds, self.view, self.cfg, job)


def as_is(x):
    """The data loader's collate_fn: a built micro-batch passes through unchanged."""
    return x
