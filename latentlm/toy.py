"""A toy conditional sequence task that shows next-token diffusion models distributions, not means.

Sequence: ``<bos> c <bo_x> z1 z2 <eo_x>`` with a discrete condition c in {0, 1} and 2-D latents (modality "x").
  c = 0: z1 ~ 0.7 N((-2, 0), s^2) + 0.3 N((2, 0), s^2)
  c = 1: z1 ~ 0.5 N((0, 2), s^2)  + 0.5 N((0, -2), s^2)
  z2 = -z1 + N(0, s^2)   (the second latent depends on the first: autoregression through the trunk)
A model that regressed the mean would put z1 between the modes. Used by the tests and by ``latentlm.toy_demo``.
"""

from __future__ import annotations

import torch

from latentlm.diffusion import DiffusionConfig
from latentlm.head import HeadConfig
from latentlm.model import LatentLM, LatentLMConfig
from latentlm.sequence import Batch, Latents, Tokens, pack
from latentlm.training import optimizer_step
from latentlm.transformer import TransformerConfig

S = 0.15
MODES = {
    0: (torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.tensor([0.7, 0.3])),
    1: (torch.tensor([[0.0, 2.0], [0.0, -2.0]]), torch.tensor([0.5, 0.5])),
}


def draw(c: int, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples of (z1, z2) for condition c -> ([n, 2], [n, 2])."""
    centers, probs = MODES[c]
    k = torch.multinomial(probs, n, replacement=True, generator=g)
    z1 = centers[k] + S * torch.randn(n, 2, generator=g)
    z2 = -z1 + S * torch.randn(n, 2, generator=g)
    return z1, z2


def make_batch(model: LatentLM, n: int, g: torch.Generator, p_drop: float = 0.1) -> Batch:
    """A training batch; the condition is replaced by <null> with probability p_drop (for CFG)."""
    lay = model.layout
    cs = torch.randint(0, 2, (n,), generator=g)
    drop = torch.rand(n, generator=g) < p_drop
    seqs = []
    for i in range(n):
        c = int(cs[i])
        z1, z2 = draw(c, 1, g)
        cond = torch.tensor([lay.null]) if drop[i] else lay.text([c])
        seqs.append(
            [
                Tokens(torch.tensor([lay.bos]), 0.0),
                Tokens(cond, 0.0),
                Tokens(torch.tensor([lay.begin["x"]]), 0.0),
                Latents("x", torch.cat([z1, z2])),
                Tokens(torch.tensor([lay.end["x"]])),
            ]
        )
    return pack(seqs, lay, model.latent_dims)


def prefix(model: LatentLM, c: int | None, n: int) -> Batch:
    """n copies of ``<bos> c <bo_x>`` (c None = the unconditional ``<null>`` prefix)."""
    lay = model.layout
    cond = torch.tensor([lay.null]) if c is None else lay.text([c])
    seq = [Tokens(torch.tensor([lay.bos])), Tokens(cond), Tokens(torch.tensor([lay.begin["x"]]))]
    return pack([seq] * n, lay, model.latent_dims)


def build(dim: int = 64) -> LatentLM:
    cfg = LatentLMConfig(
        vocab_size=2,
        trunk=TransformerConfig(dim=dim, n_layers=2, n_heads=4, max_seq_len=32),
        modalities={
            "x": HeadConfig(
                latent_dim=2,
                cond_dim=dim,
                width=96,
                depth=3,
                diffusion=DiffusionConfig(prediction="v", batch_mul=4),
            )
        },
    )
    return LatentLM(cfg)


def train(
    steps: int = 700, batch: int = 128, lr: float = 2e-3, seed: int = 0, log_every: int = 0
) -> LatentLM:
    torch.manual_seed(seed)
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        terms = model.losses(make_batch(model, batch, g), generator=g)
        optimizer_step(model, opt, sched, terms)
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:4d}  " + "  ".join(f"{k} {v.item():.3f}" for k, v in terms.items()))
    return model.eval()


def sample(model: LatentLM, c: int, n: int, cfg: float = 1.0, seed: int = 0, steps: int = 15) -> list[list]:
    uncond = prefix(model, None, n) if cfg != 1.0 else None
    return model.generate(
        prefix(model, c, n),
        max_new=4,
        steps=steps,
        cfg=cfg,
        uncond=uncond,
        generator=torch.Generator().manual_seed(seed),
    )


def nearest_mode(z: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to, and index of, the nearest mode of class c: z [n, 2] -> ([n], [n])."""
    d = torch.cdist(z, MODES[c][0])  # [n, k]
    return d.min(1).values, d.argmin(1)
