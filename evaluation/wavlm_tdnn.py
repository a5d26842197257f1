"""WavLM-TDNN: the speaker-similarity model of VALL-E / LatentLM / F5-TTS (UniSpeech ``ECAPA_TDNN_SMALL``).

    model, ignored = load_wavlm_tdnn("wavlm_large_finetune.pth")   # strict key + shape check, weights_only
    emb = model(wav)                                                # wav (B, S) 16 kHz equal lengths -> (B, 256)
    sim = F.cosine_similarity(emb_a, emb_b)

Written from the public reference (microsoft/UniSpeech ``downstreams/speaker_verification/models/ecapa_tdnn.py``,
vendored by F5-TTS as ``src/f5_tts/eval/ecapa_tdnn.py``) with ``feat_type='wavlm_large'``,
``feature_selection='hidden_states'``:
- ``feature_extract``: s3prl's WavLM upstream = per-utterance ``layer_norm`` of the waveform, then WavLM-Large;
  its 25 hidden states (every layer's input + the final normed output) are mixed by softmax(``feature_weight``);
- ECAPA-TDNN head (channels 512): InstanceNorm over time, Conv1d-ReLU-BN (k=5), three SE-Res2Blocks (k=3,
  dilation 2/3/4, scale 8), concat -> 1x1 conv to 1536, attentive statistics pooling, BN, Linear -> 256.
State-dict names are the reference's, so ``torch.load(path)["model"]`` loads with strict=True once the
training-only AAM-softmax weights (``loss_calculator.*``) are set aside.

Dimensions: B batch, S samples, T frames (50 Hz), C WavLM dim (1024), L hidden states (25),
Ch TDNN channels (512), P pooled channels (1536), E embedding (256).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from evaluation.wavlm_encoder import WavLM, WavLMConfig

# Keys the published checkpoint carries that are not part of the scorer: the AAM-softmax class projection used
# while fine-tuning on VoxCeleb (``loss_calculator.projection.weight``). Anything else unexpected is an error.
TRAINING_ONLY_PREFIXES = ("loss_calculator.",)


@dataclass
class EcapaHeadConfig:
    """Defaults = UniSpeech ECAPA_TDNN_SMALL (channels 512, emb_dim 256)."""

    channels: int = 512
    pool_channels: int = 1536  # the reference hard-codes 1536 (= 3 x 512 for the small model)
    attention_channels: int = 128
    se_bottleneck: int = 128
    res2_scale: int = 8
    emb_dim: int = 256

    def __post_init__(self):
        if (
            min(self.channels, self.pool_channels, self.attention_channels, self.se_bottleneck, self.emb_dim)
            < 1
        ):
            raise ValueError(f"EcapaHeadConfig sizes must be positive: {self}")
        if self.res2_scale < 2 or self.channels % self.res2_scale:
            raise ValueError(f"channels {self.channels} must divide by res2_scale {self.res2_scale} (>= 2)")


class Conv1dReluBn(nn.Module):
    def __init__(self, n_in: int, n_out: int, kernel: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel, padding=padding)
        self.bn = nn.BatchNorm1d(n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))  # order conv -> relu -> bn, as in the reference


class Res2Conv1dReluBn(nn.Module):
    """Split channels into ``scale`` groups; group i (i < scale - 1) sees its own slice plus group i-1's output."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int):
        super().__init__()
        self.width = channels // scale
        self.convs = nn.ModuleList(
            nn.Conv1d(self.width, self.width, kernel, padding=dilation, dilation=dilation)
            for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.width, dim=1)  # scale x (B, Ch / scale, T)
        out, sp = [], None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            sp = parts[i] if i == 0 else sp + parts[i]
            sp = bn(F.relu(conv(sp)))
            out.append(sp)
        out.append(parts[-1])  # the last group passes through
        return torch.cat(out, dim=1)  # (B, Ch, T)


class SEConnect(nn.Module):
    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))  # (B, Ch)
        return x * s[:, :, None]


class SERes2Block(nn.Module):
    """Input and output widths are equal in ECAPA_TDNN_SMALL, so the reference's shortcut conv never exists."""

    def __init__(self, cfg: EcapaHeadConfig, dilation: int):
        super().__init__()
        ch = cfg.channels
        self.Conv1dReluBn1 = Conv1dReluBn(ch, ch)
        self.Res2Conv1dReluBn = Res2Conv1dReluBn(ch, 3, dilation, cfg.res2_scale)
        self.Conv1dReluBn2 = Conv1dReluBn(ch, ch)
        self.SE_Connect = SEConnect(ch, cfg.se_bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.SE_Connect(self.Conv1dReluBn2(self.Res2Conv1dReluBn(self.Conv1dReluBn1(x))))


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over time (no global context)."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.linear1 = nn.Conv1d(channels, attention_channels, kernel_size=1)
        self.linear2 = nn.Conv1d(attention_channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x))), dim=2)  # (B, P, T)
        mean = torch.sum(alpha * x, dim=2)
        var = torch.sum(alpha * x**2, dim=2) - mean**2
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-9))], dim=1)  # (B, 2P)


class WavLMUpstream(nn.Module):
    """s3prl's WavLM wrapper: normalise each waveform (WavLM-Large's ``normalize=True``), return hidden states."""

    def __init__(self, cfg: WavLMConfig):
        super().__init__()
        self.model = WavLM(cfg)

    def forward(self, wav: torch.Tensor) -> list[torch.Tensor]:
        return self.model.hidden_states(F.layer_norm(wav, wav.shape[-1:]))  # L x (B, T, C)


class WavLMTDNN(nn.Module):
    def __init__(self, wavlm: WavLMConfig | None = None, head: EcapaHeadConfig | None = None):
        super().__init__()
        self.wavlm_cfg, self.head_cfg = wavlm or WavLMConfig(), head or EcapaHeadConfig()
        w, h = self.wavlm_cfg, self.head_cfg
        self.feature_extract = WavLMUpstream(w)
        self.feature_weight = nn.Parameter(torch.zeros(w.num_layers + 1))
        self.instance_norm = nn.InstanceNorm1d(w.dim)  # no affine, no running stats: no parameters
        self.layer1 = Conv1dReluBn(w.dim, h.channels, kernel=5, padding=2)
        self.layer2 = SERes2Block(h, dilation=2)
        self.layer3 = SERes2Block(h, dilation=3)
        self.layer4 = SERes2Block(h, dilation=4)
        self.conv = nn.Conv1d(3 * h.channels, h.pool_channels, kernel_size=1)
        self.pooling = AttentiveStatsPool(h.pool_channels, h.attention_channels)
        self.bn = nn.BatchNorm1d(2 * h.pool_channels)
        self.linear = nn.Linear(2 * h.pool_channels, h.emb_dim)

    @property
    def min_samples(self) -> int:
        """Shortest input giving 2 WavLM frames (instance norm over time needs more than one)."""
        n = 2
        for _, kernel, stride in reversed(self.wavlm_cfg.conv_layers):
            n = (n - 1) * stride + kernel
        return n

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, S) -> instance-normalised layer mix (B, C, T)."""
        states = torch.stack(self.feature_extract(wav), dim=0)  # (L, B, T, C)
        weights = F.softmax(self.feature_weight, dim=-1)[:, None, None, None]  # (L, 1, 1, 1)
        x = (weights * states).sum(dim=0).transpose(1, 2) + 1e-6  # (B, T, C) -> (B, C, T)
        return self.instance_norm(x)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, S) mono 16 kHz, equal lengths (no padding mask: embed utterances one by one) -> (B, E)."""
        if wav.ndim != 2 or wav.shape[1] < self.min_samples:
            raise ValueError(
                f"expected (B, S) audio with S >= {self.min_samples} samples, got {tuple(wav.shape)}"
            )
        out1 = self.layer1(self.features(wav))  # (B, Ch, T)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        out = F.relu(self.conv(torch.cat([out2, out3, out4], dim=1)))  # (B, 3Ch, T) -> (B, P, T)
        return self.linear(self.bn(self.pooling(out)))  # (B, 2P) -> (B, E)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a UniSpeech checkpoint, read with weights_only=True (no arbitrary pickles)."""
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's restricted unpickler refused the file
        detail = str(e).split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0].split(" was not ")[0]
        if "Unsupported global" in detail:
            raise ValueError(
                f"{path}: the checkpoint holds objects other than tensors and plain containers ({detail}); "
                "it is refused rather than unpickled (torch.load weights_only=True)"
            ) from None
        raise ValueError(f"{path}: cannot read as a torch checkpoint ({detail})") from None
    except Exception as e:  # not a zip / truncated / ...
        raise ValueError(f"{path}: cannot read as a torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        found = sorted(map(str, ckpt))[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"{path}: expected a dict with a 'model' state dict (UniSpeech layout), found {found}"
        )
    state = ckpt["model"]
    bad = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise ValueError(f"{path}: state dict entries that are not tensors: {_names(bad)}")
    return state


def _names(keys: list[str], n: int = 12) -> str:
    more = f" ... and {len(keys) - n} more" if len(keys) > n else ""
    return f"{len(keys)}: " + ", ".join(keys[:n]) + more


def load_wavlm_tdnn(
    path: str | Path, wavlm: WavLMConfig | None = None, head: EcapaHeadConfig | None = None
) -> tuple[WavLMTDNN, list[str]]:
    """Build WavLMTDNN and load ``path``; every parameter and buffer must be present with its exact shape.

    Returns (model in eval mode, float32, on the CPU; the training-only keys that were set aside).
    """
    state = read_checkpoint(path)
    with torch.device("meta"):  # no random init of 320M parameters: the checkpoint supplies every tensor
        model = WavLMTDNN(wavlm, head)
    expected = model.state_dict()
    ignored = sorted(k for k in state if k.startswith(TRAINING_ONLY_PREFIXES))
    state = {k: v for k, v in state.items() if k not in ignored}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [f"missing keys {_names(missing)}"] if missing else []
        parts += [f"unexpected keys {_names(unexpected)}"] if unexpected else []
        raise ValueError(f"{path}: not a WavLM-Large + ECAPA_TDNN_SMALL checkpoint: " + "; ".join(parts))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(f"{path}: tensor shapes differ from the model's: {_names(wrong, 6)}")
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval(), ignored
