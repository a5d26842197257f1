"""A phone recogniser over VAE latents: scores how well a take says its text, to pick the best of several takes.

Dimension legend: B utterances, T latent frames, D latent dim, C channels, K = 2 T output steps, V symbols,
U phone targets.

An autoregressive sampler draws a different take each time, and on the real-voice dev set the best of three
seeds (judged by Whisper) hears ~5.5 points more words than their mean. Tortoise TTS draws many takes and keeps
the ones its own contrastive text-speech model (CLVP) ranks highest; here the judge is a small CTC phone
recogniser trained on the same latents as the LM (training speakers only). It is never the evaluation's ASR
(Whisper), so the scores of a best-of-N release still mean what they say.

    v = PhoneVerifier(VerifierConfig())                  # trained by tts/verifier_train.py
    nll = v.score([latents_a, latents_b], [ids, ids])    # float32 [2]: CTC NLL per phone, lower = better
    save_verifier(v, "release/verifier"); v = load_verifier("release/verifier")

Targets: the phone units of tts.phone_hmm.units (a phone with its length/syllabic marks is one unit, stress marks
and pauses are not targets), each as its base symbol id; the blank is id V. Features: the latents normalised
per utterance and dim (as the aligner does: the voice's and channel's offsets go), then a stack of residual
convolutions, each output frame read twice (K = 2 T: CTC needs a step per phone and a blank between repeats,
and fast speech has >12 phones/s at 25 frames/s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentlm.checkpoint import load_release, load_state_dict_strict, save_release
from latentlm.config import from_dict
from tts.phone_hmm import SYMBOLS, units

RELEASE_KIND = "tts_verifier"
DIRNAME = "verifier"


@dataclass
class VerifierConfig:
    latent_dim: int = 32
    n_symbols: int = len(SYMBOLS)  # V; the blank is V
    channels: int = 192
    layers: int = 6
    kernel: int = 5
    upsample: int = 2  # output steps per latent frame
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.kernel % 2 == 0 or self.kernel < 1:
            raise ValueError(f"verifier: kernel must be odd and >= 1, got {self.kernel}")
        if min(self.latent_dim, self.n_symbols, self.channels, self.layers, self.upsample) < 1:
            raise ValueError("verifier: latent_dim, n_symbols, channels, layers and upsample must be >= 1")


def phone_targets(ids: Sequence[int], symbols: Sequence[str] = SYMBOLS) -> list[int]:
    """Phoneme ids [N] -> the ids of their phone units' base symbols [U] (pauses and stress marks dropped)."""
    return [u.cls for u in units(ids, symbols) if not u.pause]


def normalise(latents: Tensor, lengths: Tensor) -> Tensor:
    """[B, T, D] padded latents, [B] lengths -> per-utterance, per-dim standardised [B, T, D] (padding 0)."""
    mask = (torch.arange(latents.shape[1], device=latents.device)[None] < lengths[:, None])[..., None]  # [B, T, 1]
    n = lengths.clamp(min=1)[:, None, None].to(latents.dtype)
    mean = (latents * mask).sum(1, keepdim=True) / n
    var = (((latents - mean) * mask) ** 2).sum(1, keepdim=True) / n
    return (latents - mean) / var.sqrt().clamp(min=1e-3) * mask


class _Block(nn.Module):
    def __init__(self, c: int, kernel: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(c, c, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(c)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # [B, T, C]
        return x + self.drop(F.gelu(self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)))


class PhoneVerifier(nn.Module):
    def __init__(self, cfg: VerifierConfig):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Linear(cfg.latent_dim, cfg.channels)
        self.blocks = nn.ModuleList(_Block(cfg.channels, cfg.kernel, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.channels)
        self.out = nn.Linear(cfg.channels, cfg.upsample * (cfg.n_symbols + 1))

    def forward(self, latents: Tensor, lengths: Tensor) -> Tensor:
        """[B, T, D] latents (padded), [B] lengths -> log-probabilities [B, K = upsample T, V + 1]."""
        x = self.inp(normalise(latents, lengths))
        for b in self.blocks:
            x = b(x)
        y = self.out(self.norm(x))  # [B, T, upsample (V + 1)]
        B, T, _ = y.shape
        return y.reshape(B, T * self.cfg.upsample, self.cfg.n_symbols + 1).log_softmax(-1)

    def ctc(self, latents: Tensor, lengths: Tensor, targets: list[list[int]]) -> Tensor:
        """Per-utterance CTC NLL divided by its phone count, float32 [B] (inf where the take is too short)."""
        logp = self(latents, lengths).transpose(0, 1).float()  # [K, B, V + 1]
        tl = torch.tensor([len(t) for t in targets], dtype=torch.long)
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long)
        nll = F.ctc_loss(logp, flat, lengths.cpu() * self.cfg.upsample, tl, blank=self.cfg.n_symbols,
                         reduction="none", zero_infinity=False)
        return nll / tl.clamp(min=1).to(nll)

    @torch.no_grad()
    def score(self, latents: Sequence[Tensor], ids: Sequence[Sequence[int]]) -> Tensor:
        """Takes [T_b, D] and their phoneme ids [N_b] -> CTC NLL per phone, float32 [B] (lower: says its text
        better). A take with no phone, or too short for its phones, scores inf."""
        if len(latents) != len(ids) or not latents:
            raise ValueError("verifier: give one phoneme id list per take, and at least one take")
        dev = next(self.parameters()).device
        lengths = torch.tensor([z.shape[0] for z in latents])
        x = nn.utils.rnn.pad_sequence([z.float().to(dev) for z in latents], batch_first=True)
        targets = [phone_targets(i) for i in ids]
        was = self.training
        self.eval()
        out = self.ctc(x, lengths.to(dev), targets).cpu()
        self.train(was)
        out[torch.tensor([not t for t in targets])] = float("inf")
        return out


def save_verifier(model: PhoneVerifier, directory, meta: dict | None = None) -> Path:
    """Write the verifier as a release folder (model.safetensors + config.json)."""
    return save_release(directory, model, model.cfg, meta=meta, kind=RELEASE_KIND)


def load_verifier(directory, device: str | torch.device = "cpu") -> PhoneVerifier:
    """A verifier release folder -> PhoneVerifier (eval mode). Safetensors only (no pickles)."""
    sd, cfg, _ = load_release(directory, kind=RELEASE_KIND)
    model = PhoneVerifier(from_dict(VerifierConfig, cfg))
    load_state_dict_strict(model, sd, source=str(directory))
    return model.to(device).eval()
