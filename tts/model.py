"""TTS: zero-shot voice cloning on the shared LatentLM. The one public API every front end calls.

Dimension legend: B rows, T latent frames, D latent dim, L samples.

    tts = TTS.from_pretrained("checkpoints/tts_demo")
    res = tts.synthesize("Hello there.", "prompt.wav", prompt_text=None, steps=10, seed=0)  # cfg: the release's
    res.audio  # float32 [L] at res.sample_rate: only the new speech, never the prompt
    for chunk in tts.stream("Hello there.", "prompt.wav"):  # float32 chunks while frames are generated
        ...
    results = tts.synthesize_batch([{"text": ..., "prompt_audio": ..., "prompt_text": ..., "seed": 0}, ...])

A release directory holds ``model.safetensors`` + ``config.json`` (kind "tts": the TTSConfig, and in ``meta`` the
front end's vocabulary and espeak-ng version) and the audio VAE release in ``vae/``. Loading is strict.

Input rules (``TTSInputError``, a ValueError; docs/BAD_INPUT.md): the settings are one ``SynthesisOptions``
(tts/options.py), checked before any work; text must phonemize to something; the prompt (tts/prompt.py) must be
readable, at a sane rate, not silent, between ``min_prompt_seconds`` (1 s) and ``max_prompt_seconds`` (30 s;
longer prompts are rejected, not trimmed, because a trimmed prompt would no longer match a given prompt_text).
Bare arrays / tensors are taken to be at the model's sample rate; pass ``(sample_rate, array)`` otherwise. Stereo
is averaged. A sentence that would overflow the trunk's positions beside the prompt is split at a word boundary
before anything is encoded (tts/positions.py).
Length cap per sentence: ``ceil(phonemes * max_frames_per_phoneme) + min_cap_seconds * frame_rate`` frames,
at most ``max_output_seconds`` (and ``max_seconds`` of the call). The end of speech is the LM head's
``<eo_audio>`` (greedy by default: ``token_temperature`` 0).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from latentlm.checkpoint import load_release, load_state_dict_strict, save_release
from latentlm.config import from_dict
from latentlm.head import HeadConfig
from latentlm.model import LatentLM, LatentLMConfig
from latentlm.transformer import TransformerConfig
from tts.duration import DurationPredictor, load_aligner, load_predictor, phone_units
from tts.frontend import Frontend
from tts.layout import MODALITY, SPACE_ID, generation_prefix, interleaved_script
from tts.options import SynthesisOptions, TTSInputError
from tts.patch import to_frames, to_items
from tts.phone_hmm import PAUSES as PAUSE_SYMBOLS
from tts.phone_hmm import units
from tts.positions import MIN_ROOM_SECONDS, items_left, prompt_too_long, split_in_two
from tts.prompt import PromptLimits, load_prompt
from tts.script import item_durations
from vocoder_vae.model import AudioVAE

RELEASE_KIND = "tts"
VAE_SUBDIR = "vae"
DURATION_SUBDIR = "duration"  # the duration predictor's release (tts/duration.py), when the release has one
TIMINGS = ("lm", "predictor")
# the prompt tempo a duration predictor is given, in seconds per phone unit, is clamped to this range (the
# training clips: 0.06-0.21 s), so a transcript that does not fit its clip cannot ask for minutes of audio
PHONE_SECONDS = (0.05, 0.24)


def _default_lm() -> LatentLMConfig:
    """The demo size (recipes/demo/tts_small.yaml holds the same numbers): phoneme vocab v1, 32-dim audio."""
    return LatentLMConfig(
        vocab_size=79,
        trunk=TransformerConfig(dim=256, n_layers=6, n_heads=4, n_kv_heads=2, max_seq_len=2048),
        modalities={MODALITY: HeadConfig(latent_dim=32, cond_dim=256, width=256, depth=3)},
    )


@dataclass
class TTSConfig:
    model: LatentLMConfig = field(default_factory=_default_lm)
    language: str = "en-us"  # espeak-ng voice of the front end
    frame_rate: float = 25.0  # latent frames per second (must match the VAE)
    # VAE frames per sequence item (tts/patch.py): the model reads and predicts this many frames at once, so the
    # trunk steps at frame_rate / patch; the audio head's latent_dim is patch x the VAE's latent dim
    patch: int = 1
    # ELLA-V interleaved layout (tts/layout.py, tts/script.py): each target phoneme token sits right before its
    # frames; training needs per-symbol durations (tts.durations), synthesis forces the symbols in order
    interleave: bool = False
    # interleaved synthesis: the next symbol (after the last one: the end) is forced after this long on a phone,
    # on the space between two words, on a pause at punctuation (and the utterance's last symbol). Aligned
    # training data: phones median 2 frames, 90% <= 3, 99% <= 6; spaces 63% 0 frames, 90% <= 4 (those after
    # punctuation included); last symbol 95% <= 12. Greedy decoding otherwise lingers, on spaces above all
    # (docs/TTS.md "Interleaved phonemes": a phone limit of 4 frames said more words than 3 or 10)
    max_phone_seconds: float = 0.16
    max_gap_seconds: float = 0.08
    max_pause_seconds: float = 0.6
    advance_bias: float = 0.0  # interleaved synthesis: added to the next symbol's logit (> 0: faster speech)
    # interleaved synthesis, who decides when the next symbol starts: "lm" (the LM head, within the run limits
    # above) or "predictor" (tts/duration.py: durations predicted in the prompt's tempo, forced exactly; the
    # release's duration/ folder)
    timing: str = "lm"
    # synthesis: the classifier-free guidance scale when a call passes cfg=None (the API's and CLIs' default);
    # a release sets what suits it (docs/TTS.md "Duration predictor": tts_demo uses 3 with predictor timing)
    cfg_scale: float = 1.5
    p_uncond: float = 0.1  # condition dropout for classifier-free guidance
    prompt_loss_weight: float = 0.0  # loss weight of the prompt latents (target latents weigh 1)
    latent_noise_scale: float = 0.5  # sigma-VAE noise s on training latents (the VAE's sigma_scale)
    # training only: extra Gaussian noise on the target latents the model READS (normalised units, per sequence
    # std ~ U(0, 2 x input_noise)); the predicted targets stay as they were. The history can no longer simply
    # be continued, so the model has to read the phonemes (Tacotron's prenet dropout, for latents); 0 = off
    input_noise: float = 0.0
    max_frames_per_phoneme: float = 6.0  # length cap: frames per phoneme symbol ...
    min_cap_seconds: float = 2.0  # ... plus this much
    # floor: <eo_audio> is not accepted before this many frames per phoneme symbol (natural speech is ~2 at 25 Hz),
    # so a model that stops too early cannot return empty audio
    min_frames_per_phoneme: float = 0.5
    max_output_seconds: float = 40.0  # absolute cap per sentence
    min_prompt_seconds: float = 1.0
    max_prompt_seconds: float = 30.0
    silence_rms: float = 1e-3  # prompts quieter than this RMS count as silent
    sentence_max_chars: int = 250
    pause_seconds: float = 0.2  # silence between sentences of a long text
    token_temperature: float = 0.0  # LM-head sampling of <lat> vs <eo_audio>; 0 = greedy
    read_noise: float = 0.0  # std of noise on generated latents as the model reads them back (docs/TTS.md)

    def __post_init__(self) -> None:
        if MODALITY not in self.model.modalities:
            raise ValueError(
                f"TTSConfig.model needs an {MODALITY!r} modality, has {list(self.model.modalities)}"
            )
        if self.input_noise < 0 or self.read_noise < 0:
            raise ValueError(
                f"input_noise and read_noise must be >= 0, got {self.input_noise}, {self.read_noise}"
            )
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond}")
        if self.patch < 1 or self.latent_dim % self.patch:
            raise ValueError(
                f"patch must be >= 1 and divide the audio latent_dim ({self.latent_dim}), got {self.patch}"
            )
        if (
            self.frame_rate <= 0
            or self.max_frames_per_phoneme <= 0
            or min(self.max_phone_seconds, self.max_gap_seconds, self.max_pause_seconds) <= 0
        ):
            raise ValueError(
                "frame_rate, max_frames_per_phoneme and the max_*_seconds run limits must be positive"
            )
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")
        if self.timing not in TIMINGS:
            raise ValueError(f"timing must be one of {TIMINGS}, got {self.timing!r}")
        if self.timing == "predictor" and not self.interleave:
            raise ValueError('timing "predictor" needs the interleaved layout (interleave: true)')
        if not 0 <= self.min_frames_per_phoneme <= self.max_frames_per_phoneme:
            raise ValueError("min_frames_per_phoneme must be in [0, max_frames_per_phoneme]")

    @property
    def latent_dim(self) -> int:
        """Dim of one sequence item (patch x the VAE's latent dim)."""
        return self.model.modalities[MODALITY].latent_dim

    @property
    def frame_dim(self) -> int:
        """Dim of one VAE frame."""
        return self.latent_dim // self.patch


@dataclass
class SynthesisResult:
    audio: np.ndarray  # float32 [L]
    sample_rate: int
    prompt_text: str
    info: dict = field(default_factory=dict)  # frames, stop reasons, timings

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass
class _Job:
    prompt: Tensor  # [Tp, D] normalised prompt latents
    prompt_text: str
    sentences: list[str]
    phonemes: list[list[int]]  # per sentence: prompt phonemes + " " + sentence phonemes
    scripts: list[list[int]]  # per sentence: the sentence's phonemes (what the target says)
    caps: list[int]  # per sentence: frame cap (generated frames)
    floors: list[int]  # per sentence: generated frames before <eo_audio> is accepted
    timings: dict
    durations: list[list[int]] | None = None  # per sentence: items per script symbol (timing "predictor")
    continuation_audio: np.ndarray | None = (
        None  # continuation mode: the prompt waveform that starts the output
    )

    def row_durations(self, sentence: int) -> list[list[int]] | None:
        """``TTS._frames``' durations for a one-row decode of this sentence (None: the LM head times it)."""
        return None if self.durations is None else [self.durations[sentence]]


class TTS:
    SENTENCE_ROWS = 8  # sentences of one text decoded together by ``synthesize`` (weights read once per step)

    def __init__(
        self,
        cfg: TTSConfig,
        lm: LatentLM,
        vae: AudioVAE,
        frontend: Frontend,
        duration: DurationPredictor | None = None,
        aligner=None,
    ):
        if len(frontend.vocab) != cfg.model.vocab_size:
            raise TTSInputError(
                f"front end vocabulary has {len(frontend.vocab)} symbols, the model expects {cfg.model.vocab_size}"
            )
        if vae.latent_dim != cfg.frame_dim:
            raise TTSInputError(
                f"VAE latent dim {vae.latent_dim} != model latent dim {cfg.latent_dim} / patch {cfg.patch}"
            )
        if abs(vae.frame_rate - cfg.frame_rate) > 1e-6:
            raise TTSInputError(
                f"VAE frame rate {vae.frame_rate:g} Hz != model frame rate {cfg.frame_rate:g} Hz"
            )
        if cfg.timing == "predictor" and duration is None:
            raise TTSInputError(
                'timing "predictor" needs a duration predictor (the release\'s duration/ folder)'
            )
        if duration is not None and duration.cfg.vocab_size != cfg.model.vocab_size:
            raise TTSInputError(
                f"duration predictor vocabulary {duration.cfg.vocab_size} != the model's {cfg.model.vocab_size}"
            )
        self.cfg, self.lm, self.vae, self.frontend = cfg, lm.eval(), vae.eval(), frontend
        self.duration = duration.eval() if duration is not None else None
        self.aligner = aligner  # tts.phone_hmm.PhoneAligner beside the predictor: continuation prompts
        self._asr = None

    # ------------------------------------------------------------------ releases
    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> TTS:
        directory = Path(directory)
        try:
            sd, cfg_dict, meta = load_release(directory, kind=RELEASE_KIND)
            cfg = from_dict(TTSConfig, cfg_dict)
            if "frontend" not in meta:
                raise ValueError(f"{directory}/config.json has no front end (meta.frontend)")
            frontend = Frontend.from_dict(meta["frontend"])
            if not (directory / VAE_SUBDIR).is_dir():
                raise FileNotFoundError(f"{directory} has no {VAE_SUBDIR}/ folder with the audio VAE release")
            vae = AudioVAE.from_pretrained(directory / VAE_SUBDIR, device=device)
            lm = LatentLM(cfg.model)
            load_state_dict_strict(lm, sd, source=str(directory))
            dur_dir = directory / DURATION_SUBDIR
            duration = load_predictor(dur_dir, device=device) if dur_dir.is_dir() else None
            aligner = load_aligner(dur_dir) if dur_dir.is_dir() else None
        except TTSInputError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TTSInputError(f"cannot load TTS release {directory}: {e}") from e
        return cls(cfg, lm.to(device), vae, frontend, duration, aligner)

    def save_pretrained(self, directory: str | Path, meta: dict | None = None) -> Path:
        directory = Path(directory)
        full = {**(meta or {}), "frontend": self.frontend.to_dict(), "vae": VAE_SUBDIR}
        save_release(directory, self.lm, self.cfg, meta=full, kind=RELEASE_KIND)
        self.vae.save_pretrained(directory / VAE_SUBDIR)
        if self.duration is not None:
            from tts.duration import save_predictor

            save_predictor(self.duration, directory / DURATION_SUBDIR, aligner=self.aligner)
        return directory

    @property
    def sample_rate(self) -> int:
        return self.vae.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    # ------------------------------------------------------------------ inputs
    def load_prompt(self, prompt_audio) -> Tensor:
        """path | np.ndarray | torch.Tensor | (sample_rate, array) -> float32 [L] at the model rate, validated
        (tts/prompt.py: rate and length are checked before anything is read or resampled)."""
        return load_prompt(prompt_audio, self.prompt_limits, self.sample_rate)

    @property
    def prompt_limits(self) -> PromptLimits:
        c = self.cfg
        return PromptLimits(c.min_prompt_seconds, c.max_prompt_seconds, c.silence_rms, self.sample_rate)

    def transcribe(self, wav: Tensor) -> str:
        """Offline Whisper-base transcript of a prompt (loaded once, on first use)."""
        if self._asr is None:
            from evaluation.asr import build_asr

            self._asr = build_asr("whisper-base")
        return self._asr.transcribe([wav.numpy()], sample_rate=self.sample_rate)[0].strip()

    def _encode_text(self, text: str, what: str) -> list[int]:
        try:
            return self.frontend.encode(text)
        except ValueError as e:
            raise TTSInputError(f"{what}: {e}") from e

    def frame_floor(self, n_phonemes: int, cap: int) -> int:
        """Items generated before ``<eo_audio>`` is accepted: min_frames_per_phoneme frames per phoneme, at most
        cap (items of ``patch`` frames)."""
        return min(cap, int(n_phonemes * self.cfg.min_frames_per_phoneme / self.cfg.patch))

    def frame_cap(self, n_phonemes: int, max_seconds: float | None = None) -> int:
        c = self.cfg
        cap = math.ceil(n_phonemes * c.max_frames_per_phoneme + c.min_cap_seconds * c.frame_rate)
        limit = c.max_output_seconds if max_seconds is None else min(max_seconds, c.max_output_seconds)
        if limit <= 0:
            raise TTSInputError(f"max_seconds must be positive, got {max_seconds}")
        return max(1, math.ceil(min(cap, int(limit * c.frame_rate)) / c.patch))  # in items of patch frames

    @torch.no_grad()
    def _prompt_latents(self, wav: np.ndarray, means: Tensor | None = None) -> Tensor:
        """Prompt waveform at the model rate (or its VAE means [T, D], when already encoded) -> normalised
        items [T // patch, patch * D]."""
        z = self.vae.encode(wav, self.sample_rate) if means is None else means  # [T, D] means
        return self.lm.normalize(MODALITY, to_items(z.to(self.device), self.cfg.patch))

    def _tempo(self, frames: int, phones: int) -> float:
        """A prompt's VAE frames per phone unit (tts.duration.speaking_rate), clamped to ``PHONE_SECONDS``."""
        fps = self.cfg.frame_rate
        return min(max(frames / max(1, phones), PHONE_SECONDS[0] * fps), PHONE_SECONDS[1] * fps)

    def _prompt_items(self, wav: Tensor) -> int:
        """Items the prompt waveform (model rate) becomes, without encoding it (ceil(L / hop) frames // patch)."""
        return math.ceil(wav.numel() / self.vae.hop) // self.cfg.patch

    def _items_left(self, prefix_tokens: int, prompt_items: int, script: int) -> int:
        """tts.positions.items_left for this model."""
        return items_left(
            self.cfg.model.trunk.max_seq_len, prefix_tokens, prompt_items, script, self.cfg.interleave
        )

    def _check_prompt_room(self, wav: Tensor, prompt_symbols: int) -> None:
        """Refuse a prompt that leaves no room for even a short word (before any transcription or encoding)."""
        n = self._prompt_items(wav)
        if self._items_left(prompt_symbols + 1 + 8, n, 8) < 8 * MIN_ROOM_SECONDS * self.cfg.frame_rate:
            raise TTSInputError(
                prompt_too_long(
                    self.cfg.model.trunk.max_seq_len,
                    wav.numel() / self.sample_rate,
                    prompt_symbols,
                    n,
                    self.cfg.frame_rate / self.cfg.patch,
                )
            )

    def _sentence_rows(self, sentence: str, prompt_ph: list[int], n_prompt: int, rate, max_seconds, speed):
        """One sentence -> rows (sentence, phonemes, script, cap, floor, item durations | None) that fit the
        positions (tts/positions.py): split in two at a word boundary, repeatedly, where it does not."""
        ph = self._encode_text(sentence, "text")
        cap = self.frame_cap(len(ph), max_seconds)
        durs = None
        if rate is not None:  # timing "predictor": the items are known now
            durs = item_durations(self.duration.predict(ph, rate, tempo=speed), self.cfg.patch)
        left = self._items_left(len(prompt_ph) + 1 + len(ph), n_prompt, len(ph))
        need = (
            sum(durs)
            if durs is not None
            else math.ceil(len(ph) * MIN_ROOM_SECONDS * self.cfg.frame_rate / self.cfg.patch)
        )
        if need <= left:
            cap = min(cap, left)  # generation past ``left`` items would fail: it never reached there before
            return [(sentence, prompt_ph + [SPACE_ID] + ph, ph, cap, self.frame_floor(len(ph), cap), durs)]
        # a single written word can be many spoken ones (a 400-digit number): split what is said
        halves = split_in_two(sentence) or split_in_two(self.frontend.normalize(sentence))
        if halves is None:
            raise TTSInputError(
                f"the word {sentence!r} does not fit beside this prompt in the model's "
                f"{self.cfg.model.trunk.max_seq_len} positions (it needs {need} frames, {max(left, 0)} are left); "
                "use a shorter prompt, or a speed closer to 1"
            )
        return [
            r for h in halves for r in self._sentence_rows(h, prompt_ph, n_prompt, rate, max_seconds, speed)
        ]

    def _prepare(
        self, text, prompt_audio, prompt_text, max_seconds, continuation: bool = False, speed: float = 1.0
    ) -> _Job:
        t0 = time.perf_counter()
        if not isinstance(text, str) or not text.strip():
            raise TTSInputError("text is empty: nothing to synthesize")
        opts = SynthesisOptions(max_seconds=max_seconds, speed=speed)  # NaN, inf, strings: refused here
        max_seconds, speed = opts.max_seconds, opts.speed
        if speed != 1.0 and self.cfg.timing != "predictor":
            raise TTSInputError("speed needs a release timed by a duration predictor (timing: predictor)")
        wav = self.load_prompt(prompt_audio)
        self._check_prompt_room(wav, 0)  # the audio alone (before transcribing or encoding it)
        timings = {}
        if continuation:
            # The prompt is the start of the utterance whose whole text is ``text`` (VALL-E's continuation task,
            # the training pairs' "prefix" mode): phonemes(text) only, one span, and the output keeps the prompt.
            if prompt_text is not None:
                raise TTSInputError(
                    "continuation mode takes the whole utterance as text; leave prompt_text None"
                )
            if self.cfg.interleave:
                return self._continuation_script(text, wav, max_seconds, speed, timings, t0)
            ph = self._encode_text(text, "text")
            n_prompt = self._prompt_items(wav)
            left = self._items_left(len(ph), n_prompt, 0)
            cap = max(self.frame_cap(len(ph), max_seconds) - n_prompt, 1)
            if left < 1:
                raise TTSInputError(self._continuation_overflow(len(ph), n_prompt))
            cap = min(cap, left)
            prompt = self._prompt_latents(wav)
            floor = self.frame_floor(len(ph), cap) - int(prompt.shape[0])  # the prompt says part of the text
            timings["prepare_s"] = time.perf_counter() - t0
            # the output starts with the prompt audio the items hold (patch > 1 drops a few tail frames)
            kept = wav[: prompt.shape[0] * self.cfg.patch * self.vae.hop]
            return _Job(
                prompt, "", [text], [ph], [ph], [cap], [max(floor, 0)], timings, continuation_audio=kept
            )
        if prompt_text is None:
            t1 = time.perf_counter()
            prompt_text = self.transcribe(wav)
            timings["asr_s"] = time.perf_counter() - t1
            if not prompt_text:
                raise TTSInputError(
                    "could not transcribe the prompt audio (no speech found); pass prompt_text"
                )
        elif not isinstance(prompt_text, str) or not prompt_text.strip():
            raise TTSInputError("prompt_text is empty; pass None to transcribe the prompt automatically")
        sentences = self.frontend.split_sentences(text, self.cfg.sentence_max_chars)
        prompt_ph = self._encode_text(prompt_text, "prompt_text")
        self._check_prompt_room(wav, len(prompt_ph))
        n_prompt = self._prompt_items(wav)
        rate = None
        if self.cfg.interleave and self.cfg.timing == "predictor":
            rate = self._tempo(n_prompt * self.cfg.patch, phone_units(prompt_ph))
        rows = [
            r
            for s in sentences
            for r in self._sentence_rows(s, prompt_ph, n_prompt, rate, max_seconds, speed)
        ]
        sentences, phonemes, scripts, caps, floors, durations = (list(x) for x in zip(*rows))
        prompt = self._prompt_latents(wav)
        timings["prepare_s"] = time.perf_counter() - t0
        return _Job(
            prompt,
            prompt_text,
            sentences,
            phonemes,
            scripts,
            caps,
            floors,
            timings,
            None if rate is None else durations,
        )

    def _continuation_overflow(self, symbols: int, n_prompt: int) -> str:
        return (
            f"continuation: the text ({symbols} phoneme symbols) and the prompt ({n_prompt} items) do not fit the "
            f"model's {self.cfg.model.trunk.max_seq_len} positions; use a shorter prompt or text"
        )

    def _continuation_script(self, text, wav, max_seconds, speed, timings, t0) -> _Job:
        """Continuation mode for the interleaved layout: the aligner (tts/phone_hmm.py) finds where in the
        text the prompt stops (open-ended Viterbi), the predictor times the rest in the prompt's tempo, and the
        script starts with the unit the prompt is still saying (its remaining frames), as the training pairs'
        prefix mode cuts it (tts.script.target_script)."""
        if self.cfg.timing != "predictor" or self.aligner is None:
            raise TTSInputError(
                "continuation mode for an interleaved-layout model needs a release with a duration predictor and "
                "its aligner (duration/aligner.json); pass the prompt's transcript as prompt_text instead"
            )
        ph = self._encode_text(text, "text")
        z = self.vae.encode(wav, self.sample_rate)  # [T, D] VAE means
        prompt = self._prompt_latents(wav, z)  # [Tp, patch * D]
        frames = int(prompt.shape[0]) * self.cfg.patch  # what the items hold
        said, k = self.aligner.align_prefix(z[:frames].cpu(), ph)
        us = units(ph, self.frontend.vocab.symbols)
        if k >= len(us):
            raise TTSInputError("the prompt already says the whole text: nothing is left to continue")
        rate = self._tempo(frames, sum(not u.pause for u in us[: k + 1]))  # the phones the prompt said
        pred = self.duration.predict(ph, rate, tempo=speed)  # frames per symbol of the whole text
        rest = pred[us[k].last] - int(said[us[k].last]) if k >= 0 else 0
        if rest > 0:  # the prompt stops inside unit k: its last symbol goes on for the predicted rest
            start, first = us[k].last, [rest]
        elif k + 1 < len(us):
            start, first = us[k + 1].first, []
        else:
            raise TTSInputError("the prompt already says the whole text: nothing is left to continue")
        script = ph[start:]
        durations = item_durations(first + pred[start + len(first) :], self.cfg.patch)
        left = self._items_left(len(ph), int(prompt.shape[0]), len(script))
        if sum(durations) > left:
            raise TTSInputError(self._continuation_overflow(len(ph), int(prompt.shape[0])))
        cap = min(max(self.frame_cap(len(script), max_seconds), 1), left)
        timings["prepare_s"] = time.perf_counter() - t0
        kept = wav[: frames * self.vae.hop]  # the output starts with the prompt audio the items hold
        return _Job(
            prompt, "", [text], [ph], [script], [cap], [0], timings, [durations], continuation_audio=kept
        )

    # ------------------------------------------------------------------ decoding
    def _generator(self, seed: int, sentence: int) -> torch.Generator:
        """The random stream of one sentence of a job: seeded from (seed, sentence index), so a sentence draws
        the same noise whether it is synthesized alone, streamed, or decoded in a batch with others."""
        return torch.Generator(self.device).manual_seed(int(seed) * 65537 + sentence)

    def _frames(
        self, phonemes, scripts, prompts, caps, floors, steps, cfg, temperature, generator, durations=None
    ) -> Iterator[tuple]:
        """Decode rows together; yields (row, latent [D] normalised | None, stop reason | None) as they come.
        scripts: per row the target's phonemes (read by the interleaved layout only). durations (interleaved
        only): per row the items each script symbol takes, forced exactly (else the LM head decides, within
        ``_run_limits``)."""
        cfg = self.cfg.cfg_scale if cfg is None else float(cfg)  # steps, cfg, temperature: SynthesisOptions
        scripts = scripts if self.cfg.interleave else None
        prefix, uncond = generation_prefix(self.lm, phonemes, prompts, cfg, scripts)
        rest = interleaved_script(self.lm, scripts) if scripts is not None else None
        end = self.lm.layout.end[MODALITY]
        count = [0] * len(caps)
        done = [False] * len(caps)
        # per row: the prompt's frames (they open the span and count towards it) + the row's floor
        floor = [len(p) + f for p, f in zip(prompts, floors)]
        if durations is not None:
            if scripts is None or len(durations) != len(scripts):
                raise ValueError("durations need the interleaved layout and one list per row")
            floor = [len(p) for p in prompts]
            durations = [[int(x) for x in d] for d in durations]
        it = self.lm.generate_stream(
            prefix,
            max_new=max(caps) + (max(len(x) for x in rest) if rest is not None else 0),
            min_latents=floor,
            script=rest,
            script_uncond=self.lm.layout.null if rest is not None else None,
            script_max_run=None
            if scripts is None
            else (durations or [self._run_limits(sc) for sc in scripts]),
            script_min_run=durations,
            script_bias=self.cfg.advance_bias,
            steps=steps,
            cfg=cfg,
            uncond=uncond,
            temperature=temperature,
            token_temperature=self.cfg.token_temperature,
            generator=generator,
            read_noise=self.cfg.read_noise,
        )
        for st in it:
            for r in range(len(caps)):
                if done[r]:
                    continue
                if st.modality[r] >= 0:
                    count[r] += 1
                    yield r, st.latents[r, : self.cfg.latent_dim].clone(), None
                    if count[r] >= caps[r]:
                        done[r] = True
                        yield r, None, "cap"
                elif int(st.tokens[r]) == end:
                    done[r] = True
                    yield r, None, "eos"
                if not done[r] and bool(st.finished[r]):
                    done[r] = True
                    yield r, None, "cap" if bool(st.truncated[r]) else "stop_token"
            if all(done):
                it.close()
                return

    def _run_limits(self, script: list[int]) -> list[int]:
        """Items a symbol of the script may take before the next is forced (tts.layout.interleaved_script's
        limits: one per symbol; the first symbol sits in the prefix, the last one is followed by the end)."""
        items = self.cfg.frame_rate / self.cfg.patch
        phone, gap, pause = (
            max(1, round(x * items))
            for x in (self.cfg.max_phone_seconds, self.cfg.max_gap_seconds, self.cfg.max_pause_seconds)
        )
        sym = [self.frontend.vocab.symbols[i] for i in script]
        out = []
        for k, s in enumerate(sym):
            if k == len(sym) - 1 or (s in PAUSE_SYMBOLS and s != " "):
                out.append(pause)  # punctuation, and the trailing silence after the last symbol
            elif s == " ":  # a word gap, or the pause of a ", " / ". " (the space holds the unit's frames)
                out.append(pause if k and sym[k - 1] in PAUSE_SYMBOLS else gap)
            else:
                out.append(phone)
        return out

    def _vae_frames(self, items: list[Tensor]) -> Tensor:
        """Generated items (normalised [patch * D] each) -> the VAE's latent frames [T * patch, D]."""
        return to_frames(self.lm.denormalize(MODALITY, torch.stack(items)), self.cfg.patch)

    def _decode_audio(self, items: list[Tensor]) -> np.ndarray:
        if not items:
            return np.zeros(0, dtype=np.float32)
        return self.vae.decode(self._vae_frames(items)).cpu().numpy().astype(np.float32)

    def _pause(self) -> np.ndarray:
        return np.zeros(int(self.cfg.pause_seconds * self.sample_rate), dtype=np.float32)

    def _result(
        self, job: _Job, pieces: list[np.ndarray], items: list[int], stops, t_gen, t_vae, t0
    ) -> SynthesisResult:
        """items: generated items per sentence (reported as VAE frames)."""
        out = [] if job.continuation_audio is None else [np.asarray(job.continuation_audio, dtype=np.float32)]
        for i, p in enumerate(pieces):
            if i:
                out.append(self._pause())
            out.append(p)
        audio = np.concatenate(out) if out else np.zeros(0, np.float32)
        total = time.perf_counter() - t0
        info = {
            "frames": [n * self.cfg.patch for n in items],  # VAE frames
            "stop": stops,
            "sentences": job.sentences,
            "prompt_frames": int(job.prompt.shape[0]) * self.cfg.patch,  # VAE frames
            "timings": {**job.timings, "generate_s": t_gen, "vae_decode_s": t_vae, "total_s": total},
            "rtf": total / max(len(audio) / self.sample_rate, 1e-9),
        }
        return SynthesisResult(audio, self.sample_rate, job.prompt_text, info)

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def synthesize(
        self,
        text: str,
        prompt_audio,
        prompt_text: str | None = None,
        steps: int = 10,
        cfg: float | None = None,
        temperature: float = 1.0,
        seed: int = 0,
        max_seconds: float | None = None,
        continuation: bool = False,
        speed: float = 1.0,
        options: SynthesisOptions | None = None,
    ) -> SynthesisResult:
        """Speech for ``text`` in the voice of ``prompt_audio``. Long text is split into sentences that are
        generated with the same prompt, ``SENTENCE_ROWS`` at a time as the rows of one batch (each with its own
        seeded random stream, so the audio is what one-by-one decoding or ``stream`` gives, to float rounding),
        joined by short pauses. ``continuation=True``: ``prompt_audio`` is the start of an utterance whose whole
        text is ``text`` (no prompt_text); the model continues it and the result is prompt + continuation.
        ``speed`` (0.5-2, releases timed by a duration predictor): every predicted duration is divided by it.
        ``options``: the settings as one ``SynthesisOptions`` (instead of the keywords); either way they are
        checked before any work."""
        t0 = time.perf_counter()
        kw = dict(
            steps=steps, cfg=cfg, temperature=temperature, seed=seed, max_seconds=max_seconds, speed=speed
        )
        o = SynthesisOptions.merge(options, **kw)  # checked before any work
        job = self._prepare(text, prompt_audio, prompt_text, o.max_seconds, continuation, o.speed)
        n = len(job.sentences)
        lat: list[list[Tensor]] = [[] for _ in range(n)]
        stops = ["eos"] * n
        t1 = time.perf_counter()
        for a in range(0, n, self.SENTENCE_ROWS):
            part = range(a, min(n, a + self.SENTENCE_ROWS))
            durs = [job.row_durations(k) for k in part]
            for r, z, reason in self._frames(
                [job.phonemes[k] for k in part],
                [job.scripts[k] for k in part],
                [job.prompt] * len(part),
                [job.caps[k] for k in part],
                [job.floors[k] for k in part],
                o.steps,
                o.cfg,
                o.temperature,
                [self._generator(o.seed, k) for k in part],
                None if any(d is None for d in durs) else [d[0] for d in durs],
            ):
                if z is not None:
                    lat[a + r].append(z)
                else:
                    stops[a + r] = reason
        t2 = time.perf_counter()
        pieces = [self._decode_audio(x) for x in lat]
        t_vae = time.perf_counter() - t2
        return self._result(job, pieces, [len(x) for x in lat], stops, t2 - t1, t_vae, t0)

    @torch.no_grad()
    def stream(
        self,
        text: str,
        prompt_audio,
        prompt_text: str | None = None,
        steps: int = 10,
        cfg: float | None = None,
        temperature: float = 1.0,
        seed: int = 0,
        max_seconds: float | None = None,
        chunk_frames: int = 4,
        first_chunk_frames: int = 1,
        speed: float = 1.0,
        options: SynthesisOptions | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield float32 audio chunks while frames are generated (the first after ``first_chunk_frames``
        frames, then every ``chunk_frames``). The chunks concatenate to ``synthesize`` with the same arguments.
        Bad input raises when the first chunk is asked for, before any frame is generated."""
        if chunk_frames < 1 or first_chunk_frames < 1:
            raise TTSInputError("chunk_frames and first_chunk_frames must be >= 1")
        kw = dict(
            steps=steps, cfg=cfg, temperature=temperature, seed=seed, max_seconds=max_seconds, speed=speed
        )
        o = SynthesisOptions.merge(options, **kw)  # checked before any work
        job = self._prepare(text, prompt_audio, prompt_text, o.max_seconds, speed=o.speed)
        for i, (ph, sc, cap, fl) in enumerate(zip(job.phonemes, job.scripts, job.caps, job.floors)):
            if i:
                yield self._pause()

            def latent_chunks(ph=ph, sc=sc, cap=cap, fl=fl, i=i) -> Iterator[Tensor]:
                g = [self._generator(o.seed, i)]
                buf, want = [], first_chunk_frames
                for _, z, _reason in self._frames(
                    [ph],
                    [sc],
                    [job.prompt],
                    [cap],
                    [fl],
                    o.steps,
                    o.cfg,
                    o.temperature,
                    g,
                    job.row_durations(i),
                ):
                    if z is None:
                        continue
                    buf.append(z)
                    if len(buf) >= want:
                        yield self._vae_frames(buf)  # [t * patch, D]
                        buf, want = [], chunk_frames
                if buf:
                    yield self._vae_frames(buf)

            for y in self.vae.decode_stream(latent_chunks()):
                yield y.cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def synthesize_batch(
        self, jobs: list[dict], batch_size: int = 8, on_error: str = "raise"
    ) -> list[SynthesisResult | TTSInputError]:
        """Several jobs ({"text", "prompt_audio", "prompt_text"?, "steps"?, "cfg"?, "temperature"?, "seed"?,
        "max_seconds"?, "continuation"?, "speed"?}) decoded together: every sentence of every job is one row of a right-padded batch
        (rows grouped by steps/cfg/temperature, ``batch_size`` rows per pass). Every row draws its noise from
        its own generator, seeded from (job seed, sentence index) exactly as ``synthesize`` does, so each
        result equals ``synthesize`` with the same seed (up to float rounding of batched matmuls), at any
        temperature. Every job's settings are a ``SynthesisOptions`` (checked before any work). ``on_error="return"``
        puts the TTSInputError of a bad job (text, prompt or settings) in its place instead of raising; the other
        jobs still return their audio."""
        if on_error not in ("raise", "return"):
            raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        t0 = time.perf_counter()
        keys = ("text", "prompt_audio", "prompt_text", "continuation", *SynthesisOptions().to_dict())
        prepared: list[_Job | TTSInputError] = []
        settings: list[SynthesisOptions | None] = []
        for i, job in enumerate(jobs):
            try:
                if not isinstance(job, dict):
                    raise TTSInputError(f"a job must be a dict of settings, got {type(job).__name__}")
                unknown = sorted(set(job) - set(keys) - {"id", "out"})
                if unknown:
                    raise TTSInputError(f"unknown job key(s) {unknown}; valid: {list(keys)}")
                if "text" not in job or "prompt_audio" not in job:
                    raise TTSInputError("a job needs 'text' and 'prompt_audio'")
                o = SynthesisOptions.from_mapping(job)  # before any work: a bad value fails this job only
                prepared.append(
                    self._prepare(
                        job["text"],
                        job["prompt_audio"],
                        job.get("prompt_text"),
                        o.max_seconds,
                        bool(job.get("continuation", False)),
                        o.speed,
                    )
                )
                settings.append(o)
            except TTSInputError as e:
                if on_error == "raise":
                    raise TTSInputError(f"job {i}: {e}") from e
                prepared.append(e)
                settings.append(None)
        rows = []  # (job index, sentence index, settings, seed)
        for i, (p, o) in enumerate(zip(prepared, settings)):
            if isinstance(p, _Job):
                key = (o.steps, float(self.cfg.cfg_scale if o.cfg is None else o.cfg), o.temperature)
                rows += [(i, s, key, o.seed) for s in range(len(p.sentences))]
        lat: dict[tuple[int, int], list[Tensor]] = {}
        stop: dict[tuple[int, int], str] = {}
        t1 = time.perf_counter()
        for key in sorted({r[2] for r in rows}):
            group = [r for r in rows if r[2] == key]
            for a in range(0, len(group), batch_size):
                part = group[a : a + batch_size]
                g = [self._generator(seed, s) for _, s, _, seed in part]  # one per row, as in synthesize
                ph = [prepared[i].phonemes[s] for i, s, _, _ in part]
                sc = [prepared[i].scripts[s] for i, s, _, _ in part]
                pr = [prepared[i].prompt for i, _, _, _ in part]
                caps = [prepared[i].caps[s] for i, s, _, _ in part]
                floors = [prepared[i].floors[s] for i, s, _, _ in part]
                durs = [prepared[i].row_durations(s) for i, s, _, _ in part]
                durs = None if any(d is None for d in durs) else [d[0] for d in durs]
                for r, z, reason in self._frames(ph, sc, pr, caps, floors, *key, g, durs):
                    k = part[r][:2]
                    if z is not None:
                        lat.setdefault(k, []).append(z)
                    else:
                        stop[k] = reason
        t_gen = time.perf_counter() - t1
        out: list[SynthesisResult | TTSInputError] = []
        for i, p in enumerate(prepared):
            if not isinstance(p, _Job):
                out.append(p)
                continue
            t2 = time.perf_counter()
            frames = [lat.get((i, s), []) for s in range(len(p.sentences))]
            pieces = [self._decode_audio(f) for f in frames]
            t_vae = time.perf_counter() - t2
            stops = [stop.get((i, s), "eos") for s in range(len(p.sentences))]
            out.append(self._result(p, pieces, [len(f) for f in frames], stops, t_gen, t_vae, t0))
        return out
