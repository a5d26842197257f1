"""Speaker-similarity backends: cosine similarity of utterance embeddings.

    sim = ResemblyzerSIM()                       # default; the weights ship inside the resemblyzer wheel
    emb = sim.embed(["gen.wav", "prompt.flac"])  # (N, E), L2-normalised
    s = cosine(emb[0], emb[1])

``EcapaSIM`` (speechbrain ECAPA-TDNN) and ``WavLMTDNNSIM`` (the LatentLM paper's SIM) load only from local
paths: a missing checkpoint raises a ValueError naming what to download, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from evaluation.audio import AudioError, as_waveform
from evaluation.wavlm_encoder import WavLMConfig
from evaluation.wavlm_tdnn import EcapaHeadConfig, load_wavlm_tdnn

SIM_SR = 16000
AudioInput = str | Path | np.ndarray


@runtime_checkable
class SpeakerBackend(Protocol):
    """Maps utterances to speaker embeddings. ``model_id`` names the exact model for summary.json."""

    name: str
    model_id: str

    def embed(self, audio: Sequence[AudioInput], sample_rate: int | None = None) -> np.ndarray: ...


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embedding vectors."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        raise ValueError("cosine similarity of a zero embedding is undefined")
    return float(np.dot(a, b) / (na * nb))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class ResemblyzerConfig:
    device: str = "cpu"
    # torch CPU threads while embedding (restored afterwards). The GE2E LSTM runs many tiny matmuls; on a
    # busy 2-core machine 2 threads took 3-4 s per utterance against 0.17 s with 1 (measured).
    threads: int = 1


class ResemblyzerSIM:
    """Resemblyzer's GE2E LSTM encoder (256-d): 16 kHz, volume-normalised, VAD-trimmed, then embedded."""

    name = "resemblyzer"

    def __init__(self, cfg: ResemblyzerConfig | None = None):
        from importlib.metadata import version

        from resemblyzer import VoiceEncoder

        self.cfg = cfg or ResemblyzerConfig()
        self.encoder = VoiceEncoder(device=self.cfg.device, verbose=False)
        self.model_id = f"resemblyzer {version('resemblyzer')} pretrained.pt (GE2E, 256-d)"

    def embed(self, audio: Sequence[AudioInput], sample_rate: int | None = None) -> np.ndarray:
        before = torch.get_num_threads()
        torch.set_num_threads(self.cfg.threads)
        try:
            out = [self._embed_one(item, sample_rate) for item in audio]
        finally:
            torch.set_num_threads(before)
        return _unit(np.stack(out))  # (N, 256)

    def _embed_one(self, item: AudioInput, sample_rate: int | None) -> np.ndarray:
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(
            as_waveform(item, sample_rate, SIM_SR), source_sr=SIM_SR
        )  # volume norm + VAD trim
        if wav.size < SIM_SR // 10:
            name = item if isinstance(item, (str, Path)) else "<array>"
            raise AudioError(f"{name}: less than 0.1 s of speech left after voice-activity trimming")
        return self.encoder.embed_utterance(wav)  # (256,)


ECAPA_DOWNLOAD = (
    "the speechbrain model folder 'speechbrain/spkrec-ecapa-voxceleb' (hyperparams.yaml, "
    "embedding_model.ckpt, mean_var_norm_emb.ckpt, classifier.ckpt, label_encoder.txt), downloaded by hand"
)


@dataclass
class EcapaConfig:
    checkpoint_dir: str = ""  # local copy of speechbrain/spkrec-ecapa-voxceleb
    device: str = "cpu"


class EcapaSIM:
    """ECAPA-TDNN speaker embeddings (speechbrain, VoxCeleb) from a local folder.

    The folder is trusted code: speechbrain's ``from_hparams`` builds whatever its hyperparams.yaml names
    (``!new:`` / ``!name:`` tags import and call Python objects), so only load a folder you would run as a
    script (e.g. your own copy of speechbrain/spkrec-ecapa-voxceleb)."""

    name = "ecapa"

    def __init__(self, cfg: EcapaConfig):
        path = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        needed = ("hyperparams.yaml", "embedding_model.ckpt")
        if path is None or not path.is_dir() or not all((path / f).is_file() for f in needed):
            raise ValueError(
                f"ECAPA checkpoint folder {cfg.checkpoint_dir!r} not found or incomplete; "
                f"need {ECAPA_DOWNLOAD}"
            )
        from speechbrain.inference.speaker import EncoderClassifier

        self.cfg = cfg
        self.model = EncoderClassifier.from_hparams(
            source=str(path), savedir=str(path), run_opts={"device": cfg.device}
        )
        self.model_id = f"speechbrain ECAPA-TDNN ({path})"

    @torch.inference_mode()
    def embed(self, audio: Sequence[AudioInput], sample_rate: int | None = None) -> np.ndarray:
        out = []
        for item in audio:
            wav = torch.from_numpy(as_waveform(item, sample_rate, SIM_SR))[None]  # (1, T)
            out.append(self.model.encode_batch(wav).reshape(-1).cpu().numpy())  # (1, 1, E) -> (E,)
        return _unit(np.stack(out))


WAVLM_DOWNLOAD = (
    "the UniSpeech speaker-verification checkpoint 'wavlm_large_finetune.pth' (WavLM-Large + ECAPA-TDNN, "
    "the 'WavLM large, Fix pre-train: No' row of microsoft/UniSpeech downstreams/speaker_verification), "
    "downloaded by hand; it holds the WavLM-Large weights too"
)


@dataclass
class WavLMTDNNConfig:
    checkpoint: str = ""  # wavlm_large_finetune.pth
    device: str = "cpu"
    wavlm: WavLMConfig = field(default_factory=WavLMConfig)  # sizes: defaults are the published model's
    head: EcapaHeadConfig = field(default_factory=EcapaHeadConfig)


class WavLMTDNNSIM:
    """The paper's SIM model: WavLM-Large hidden states -> ECAPA-TDNN -> 256-d (evaluation/wavlm_tdnn.py).

    Each utterance is resampled to 16 kHz mono and embedded alone (the reference has no padding mask, so
    batching unequal lengths would change the pooled statistics); similarity is the cosine, as in the papers.
    """

    name = "wavlm-tdnn"

    def __init__(self, cfg: WavLMTDNNConfig):
        path = Path(cfg.checkpoint) if cfg.checkpoint else None
        if path is None or not path.is_file():
            raise ValueError(f"WavLM-TDNN checkpoint {cfg.checkpoint!r} not found; need {WAVLM_DOWNLOAD}")
        self.cfg = cfg
        model, self.ignored_keys = load_wavlm_tdnn(path, cfg.wavlm, cfg.head)
        self.model = model.to(cfg.device)
        n = sum(p.numel() for p in self.model.parameters())
        self.model_id = (
            f"UniSpeech WavLM-Large + ECAPA_TDNN_SMALL ({cfg.head.emb_dim}-d, {n:,} parameters) from {path}"
        )

    @torch.inference_mode()
    def embed(self, audio: Sequence[AudioInput], sample_rate: int | None = None) -> np.ndarray:
        out = []
        for item in audio:
            wav = as_waveform(item, sample_rate, SIM_SR)
            if wav.size < self.model.min_samples:
                name = item if isinstance(item, (str, Path)) else "<array>"
                raise AudioError(
                    f"{name}: {wav.size} samples at 16 kHz is too short for WavLM "
                    f"(need {self.model.min_samples})"
                )
            x = torch.from_numpy(wav)[None].to(self.cfg.device)  # (1, S)
            out.append(self.model(x)[0].float().cpu().numpy())  # (1, E) -> (E,)
        return _unit(np.stack(out))  # (N, E)


def build_sim(spec: str, **kwargs) -> SpeakerBackend:
    """CLI names: 'resemblyzer', 'ecapa:<folder>', 'wavlm-tdnn:<checkpoint>'."""
    if spec == "resemblyzer":
        return ResemblyzerSIM(ResemblyzerConfig(**kwargs))
    if spec.startswith("ecapa:"):
        return EcapaSIM(EcapaConfig(checkpoint_dir=spec.split(":", 1)[1], **kwargs))
    if spec.startswith("wavlm-tdnn:"):
        return WavLMTDNNSIM(WavLMTDNNConfig(checkpoint=spec.split(":", 1)[1], **kwargs))
    raise ValueError(f"unknown SIM backend {spec!r}; use resemblyzer, ecapa:<folder> or wavlm-tdnn:<path>")
