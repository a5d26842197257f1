"""TTS sequences on the shared LatentLM: training items and generation prefixes.

Dimension legend: B batch, N phoneme tokens, Tp prompt frames, Tt target frames, D latent dim.

One sequence per utterance (VALL-E style, DESIGN.md):

    <bos> phonemes(prompt text + " " + target text) <bo_audio> latents(prompt) latents(target) <eo_audio>

Interleaved layout (``TTSConfig.interleave``, tts/script.py): the target latents are written as each target
phoneme symbol's token followed by its frames (ELLA-V), so the symbol being said sits right before its frames:

    <bos> phonemes(prompt + " " + target) <bo_audio> latents(prompt) ph_1 f f ph_2 f ... ph_S f f <eo_audio>

The interleaved tokens weigh 1 (the LM head learns when the next symbol starts; at inference the symbol is
forced and only its timing is the model's). Dropped rows read ``<null>`` in place of each interleaved token.

Loss weights live on the predicted item (latentlm.sequence): phonemes 0, <bo_audio> 0 (pure condition),
prompt latents ``prompt_loss_weight`` (default 0), target latents 1, <eo_audio> 1 (the LM head learns to stop).
Condition dropout for classifier-free guidance replaces the whole phoneme span by one ``<null>`` token; the
prompt audio stays (the unconditional branch still knows the voice), unless the voice is dropped too
(``p_drop_prompt``: a share of the dropped rows also lose their prompt latents, ``<bos> <null> <bo_audio>
<null> f f ...``, so guidance can push towards the prompt's voice as well as the text; ``TTSConfig.guidance``).
Latents enter the model normalised with the statistics stored in the LatentLM; in training they are first
sigma-VAE-noised (``z = mu + sigma * eps``, one sigma per sequence, sigma ~ |N(0, (s / 0.8)^2)|), exactly the
noise the audio VAE's decoder was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from latentlm.model import LatentLM
from latentlm.sequence import Batch, Latents, Span, Tokens, pack
from latentlm.sigma_vae import draw_sigma

MODALITY = "audio"
SPACE_ID = 1  # " " in tts.frontend.Vocab (symbols[1]); joins prompt and target phonemes


def phoneme_condition(lm: LatentLM, phonemes: Sequence[int] | Tensor, drop: bool = False) -> Tokens:
    """The phoneme span as layout ids (weight 0), or a single ``<null>`` when the condition is dropped."""
    if drop:
        return Tokens(torch.tensor([lm.layout.null]), weight=0.0)
    ids = torch.as_tensor(phonemes, dtype=torch.long).reshape(-1)
    if ids.numel() == 0:
        raise ValueError("empty phoneme sequence")
    return Tokens(lm.layout.text(ids), weight=0.0)


def prefix_spans(
    lm: LatentLM,
    phonemes: Sequence[int] | Tensor,
    prompt_latents: Tensor,
    drop: bool = False,
    drop_prompt: bool = False,
) -> list[Span]:
    """``<bos> phonemes <bo_audio> prompt`` (prompt_latents [Tp, D], normalised): what generation continues.
    ``drop_prompt``: without the prompt latents (``<bos> ... <bo_audio>``; the last span is then the
    ``<bo_audio>`` token)."""
    lay = lm.layout
    spans: list[Span] = [
        Tokens(torch.tensor([lay.bos]), weight=0.0),
        phoneme_condition(lm, phonemes, drop),
        Tokens(torch.tensor([lay.begin[MODALITY]]), weight=0.0),
    ]
    if not drop_prompt:
        spans.append(Latents(MODALITY, prompt_latents, weight=0.0))
    return spans


def training_spans(
    lm: LatentLM,
    phonemes: Sequence[int] | Tensor,
    prompt_latents: Tensor,
    target_latents: Tensor,
    prompt_loss_weight: float = 0.0,
    drop: bool = False,
    script: tuple[Tensor, Tensor] | None = None,
    drop_prompt: bool = False,
) -> list[Span]:
    """The whole training sequence with its loss weights (latents [Tp, D] / [Tt, D], already normalised).
    ``script`` (ids [S], items [S], summing to Tt): interleave the target's phoneme tokens (module docstring).
    ``drop_prompt`` (only with ``drop``): the prompt latents are left out too."""
    if drop_prompt and not drop:
        raise ValueError("drop_prompt needs drop: the voice is only dropped with the phonemes")
    spans = prefix_spans(lm, phonemes, prompt_latents, drop, drop_prompt)
    if not drop_prompt:
        spans[-1].weight = float(prompt_loss_weight)
    end = Tokens(torch.tensor([lm.layout.end[MODALITY]]), weight=1.0)
    if script is None:
        return spans + [Latents(MODALITY, target_latents, weight=1.0), end]
    ids, items = script
    if int(items.sum()) != target_latents.shape[0]:
        raise ValueError(f"script covers {int(items.sum())} items, the target has {target_latents.shape[0]}")
    toks = torch.full_like(ids, lm.layout.null) if drop else lm.layout.text(ids)
    t = 0
    for tok, n in zip(toks.tolist(), items.tolist()):
        spans.append(Tokens(torch.tensor([tok]), weight=1.0))
        if n:
            spans.append(Latents(MODALITY, target_latents[t : t + n], weight=1.0))
            t += n
    return spans + [end]


def noisy_normalised(lm: LatentLM, mus: list[Tensor], noise_scale: float, generator: torch.Generator | None):
    """sigma-VAE noise with ONE sigma shared by the given pieces of one sequence, then normalisation.
    mus: list of [T_i, D] latent means -> list of [T_i, D] normalised noisy latents."""
    if noise_scale > 0:
        ref = mus[0]
        sigma = draw_sigma(1, noise_scale, generator, ref.device, ref.dtype)  # [1]
        mus = [
            m + sigma * torch.randn(m.shape, generator=generator, device=m.device, dtype=m.dtype) for m in mus
        ]
    return [lm.normalize(MODALITY, m) for m in mus]


def training_batch(
    lm: LatentLM,
    collated: dict,
    *,
    p_uncond: float = 0.1,
    p_drop_prompt: float = 0.0,
    prompt_loss_weight: float = 0.0,
    latent_noise_scale: float = 0.5,
    input_noise: float = 0.0,
    generator: torch.Generator | None = None,
    blind: Sequence[bool] | None = None,
) -> Batch:
    """tts.data.collate output -> packed ``Batch`` (noise, normalisation and condition dropout applied).
    ``p_drop_prompt``: the share of the condition-dropped rows that also lose their prompt latents.
    ``input_noise`` > 0 sets ``batch.inputs``: the target latents as the model reads them, with Gaussian noise
    of std ~ U(0, 2 x input_noise) per row (normalised units; prompt latents stay clean, even when
    ``prompt_loss_weight`` > 0).
    ``blind`` (per row): the model reads pure N(0, 1) noise instead of those rows' target latents (nothing of
    the audio history is left; tts.ctc uses such rows). Every random draw comes from ``generator`` in row order,
    so a batch is a pure function of its seed."""
    ph, ph_mask = collated["phonemes"], collated["phoneme_mask"]  # [B, N]
    scripts = collated.get("script") or [None] * ph.shape[0]
    zp, zp_mask = collated["prompt_latents"], collated["prompt_mask"]  # [B, Tp, D], [B, Tp]
    zt, zt_mask = collated["target_latents"], collated["target_mask"]  # [B, Tt, D], [B, Tt]
    seqs, n_prompt = [], []
    for b in range(ph.shape[0]):
        drop = bool(torch.rand((), generator=generator) < p_uncond) if p_uncond > 0 else False
        voiceless = drop and p_drop_prompt > 0 and bool(torch.rand((), generator=generator) < p_drop_prompt)
        prompt, target = noisy_normalised(
            lm, [zp[b][zp_mask[b]], zt[b][zt_mask[b]]], latent_noise_scale, generator
        )
        n_prompt.append(0 if voiceless else prompt.shape[0])
        seqs.append(
            training_spans(
                lm, ph[b][ph_mask[b]], prompt, target, prompt_loss_weight, drop, scripts[b], voiceless
            )
        )
    batch = pack(seqs, lm.layout, lm.latent_dims)
    B = batch.tokens.shape[0]
    any_blind = blind is not None and any(blind)
    if blind is not None and len(blind) != B:
        raise ValueError(f"blind: one flag per row ({B}), got {len(blind)}")
    if input_noise > 0 or any_blind:
        # [B, N, 1]: target latents = the latents after each row's Tp prompt latents (prompts stay clean,
        # whatever their loss weight: inference reads a real prompt)
        lat = batch.modality >= 0
        target = (lat & (lat.cumsum(1) > torch.tensor(n_prompt).view(B, 1))).unsqueeze(-1)  # n_prompt: [B, 1]
        inputs = batch.latents
        if input_noise > 0:
            std = torch.rand(B, 1, 1, generator=generator) * (2 * input_noise)  # [B, 1, 1]
            noise = torch.randn(batch.latents.shape, generator=generator) * std
            inputs = torch.where(target, batch.latents + noise, batch.latents)
        if any_blind:
            pure = torch.randn(batch.latents.shape, generator=generator)
            rows = torch.tensor([bool(x) for x in blind]).view(B, 1, 1)
            inputs = torch.where(target & rows, pure, inputs)
        batch.inputs = inputs
    return batch


def generation_prefix(
    lm: LatentLM,
    phonemes: list[Sequence[int]],
    prompts: list[Tensor],
    cfg: float,
    scripts: list[Sequence[int]] | None = None,
    drop_prompt: bool = False,
) -> tuple[Batch, Batch | None]:
    """Right-padded prefixes for ``LatentLM.generate`` (prompts: normalised [Tp, D] each) and, when
    cfg != 1, the unconditional rows (phonemes replaced by ``<null>``; with ``drop_prompt`` the prompt latents
    too, for a model trained with ``p_drop_prompt`` > 0). ``scripts`` (interleaved layout: each
    row's target phoneme ids): the first symbol's token ends the prefix (``<null>`` in the unconditional rows);
    decode the rest with ``interleaved_script``."""
    dims = lm.latent_dims

    def rows(drop: bool) -> list[list[Span]]:
        out = [prefix_spans(lm, p, z, drop, drop and drop_prompt) for p, z in zip(phonemes, prompts)]
        if scripts is not None:
            for spans, sc in zip(out, scripts):
                if len(sc) == 0:
                    raise ValueError("empty script")
                first = lm.layout.null if drop else int(lm.layout.text([sc[0]])[0])
                spans.append(Tokens(torch.tensor([first]), weight=0.0))
        return out

    cond = pack(rows(False), lm.layout, dims)
    return cond, (None if cfg == 1.0 else pack(rows(True), lm.layout, dims))


def interleaved_script(lm: LatentLM, scripts: list[Sequence[int]]) -> list[Tensor]:
    """What ``LatentLM.generate(script=...)`` still has to emit after ``generation_prefix(scripts=...)``: each
    row's target phoneme tokens but the first, as layout ids (read as ``<null>`` by the unconditional rows)."""
    return [lm.layout.text(list(sc)[1:]) for sc in scripts]
