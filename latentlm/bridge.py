"""A step bridge: the trunk's next hidden state predicted without a trunk call (multi-token prediction).

Each latent frame a decoder samples costs one trunk call: the hidden state before latent j+1 needs latent j (and
the interleaved tokens the plan puts between them) run through every layer. A bridge predicts that state from
what the decoder already holds: the hidden state h_j the head sampled latent z_j from, z_j itself, and the
tokens between z_j and the next latent (at most ``max_tokens``; a plan knows them before decoding):

    h'_{j+1} = h_j + out(blocks(in([rms(h_j), z_j, E(t_1), ..., E(t_K)])))        (empty token slots: zeros)

A decoder using it (latentlm/decoding.py ``_follow``) samples every second latent of a row from h' and then feeds
both latents, with the tokens around them, to the trunk in one call: half the trunk calls per second of speech,
at the price of one small MLP per bridged frame. The trunk still reads every latent, so an error of the bridge
stays in the frame it made instead of compounding. DeepSeek-V3's multi-token prediction module (arXiv
2412.19437) combines a hidden state with the next token's embedding the same way; Medusa (arXiv 2401.10774)
drafts further tokens from one hidden state. Trained on a release's own decoding (``tts.train_bridge``): the
trunk's states recorded along its plans, the bridge fitted to land on the next one.

Dimension legend: M rows, C trunk width, D latent dim, K token slots, W bridge width.

On disk, beside a release: ``DIRNAME/model.safetensors`` and ``DIRNAME/config.json`` (``BridgeConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlm.checkpoint import load_release, load_state_dict_strict, save_release
from latentlm.config import from_dict

DIRNAME = "step_bridge"
KIND = "step_bridge"


@dataclass
class BridgeConfig:
    dim: int = 256  # C: the trunk's width (its hidden states, after the final norm)
    latent_dim: int = 32  # D: one item's latent (the modality's latent_dim)
    vocab: int = 256  # the layout's size (token ids 0 .. vocab-1; id ``vocab`` is an empty slot)
    max_tokens: int = 4  # K: tokens between two latents it can read (more: that latent runs the trunk)
    chain: int = 1  # latents bridged in a row at most before the trunk runs again (decoding's setting)
    token_dim: int = 64
    width: int = 256  # W
    depth: int = 2  # residual SwiGLU blocks
    mlp_ratio: float = 3.0
    modality: str = "audio"

    def __post_init__(self) -> None:
        for name in ("dim", "latent_dim", "vocab", "max_tokens", "chain", "token_dim", "width", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"BridgeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"BridgeConfig.mlp_ratio must be positive, got {self.mlp_ratio}")


def _rms(x: Tensor, eps: float = 1e-6) -> Tensor:
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)


class _Block(nn.Module):
    """x + down(silu(gate) * up) of rms(x) * weight."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm = nn.Parameter(torch.ones(width))
        self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(_rms(x) * self.norm).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class StepBridge(nn.Module):
    def __init__(self, cfg: BridgeConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab + 1, cfg.token_dim, padding_idx=cfg.vocab)
        self.inp = nn.Linear(cfg.dim + cfg.latent_dim + cfg.max_tokens * cfg.token_dim, cfg.width)
        hidden = int(cfg.width * cfg.mlp_ratio)
        self.blocks = nn.ModuleList([_Block(cfg.width, hidden) for _ in range(cfg.depth)])
        self.norm = nn.Parameter(torch.ones(cfg.width))
        self.out = nn.Linear(cfg.width, cfg.dim)
        nn.init.zeros_(self.out.weight)  # it starts as h' = h_j: the previous state, a floor to improve on
        nn.init.zeros_(self.out.bias)
        # a faster stand-in for forward at decode time (latentlm/onnx_step.py OnnxBridgeRuntime); never saved
        self.runtime = None

    def forward(self, h: Tensor, z: Tensor, tokens: Tensor) -> Tensor:
        """h [M, C] hidden states, z [M, D] the latents sampled from them (as the trunk reads them), tokens
        [M, K] the token ids after each (``cfg.vocab`` in empty slots) -> h' [M, C] the predicted states."""
        c = self.cfg
        if h.shape[-1] != c.dim or z.shape[-1] != c.latent_dim or tokens.shape[-1] != c.max_tokens:
            raise ValueError(
                f"StepBridge: expected h [M, {c.dim}], z [M, {c.latent_dim}], tokens [M, {c.max_tokens}]; got "
                f"{list(h.shape)}, {list(z.shape)}, {list(tokens.shape)}"
            )
        if self.runtime is not None and not torch.is_grad_enabled() and h.device.type == "cpu":
            return self.runtime(h, z, tokens).to(h.dtype)
        return self.predict(h, z, tokens)

    def predict(self, h: Tensor, z: Tensor, tokens: Tensor) -> Tensor:
        """``forward``'s arithmetic, always eager (what the ONNX export traces)."""
        e = self.tok(tokens).flatten(-2)  # [M, K * token_dim]
        x = self.inp(torch.cat([_rms(h.float()), z.float(), e], dim=-1))  # [M, W]
        for blk in self.blocks:
            x = blk(x)
        return (h.float() + self.out(_rms(x) * self.norm)).to(h.dtype)


def save_bridge(directory: str | Path, bridge: StepBridge, meta: dict | None = None) -> Path:
    """Write ``directory`` (normally RELEASE/step_bridge) with the bridge's weights and config."""
    return save_release(directory, bridge, bridge.cfg, meta=meta or {}, kind=KIND)


def load_bridge(directory: str | Path, map_location="cpu") -> StepBridge:
    sd, cfg_dict, _ = load_release(directory, kind=KIND)
    bridge = StepBridge(from_dict(BridgeConfig, cfg_dict))
    load_state_dict_strict(bridge, sd, source=str(directory))
    return bridge.to(map_location).eval()


def bridge_plan(
    plan: list[int], lat: int, empty: int, max_tokens: int, chain: int = 1
) -> tuple[list[bool], list[list[int]]]:
    """One row's plan (token ids, ``lat`` for latents) -> per step: whether its latent is bridged, and the token
    slots [K] the bridge reads there (``empty``-padded; [] where not bridged). A latent is bridged when at most
    ``max_tokens`` tokens lie between it and the row's previous latent and fewer than ``chain`` latents in a row
    were bridged before it (``chain`` 1: every second latent at most; 2: two of every three, the second bridged
    from the first's predicted state); the row's first latent never is (nothing to bridge from). Depends on the
    plan only, so a row decodes the same alone or in any batch."""
    bridged = [False] * len(plan)
    slots: list[list[int]] = [[] for _ in plan]
    prev, run = None, 0  # step of the row's previous latent; bridged latents since the trunk's last
    for t, tok in enumerate(plan):
        if tok != lat:
            continue
        between = plan[prev + 1 : t] if prev is not None else None
        if between is not None and len(between) <= max_tokens and run < chain:
            bridged[t] = True
            slots[t] = between + [empty] * (max_tokens - len(between))
            run += 1
        else:
            run = 0
        prev = t
    return bridged, slots


def bridge_pairs(
    tokens: Tensor, latents: Tensor, is_lat: Tensor, hidden: Tensor, lat: int, empty: int, max_tokens: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One row's items as the trunk read them -> its training pairs for a bridge: every latent a followed by a
    latent b with at most ``max_tokens`` tokens between. tokens [N], latents [N, D], is_lat Bool[N], hidden [N, C]
    (the trunk's output at each item) -> (h [P, C] = hidden[a-1], z [P, D] = latents[a], slots [P, K], target
    [P, C] = hidden[b-1])."""
    pos = is_lat.nonzero().squeeze(-1).tolist()
    src, dst, slots = [], [], []
    for a, b in zip(pos, pos[1:]):
        between = tokens[a + 1 : b].tolist()
        if a < 1 or len(between) > max_tokens:
            continue
        src.append(a)
        dst.append(b)
        slots.append(between + [empty] * (max_tokens - len(between)))
    s, d = torch.tensor(src, dtype=torch.long), torch.tensor(dst, dtype=torch.long)
    k = torch.tensor(slots, dtype=torch.long).reshape(len(src), max_tokens)
    return hidden[s - 1], latents[s], k, hidden[d - 1]
