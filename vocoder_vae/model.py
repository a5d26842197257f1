"""AudioVAE: causal conv encoder (waveform -> latent frames), sigma-VAE bottleneck, decoder = the vocoder.

Dimension legend: B batch, L samples, T latent frames (L = T * hop), D latent dim, C channels.

    vae = AudioVAE.from_pretrained("checkpoints/vae_small")
    z = vae.encode(wav, sample_rate)          # [T, D] latent means at vae.frame_rate
    wav_out = vae.decode(z)                   # [T * hop] float32 at vae.sample_rate
    for chunk in vae.decode_stream(chunks):   # chunks of [t, D]; outputs [t * hop] each
        ...
    zn = vae.normalize(z)                     # (z - mean) / std with stats measured on training data
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from latentlm.checkpoint import load_release, load_state_dict_strict, save_release
from latentlm.config import from_dict
from latentlm.sigma_vae import BottleneckConfig, BottleneckOutput, make_bottleneck
from vocoder_vae.audio import prepare
from vocoder_vae.frame_nets import ConvNeXtDecoder, FrameNetConfig, MelEncoder
from vocoder_vae.modules import CausalConv1d, DecoderBlock, EncoderBlock, ISTFTHead, prod

RELEASE_KIND = "audio_vae"


@dataclass
class VAEConfig:
    sample_rate: int = 16000
    strides: list[int] = field(default_factory=lambda: [2, 4, 8, 10])  # encoder; hop = product
    channels: int = 32  # encoder width at the waveform rate; doubles per block up to max_channels
    max_channels: int = 512
    dilations: list[int] = field(default_factory=lambda: [1, 3, 9])  # residual units per block
    decoder_channels: int = 256  # decoder width at the latent rate; halves per block
    decoder_head: Literal["waveform", "istft"] = "waveform"
    istft_hop: int = 0  # istft head: samples per STFT frame (decoder upsamples to sample_rate / istft_hop)
    decoder_upsample: list[int] = field(
        default_factory=list
    )  # decoder strides; [] = reversed encoder strides
    bottleneck: BottleneckConfig = field(default_factory=BottleneckConfig)
    # "mel": causal log-mel front end + ConvNeXt at the frame rate (frame_nets.py); only prod(strides) is used.
    encoder_kind: Literal["conv", "mel"] = "conv"
    # "convnext": ConvNeXt trunks + iSTFT head at frame.frame_hop (frame_nets.py); decoder_* fields unused.
    decoder_kind: Literal["conv", "convnext"] = "conv"
    frame: FrameNetConfig = field(default_factory=FrameNetConfig)

    def __post_init__(self):
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be positive ints, got {self.strides}")
        if "mel" == self.encoder_kind or "convnext" == self.decoder_kind:
            if self.frame.frame_hop <= 0 or self.hop % self.frame.frame_hop:
                raise ValueError(
                    f"frame.frame_hop {self.frame.frame_hop} must be a positive divisor of hop {self.hop}"
                )
        if self.decoder_kind == "convnext":
            return
        if self.decoder_head == "istft":
            if self.istft_hop <= 0 or self.hop % self.istft_hop:
                raise ValueError(f"istft_hop {self.istft_hop} must be a positive divisor of hop {self.hop}")
        need = self.hop // (self.istft_hop if self.decoder_head == "istft" else 1)
        if prod(self.decoder_strides) != need:
            raise ValueError(
                f"decoder strides {self.decoder_strides} multiply to {prod(self.decoder_strides)}, need {need} "
                "(hop / istft_hop for the istft head): set decoder_upsample"
            )

    @property
    def hop(self) -> int:
        return prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def decoder_strides(self) -> list[int]:
        """Decoder upsampling factors: decoder_upsample, else the reversed encoder strides (waveform head),
        or their longest prefix that leaves exactly istft_hop for the istft head."""
        if self.decoder_upsample:
            return list(self.decoder_upsample)
        rev = list(reversed(self.strides))
        if self.decoder_head == "waveform":
            return rev
        for k in range(len(rev), -1, -1):
            if prod(rev[k:]) == self.istft_hop:
                return rev[:k]
        return []


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig, out_channels: int):
        super().__init__()
        c = cfg.channels
        layers: list[nn.Module] = [CausalConv1d(1, c, 7)]
        for s in cfg.strides:
            c_next = min(2 * c, cfg.max_channels)
            layers.append(EncoderBlock(c, c_next, s, tuple(cfg.dilations)))
            c = c_next
        layers += [nn.ELU(), CausalConv1d(c, out_channels, 3)]
        self.net = nn.Sequential(*layers)

    def forward(self, wav: Tensor) -> Tensor:  # [B, 1, L] -> [B, out_channels, L / hop]
        return self.net(wav)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        c = cfg.decoder_channels
        self.conv_in = CausalConv1d(cfg.bottleneck.latent_dim, c, 7)
        blocks = []
        for s in cfg.decoder_strides:
            blocks.append(DecoderBlock(c, max(c // 2, 16), s, tuple(cfg.dilations)))
            c = max(c // 2, 16)
        self.blocks = nn.ModuleList(blocks)
        self.act = nn.ELU()
        self.istft = cfg.decoder_head == "istft"
        if self.istft:
            self.head = ISTFTHead(c, cfg.istft_hop)
        else:
            self.head = CausalConv1d(c, 1, 7)

    def forward(self, z: Tensor) -> Tensor:  # [B, D, T] -> [B, 1, T * hop]
        x = self.conv_in(z)
        for b in self.blocks:
            x = b(x)
        y = self.head(self.act(x))
        return y if self.istft else torch.tanh(y)

    def step(self, z: Tensor, state: list | None) -> tuple[Tensor, list]:
        """Streaming decode of a chunk of frames [B, D, t] -> [B, 1, t * hop], carrying ``state``."""
        state = state or [None] * (len(self.blocks) + 2)
        x, s_in = self.conv_in.step(z, state[0])
        new = [s_in]
        for b, s in zip(self.blocks, state[1:-1]):
            x, s = b.step(x, s)
            new.append(s)
        y, s_head = self.head.step(self.act(x), state[-1])
        new.append(s_head)
        return (y if self.istft else torch.tanh(y)), new


class AudioVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.release_meta: dict = {}  # meta of the release it was loaded from: kept when re-saved
        self.bottleneck = make_bottleneck(cfg.bottleneck)
        if cfg.encoder_kind == "mel":
            self.encoder = MelEncoder(cfg.sample_rate, cfg.hop, cfg.frame, self.bottleneck.in_channels)
        else:
            self.encoder = Encoder(cfg, self.bottleneck.in_channels)
        if cfg.decoder_kind == "convnext":
            self.decoder = ConvNeXtDecoder(cfg.bottleneck.latent_dim, cfg.hop, cfg.frame)
        else:
            self.decoder = Decoder(cfg)
        d = cfg.bottleneck.latent_dim
        # Per-dim stats of latent means on training data (set by the trainer at export), for normalize().
        self.register_buffer("latent_mean", torch.zeros(d))
        self.register_buffer("latent_std", torch.ones(d))

    # ---- attributes -------------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def hop(self) -> int:
        return self.cfg.hop

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def latent_dim(self) -> int:
        return self.cfg.bottleneck.latent_dim

    @property
    def device(self) -> torch.device:
        return self.latent_mean.device

    # ---- training-time tensors ----------------------------------------------------------------------------
    def pad_to_hop(self, wav: Tensor) -> Tensor:
        """Right-pad [..., L] with zeros to a multiple of hop (padding after the end cannot change the past)."""
        rem = (-wav.shape[-1]) % self.hop
        return torch.nn.functional.pad(wav, (0, rem)) if rem else wav

    def forward(
        self, wav: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, BottleneckOutput]:
        """[B, 1, L] (L a multiple of hop) -> (reconstruction [B, 1, L], bottleneck output with z, mu [B, D, T])."""
        if wav.shape[-1] % self.hop:
            raise ValueError(f"waveform length {wav.shape[-1]} is not a multiple of hop {self.hop}")
        out = self.bottleneck(self.encoder(wav), channel_dim=1, generator=generator)
        return self.decoder(out.z), out

    def encode_frames(self, wav: Tensor) -> Tensor:
        """Deterministic latent means: [B, 1, L] -> [B, D, ceil(L / hop)]."""
        return self.bottleneck.mean(self.encoder(self.pad_to_hop(wav)), channel_dim=1)

    def decode_frames(self, z: Tensor) -> Tensor:
        """[B, D, T] -> [B, 1, T * hop]."""
        return self.decoder(z)

    # ---- public API -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, wav, sample_rate: int) -> Tensor:
        """Any-rate mono/stereo int/float audio -> latent means [T, D] (T = ceil(L * sr / sample_rate / hop))."""
        x = prepare(wav, sample_rate, self.sample_rate).to(self.device)
        was_training = self.training
        self.eval()
        z = self.encode_frames(x[None, None])[0].T  # [D, T] -> [T, D]
        self.train(was_training)
        return z

    def _check_latents(self, z, name: str = "latents") -> Tensor:
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{name}: expected shape [T, {self.latent_dim}], got {tuple(z.shape)}")
        if z.shape[0] == 0:
            raise ValueError(f"{name}: no frames to decode")
        if not torch.isfinite(z).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        return z

    @torch.no_grad()
    def decode(self, latents) -> Tensor:
        """Latent frames [T, D] (unnormalised) -> waveform [T * hop] float32 at ``sample_rate``."""
        z = self._check_latents(latents)
        return self.decoder(z.T[None])[0, 0].float()  # [1, D, T] -> [T * hop]

    @torch.no_grad()
    def decode_stream(self, latent_chunks: Iterable) -> Iterator[Tensor]:
        """Decode chunks of frames [t_i, D] one by one -> waveform chunks [t_i * hop]; equals ``decode`` of the
        concatenation (the decoder is causal and carries its convolution state between chunks)."""
        state = None
        for i, chunk in enumerate(latent_chunks):
            z = self._check_latents(chunk, name=f"latent chunk {i}")
            y, state = self.decoder.step(z.T[None], state)
            yield y[0, 0].float()

    # ---- normalisation -------------------------------------------------------------------------------------
    @property
    def latent_stats(self) -> tuple[Tensor, Tensor]:
        """(mean [D], std [D]) of latent means over training data."""
        return self.latent_mean, self.latent_std

    def set_latent_stats(self, mean: Tensor, std: Tensor) -> None:
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp_min(1e-5))

    def normalize(self, z: Tensor) -> Tensor:  # [..., D]
        return (z - self.latent_mean) / self.latent_std

    def denormalize(self, z: Tensor) -> Tensor:  # [..., D]
        return z * self.latent_std + self.latent_mean

    # ---- releases ------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, meta: dict | None = None) -> Path:
        """meta None keeps the meta of the release this model was loaded from (e.g. a TTS release's vae/ copy)."""
        meta = meta if meta is not None else self.release_meta
        return save_release(directory, self, self.cfg, meta=meta, kind=RELEASE_KIND)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> AudioVAE:
        sd, cfg_dict, meta = load_release(directory, kind=RELEASE_KIND)
        model = cls(from_dict(VAEConfig, cfg_dict))
        load_state_dict_strict(model, sd, source=str(directory))
        model.release_meta = dict(meta or {})
        return model.to(device).eval()
