"""Conditional image generation by next-token diffusion over the VAE's latent grid (raster order).

Dimension legend: n images, L latents per image (h * w), D latent dim.

Sequence (fixed latent count, so the span length is known and enforced at sampling with ``span_length=L``):
    <bos> condition <bo_image> z_1 ... z_L <eo_image>
``condition`` is a list of layout ids: one class token (class-conditional) or a caption's text tokens
(multimodal). For classifier-free guidance it is replaced by ``<null>`` with probability ``p_null`` in training,
and the sampler runs the ``<bos> <null> <bo_image>`` prefix beside the conditional one.
Only the latents and ``<eo_image>`` carry loss weight; the condition is context.

Latents are the VAE's means, noised with the sigma-VAE noise (``bottleneck.sample_noisy``) at batch time and
normalised with the LM's stored per-dimension statistics (``LatentLM.normalize``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from latentlm.image.vae import ImageVAE
from latentlm.model import LatentLM
from latentlm.sequence import Batch, Latents, Span, Tokens, pack

MODALITY = "image"


def image_spans(model: LatentLM, latents: Tensor | None, weight: float = 1.0) -> list[Span]:
    """``<bo_image> latents <eo_image>`` (latents [L, D] normalised; None = only the opening token)."""
    lay = model.layout
    spans: list[Span] = [Tokens(torch.tensor([lay.begin[MODALITY]]), 0.0)]
    if latents is not None:
        spans += [Latents(MODALITY, latents, weight), Tokens(torch.tensor([lay.end[MODALITY]]), weight)]
    return spans


def conditional_sequence(
    model: LatentLM, condition: Sequence[int] | None, latents: Tensor | None
) -> list[Span]:
    """``<bos> condition <bo_image> [latents <eo_image>]``; condition None = ``<null>``."""
    lay = model.layout
    cond = (
        torch.tensor([lay.null]) if condition is None else torch.as_tensor(list(condition), dtype=torch.long)
    )
    return [Tokens(torch.tensor([lay.bos]), 0.0), Tokens(cond, 0.0), *image_spans(model, latents)]


def noisy_normalised(model: LatentLM, vae: ImageVAE, mu: Tensor, generator: torch.Generator | None) -> Tensor:
    """VAE means [n, L, D] -> sigma-noised, normalised LM latents [n, L, D] (one sigma per image)."""
    return model.normalize(MODALITY, vae.bottleneck.sample_noisy(mu, generator))


def class_batch(
    model: LatentLM,
    vae: ImageVAE,
    mu: Tensor,
    labels: Tensor,
    p_null: float,
    generator: torch.Generator | None = None,
) -> Batch:
    """Training batch for class-conditional generation: mu [n, L, D] VAE means, labels [n] class ids
    (the class token is ``layout.text([label])``); each condition is dropped to ``<null>`` with prob. p_null."""
    if mu.shape[0] != labels.shape[0]:
        raise ValueError(f"{mu.shape[0]} latent grids but {labels.shape[0]} labels")
    z = noisy_normalised(model, vae, mu, generator)
    drop = torch.rand(len(labels), generator=generator) < p_null
    seqs = [
        conditional_sequence(model, None if drop[i] else model.layout.text([int(labels[i])]).tolist(), z[i])
        for i in range(len(labels))
    ]
    return pack(seqs, model.layout, model.latent_dims)


def generate_latents(
    model: LatentLM,
    conditions: Sequence[Sequence[int]],
    num_latents: int,
    *,
    cfg: float = 1.0,
    steps: int = 10,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample one latent grid per condition (lists of layout ids) -> normalised latents [n, L, D]."""
    if not conditions:
        raise ValueError("need at least one condition")
    lay = model.layout
    prefix = pack([conditional_sequence(model, c, None) for c in conditions], lay, model.latent_dims)
    uncond = None
    if cfg != 1.0:
        uncond = pack([conditional_sequence(model, None, None)] * len(conditions), lay, model.latent_dims)
    out = model.generate(
        prefix,
        max_new=num_latents + 1,
        span_length=num_latents,
        stop_tokens=[lay.end[MODALITY]],
        cfg=cfg,
        uncond=uncond,
        steps=steps,
        temperature=temperature,
        generator=generator,
    )
    rows = []
    for r, items in enumerate(out):
        lat = [x for x in items if isinstance(x, Tensor)]
        if len(lat) != num_latents:
            raise RuntimeError(f"row {r}: generated {len(lat)} latents, expected {num_latents}")
        rows.append(torch.stack(lat))
    return torch.stack(rows)  # [n, L, D]


@torch.no_grad()
def sample_images(
    model: LatentLM,
    vae: ImageVAE,
    labels: Sequence[int] | Tensor,
    *,
    cfg: float = 1.0,
    steps: int = 10,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Class-conditional samples: labels [n] -> images [n, K, S, S] in [-1, 1]."""
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    conds = [model.layout.text([int(c)]).tolist() for c in labels]
    z = generate_latents(
        model, conds, vae.cfg.num_latents, cfg=cfg, steps=steps, temperature=temperature, generator=generator
    )
    return decode_latents(model, vae, z)


def decode_latents(model: LatentLM, vae: ImageVAE, z: Tensor) -> Tensor:
    """Normalised LM latents [n, L, D] -> images [n, K, S, S]."""
    dev = next(vae.parameters()).device
    return vae.decode(vae.from_tokens(model.denormalize(MODALITY, z).to(dev)))
