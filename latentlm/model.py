"""LatentLM: one causal Transformer over discrete tokens and continuous latents (next-token diffusion).

Dimension legend: B batch, N positions, C model width, D latent dim of a modality, M selected positions, V vocab.

- Embeddings: discrete items through ``embed`` [V, C]; latent items of modality m through ``latent_in[m]``
  (Linear D_m -> C).
- Trunk: ``Transformer`` (pre-RMSNorm, RoPE, SwiGLU, SDPA, optional GQA, KV cache).
- LM head: Linear C -> V at every position, trained with cross-entropy on the next discrete token; a latent item's
  token is ``<lat>``, so the LM head also decides "another latent" vs "end of span".
- Diffusion heads: one ``DiffusionHead`` per modality, conditioned on the hidden state of the position *before*
  the latent, trained with the DDPM loss (``batch_mul`` noise draws per condition), sampled with DPM-Solver++.
- Latent statistics: per-modality mean/std buffers (measured on training data by the application and stored with
  the model); the model itself works in normalised space, see ``normalize`` / ``denormalize``.

Losses come back as a flat dict (``lm``, ``diff_<modality>``) and are combined with ``cfg.loss_weights``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlm.checkpoint import load_release, load_state_dict_strict, save_release
from latentlm.config import from_dict
from latentlm.head import DiffusionHead, HeadConfig
from latentlm.linear import DecodeLinear
from latentlm.sequence import Batch, TokenLayout
from latentlm.transformer import KVCache, Transformer, TransformerConfig


@dataclass
class LatentLMConfig:
    vocab_size: int = 256  # discrete vocabulary (text / phonemes), without special and boundary tokens
    trunk: TransformerConfig = field(default_factory=TransformerConfig)
    modalities: dict[str, HeadConfig] = field(default_factory=dict)  # name -> its diffusion head (latent_dim)
    loss_weights: dict[str, float] = field(default_factory=dict)  # "lm", "diff_<m>"; missing keys weigh 1.0
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        for name, head in self.modalities.items():
            if head.cond_dim != self.trunk.dim:
                raise ValueError(
                    f"modalities.{name}.cond_dim ({head.cond_dim}) must equal trunk.dim ({self.trunk.dim})"
                )
        known = {"lm"} | {f"diff_{m}" for m in self.modalities}
        unknown = set(self.loss_weights) - known
        if unknown:
            raise ValueError(f"loss_weights has unknown keys {sorted(unknown)}; valid: {sorted(known)}")


class LatentLM(nn.Module):
    def __init__(self, cfg: LatentLMConfig):
        super().__init__()
        self.cfg = cfg
        self.layout = TokenLayout(cfg.vocab_size, list(cfg.modalities))
        c = cfg.trunk.dim
        self.latent_dims = {m: h.latent_dim for m, h in cfg.modalities.items()}
        self.embed = nn.Embedding(self.layout.size, c)
        self.latent_in = nn.ModuleDict(
            {m: DecodeLinear(h.latent_dim, c, bias=False) for m, h in cfg.modalities.items()}
        )
        self.trunk = Transformer(cfg.trunk)
        self.lm_head = DecodeLinear(c, self.layout.size, bias=False)
        self.heads = nn.ModuleDict({m: DiffusionHead(h) for m, h in cfg.modalities.items()})
        for m, h in cfg.modalities.items():
            self.register_buffer(f"latent_mean_{m}", torch.zeros(h.latent_dim))
            self.register_buffer(f"latent_std_{m}", torch.ones(h.latent_dim))
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.lm_head.weight, std=0.02)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    # ------------------------------------------------------------------ latent statistics
    def set_latent_stats(self, modality: str, mean: Tensor, std: Tensor) -> None:
        if (std <= 0).any():
            raise ValueError("latent std must be positive")
        getattr(self, f"latent_mean_{modality}").copy_(mean)
        getattr(self, f"latent_std_{modality}").copy_(std)

    def latent_stats(self, modality: str, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """(mean, std) [D] of a modality's latents, on ``device`` (default: where the model is)."""
        mean, std = getattr(self, f"latent_mean_{modality}"), getattr(self, f"latent_std_{modality}")
        return (mean, std) if device is None else (mean.to(device), std.to(device))

    # statistics on z's device: batches are laid out on the CPU while the model may sit on a GPU
    def normalize(self, modality: str, z: Tensor) -> Tensor:  # [..., D] -> [..., D]
        mean, std = self.latent_stats(modality, z.device)
        return (z - mean) / std

    def denormalize(self, modality: str, z: Tensor) -> Tensor:  # [..., D] -> [..., D]
        mean, std = self.latent_stats(modality, z.device)
        return z * std + mean

    # ------------------------------------------------------------------ forward
    def embed_items(self, tokens: Tensor, latents: Tensor, modality: Tensor) -> Tensor:
        """tokens [B, N], latents [B, N, Dmax], modality [B, N] -> input embeddings [B, N, C]."""
        x = self.embed(tokens)  # [B, N, C]
        for i, (m, d) in enumerate(self.latent_dims.items()):
            sel = modality == i  # [B, N]
            if sel.any():
                proj = self.latent_in[m](latents[..., :d].to(x.dtype))  # [B, N, C]
                x = torch.where(sel.unsqueeze(-1), proj, x)
        return x

    def forward(self, batch: Batch, cache: KVCache | None = None) -> Tensor:
        """Hidden states [B, N, C] (after the trunk's final norm). Reads ``batch.inputs`` when set."""
        latents = batch.latents if batch.inputs is None else batch.inputs
        x = self.embed_items(batch.tokens, latents, batch.modality)
        return self.trunk(x, valid=batch.valid, cache=cache)

    def logits(self, hidden: Tensor) -> Tensor:  # [..., C] -> [..., V]
        return self.lm_head(hidden)

    # ------------------------------------------------------------------ training
    def losses(
        self, batch: Batch, generator: torch.Generator | None = None, hidden: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Flat dict of loss terms: ``lm`` (weighted CE) and ``diff_<m>`` per modality, plus ``lm_acc``
        (accuracy of the next-token prediction, a metric: not in the weights table). ``hidden``: this batch's
        forward output [B, N, C] when the caller already has it (for its own extra losses)."""
        hidden = self(batch) if hidden is None else hidden  # [B, N, C]
        h = hidden[:, :-1]  # position i predicts item i+1: [B, N-1, C]
        tgt_valid = batch.valid[:, 1:] & batch.valid[:, :-1]  # [B, N-1]
        w = batch.weight[:, 1:] * tgt_valid  # [B, N-1]
        out: dict[str, Tensor] = {}
        logits = self.logits(h).float()  # [B, N-1, V]
        ce = F.cross_entropy(logits.transpose(1, 2), batch.tokens[:, 1:], reduction="none")  # [B, N-1]
        denom = w.sum().clamp_min(1e-8)
        out["lm"] = (ce * w).sum() / denom
        with torch.no_grad():
            correct = (logits.argmax(-1) == batch.tokens[:, 1:]).float()
            out["lm_acc"] = (correct * (w > 0)).sum() / (w > 0).sum().clamp_min(1)
        for i, (m, d) in enumerate(self.latent_dims.items()):
            sel = (batch.modality[:, 1:] == i) & (w > 0)  # [B, N-1]
            if sel.any():
                cond = h[sel]  # [M, C]
                target = batch.latents[:, 1:][sel][:, :d]  # [M, D]
                out[f"diff_{m}"] = self.heads[m].loss(
                    target.to(cond.dtype), cond, mask=w[sel], generator=generator
                )
            else:  # keep every parameter in the graph (DDP) with a zero contribution
                out[f"diff_{m}"] = sum(p.sum() for p in self.heads[m].parameters()) * 0.0 + hidden.sum() * 0.0
        return out

    def loss_weight(self, key: str) -> float:
        return float(self.cfg.loss_weights.get(key, 1.0))

    def total_loss(self, terms: dict[str, Tensor]) -> Tensor:
        """Weighted sum over the trainable terms (``lm``, ``diff_*``); metrics are ignored."""
        keys = ["lm"] + [f"diff_{m}" for m in self.latent_dims]
        return sum(self.loss_weight(k) * terms[k] for k in keys if k in terms)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, prefix: Batch, **kwargs) -> list[list]:
        """Interleaved decoding; see ``latentlm.decoding.generate`` for the arguments.
        Returns per row the generated items: ints (layout token ids) and [D] latent tensors (normalised space)."""
        from latentlm.decoding import generate

        return generate(self, prefix, **kwargs)

    def generate_stream(self, prefix: Batch, **kwargs) -> Iterator:
        """Yields one ``decoding.Step`` per decoding step (for streaming front ends)."""
        from latentlm.decoding import iterate

        return iterate(self, prefix, **kwargs)

    # ------------------------------------------------------------------ releases
    def save_pretrained(self, directory: str | Path, meta: dict | None = None) -> Path:
        return save_release(directory, self, self.cfg, meta=meta, kind="latentlm")

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> LatentLM:
        sd, cfg_dict, _ = load_release(directory, kind="latentlm")
        model = cls(from_dict(LatentLMConfig, cfg_dict))
        load_state_dict_strict(model, sd, source=str(directory))
        return model.to(map_location).eval()
