"""Phoneme duration predictor: how many latent frames each phone (and pause) of a sentence takes, in the prompt
speaker's tempo. Interleaved synthesis forces these durations (``TTSConfig.timing = "predictor"``) instead of
letting the LM head decide when to move to the next symbol (FastSpeech 2, arXiv 2006.04558; RALL-E, arXiv
2404.03204, predicts durations for the same reason: free-running timing is where a codec LM derails).

Dimension legend: B sentences, N phoneme symbols, C channels.

    pred = DurationPredictor(DurationConfig())                 # trained by tts/duration_train.py
    rate = speaking_rate(prompt_frames, prompt_ids)            # VAE frames per phone unit of the prompt
    frames = pred.predict(ids, rate)                           # list[int], one per symbol, like tts.durations

Targets are ``tts.durations`` (the HMM aligner, tts/phone_hmm.py): a unit's frames sit on its LAST symbol, the
other symbols of a unit (stress marks) get 0, phone units >= 1 frame, pause units >= 0, leading silence on the
first unit and trailing silence on the last symbol. The network predicts log(1 + frames) at each unit's last
symbol from a few residual convolutions over the symbol embeddings, the speaker's tempo (log frames per phone
unit, measured on the prompt: whole clip frames / phone units, silences included) and two flags (first unit,
last symbol). Predictions are rounded on the running sum, so rounding errors do not add up over a sentence.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from latentlm.checkpoint import load_release, load_state_dict_strict, save_release
from latentlm.config import from_dict
from tts.phone_hmm import SYMBOLS, PhoneAligner, units


@dataclass
class DurationConfig:
    vocab_size: int = len(SYMBOLS)  # the front end's symbols (ids index tts.frontend.Vocab)
    channels: int = 128
    layers: int = 4
    kernel: int = 5
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.vocab_size < 1 or self.channels < 1 or self.layers < 1:
            raise ValueError("DurationConfig: vocab_size, channels and layers must be >= 1")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"DurationConfig.kernel must be odd, got {self.kernel}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DurationConfig.dropout must be in [0, 1), got {self.dropout}")


def phone_units(ids: Sequence[int]) -> int:
    """How many phone (non-pause) units a phoneme string has (tts.phone_hmm.units)."""
    return sum(not u.pause for u in units(ids))


def speaking_rate(frames: int, ids: Sequence[int]) -> float:
    """Tempo of a clip: its VAE frames per phone unit (silences included)."""
    return float(frames) / max(1, phone_units(ids))


def unit_targets(ids: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """Per symbol [N]: bool is a unit's last symbol, bool of a phone unit (>= 1 frame), float flags [N, 2] (first
    unit, last symbol)."""
    us = units(ids)
    last = torch.zeros(len(ids), dtype=torch.bool)
    phone = torch.zeros(len(ids), dtype=torch.bool)
    flags = torch.zeros(len(ids), 2)
    for k, u in enumerate(us):
        last[u.last] = True
        phone[u.last] = not u.pause
        if k == 0:
            flags[u.first : u.last + 1, 0] = 1.0
    flags[-1, 1] = 1.0
    return last, phone, flags


class _Block(nn.Module):
    def __init__(self, c: int, kernel: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(c, c, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(c)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # x [B, N, C], mask [B, N, 1]
        h = self.conv((x * mask).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(torch.relu(self.norm(h)))


class DurationPredictor(nn.Module):
    def __init__(self, cfg: DurationConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.embed = nn.Embedding(cfg.vocab_size, c)
        self.cond = nn.Linear(3, c)  # log tempo, first-unit flag, last-symbol flag
        self.blocks = nn.ModuleList(_Block(c, cfg.kernel, cfg.dropout) for _ in range(cfg.layers))
        self.out = nn.Linear(c, 1)

    def forward(self, ids: Tensor, mask: Tensor, log_rate: Tensor, flags: Tensor) -> Tensor:
        """ids [B, N] long, mask [B, N] bool, log_rate [B], flags [B, N, 2] -> log(1 + frames) [B, N]."""
        cond = torch.cat([log_rate[:, None, None].expand(-1, ids.shape[1], 1), flags], -1)  # [B, N, 3]
        x = self.embed(ids) + self.cond(cond)
        m = mask[..., None].to(x.dtype)
        for blk in self.blocks:
            x = blk(x, m)
        return self.out(x)[..., 0] * mask

    @torch.no_grad()
    def predict(self, ids: Sequence[int], rate: float, tempo: float = 1.0) -> list[int]:
        """Frames per symbol of one phoneme string (sum = the sentence's frames) at ``rate`` frames per phone
        unit; ``tempo`` > 1 speaks faster (every duration / tempo)."""
        if not ids:
            raise ValueError("duration predictor: empty phoneme ids")
        if not rate > 0 or not tempo > 0:
            raise ValueError(f"duration predictor: rate and tempo must be > 0, got {rate}, {tempo}")
        bad = [int(i) for i in ids if not 0 <= int(i) < self.cfg.vocab_size]
        if bad:
            raise ValueError(
                f"duration predictor: ids out of range for {self.cfg.vocab_size} symbols: {bad[:5]}"
            )
        was = self.training
        self.eval()
        last, phone, flags = unit_targets(ids)
        dev = next(self.parameters()).device
        x = torch.as_tensor(list(ids), dtype=torch.long, device=dev)[None]
        y = self(
            x,
            torch.ones_like(x, dtype=torch.bool),
            torch.tensor([math.log(rate)], device=dev),
            flags[None].to(dev),
        )
        self.train(was)
        cont = torch.expm1(y[0].float().cpu()).clamp(min=0.0) / tempo * last  # [N] frames, 0 off unit ends
        out, prev, run = [], 0, 0.0
        for k in range(len(ids)):
            run += float(cont[k])
            end = max(int(round(run)), prev + (1 if bool(phone[k]) else 0))
            out.append(end - prev)
            run = max(run, float(end))  # a phone bumped to 1 frame does not borrow from the next one
            prev = end
        return out


RELEASE_KIND = "tts_duration"
ALIGNER_FILE = (
    "aligner.json"  # the HMM aligner of the training durations, beside the predictor (continuation)
)


def save_predictor(
    model: DurationPredictor, directory, meta: dict | None = None, aligner: PhoneAligner | None = None
) -> Path:
    """Write the predictor as a release folder (model.safetensors + config.json), with ``aligner`` (a fitted
    tts.phone_hmm.PhoneAligner) as aligner.json when given."""
    out = save_release(directory, model, model.cfg, meta=meta, kind=RELEASE_KIND)
    if aligner is not None:
        (Path(out) / ALIGNER_FILE).write_text(json.dumps(aligner.to_dict()))
    return out


def load_aligner(directory) -> PhoneAligner | None:
    """The PhoneAligner saved beside a predictor (aligner.json), or None."""
    path = Path(directory) / ALIGNER_FILE
    return PhoneAligner.from_dict(json.loads(path.read_text())) if path.is_file() else None


def load_predictor(directory, device: str | torch.device = "cpu") -> DurationPredictor:
    """A predictor release folder -> DurationPredictor (eval mode). Safetensors only (no pickles)."""
    sd, cfg, _ = load_release(directory, kind=RELEASE_KIND)
    model = DurationPredictor(from_dict(DurationConfig, cfg))
    load_state_dict_strict(model, sd, source=str(directory))
    return model.to(device).eval()
