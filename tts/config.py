"""TTSConfig: what a TTS release is (the LatentLM it runs, its frame rate, sequence layout and timing mode, its
synthesis defaults and input limits), saved in the release's config.json and rebuilt from it (tts/model.py).

Dimension legend: D the audio head's latent dim (patch x the VAE's latent dim).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from latentlm.head import HeadConfig
from latentlm.model import LatentLMConfig
from latentlm.transformer import TransformerConfig
from tts.layout import MODALITY
from tts.options import MAX_TEMPERATURE

TIMINGS = ("lm", "predictor")
MAX_EDGE_SECONDS = 5.0  # pause_seconds / edge_seconds: silences, not content
# what the unconditional (guidance) rows drop: the phonemes only, or the prompt's voice too (a model trained
# with ``p_drop_prompt`` > 0, tts/layout.py)
GUIDANCES = ("text", "text+voice")
VOCAB_V1 = 79  # symbols of the phoneme vocabulary en-ipa-v1 (tts/frontend.py; the trainer checks it at start)
# keys TTSConfig held before session 11 that only training reads (tts/train_config.py holds them now)
TRAINING_ONLY = ("p_uncond", "prompt_loss_weight", "latent_noise_scale", "input_noise")
LM_TIMING = (  # keys TTSConfig held at its top level before session 11, now LMTimingConfig's
    "max_phone_seconds",
    "max_gap_seconds",
    "max_pause_seconds",
    "advance_bias",
    "min_frames_per_phoneme",
    "token_temperature",
)


@dataclass
class LMTimingConfig:
    """What decoding reads when the LM head decides the timing (``timing: "lm"``, and the prefix layout): with
    durations from a predictor every symbol and the end are forced and none of this applies.

    Interleaved layout: the next symbol (after the last one: the end) is forced after ``max_phone_seconds`` on a
    phone, ``max_gap_seconds`` on the space between two words, ``max_pause_seconds`` on a pause at punctuation
    (and the utterance's last symbol). Aligned training data: phones median 2 frames, 90% <= 3, 99% <= 6; spaces
    63% 0 frames, 90% <= 4 (those after punctuation included); last symbol 95% <= 12. Greedy decoding otherwise
    lingers, on spaces above all (docs/experiments/interleaving.md: a phone limit of 4 frames said more words
    than 3 or 10). ``advance_bias`` is added to the next symbol's logit (> 0: faster speech).
    ``min_frames_per_phoneme``: <eo_audio> is not accepted before this many frames per phoneme symbol (natural
    speech is ~2 at 25 Hz), so a model that stops too early cannot return empty audio. ``token_temperature``:
    LM-head sampling of <lat> / symbol / <eo_audio>; 0 = greedy.
    """

    max_phone_seconds: float = 0.16
    max_gap_seconds: float = 0.08
    max_pause_seconds: float = 0.6
    advance_bias: float = 0.0
    min_frames_per_phoneme: float = 0.5
    token_temperature: float = 0.0

    def __post_init__(self) -> None:
        if min(self.max_phone_seconds, self.max_gap_seconds, self.max_pause_seconds) <= 0:
            raise ValueError("the max_*_seconds run limits must be positive")
        if self.min_frames_per_phoneme < 0 or self.token_temperature < 0:
            raise ValueError("min_frames_per_phoneme and token_temperature must be >= 0")


def _default_lm() -> LatentLMConfig:
    """The library's defaults (latentlm's TransformerConfig and HeadConfig) for the phoneme vocabulary v1 and the
    32-dim latents of the shipped VAEs. A model's size is its recipe's (recipes/demo/tts_small.yaml) or its
    release's, never this: every recipe states its trunk and head."""
    trunk = TransformerConfig()
    return LatentLMConfig(
        vocab_size=VOCAB_V1, trunk=trunk, modalities={MODALITY: HeadConfig(latent_dim=32, cond_dim=trunk.dim)}
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
    # interleaved synthesis, who decides when the next symbol starts: "lm" (the LM head, within ``lm_timing``'s
    # run limits) or "predictor" (tts/duration_predictor.py: durations predicted in the prompt's tempo, forced
    # exactly; the release's duration/ folder)
    timing: str = "lm"
    lm_timing: LMTimingConfig = field(default_factory=LMTimingConfig)  # what only LM-head timing reads
    # synthesis: the classifier-free guidance scale when a call passes cfg=None (the API's and CLIs' default);
    # a release sets what suits it (tts_demo: 3 with predictor timing; docs/experiments/decoding-settings.md)
    cfg_scale: float = 1.5
    # synthesis: what the guidance rows drop (GUIDANCES); "text+voice" also leaves out the prompt latents, so
    # guidance pushes towards the prompt's voice as well (needs training with p_drop_prompt > 0)
    guidance: str = "text"
    # synthesis: the diffusion temperature (noise scale of each frame's sampler) when a call passes
    # temperature=None (tts_demo: 0.7, docs/experiments/real-voices.md)
    temperature: float = 1.0
    max_frames_per_phoneme: float = 6.0  # length cap: frames per phoneme symbol ...
    min_cap_seconds: float = 2.0  # ... plus this much
    max_output_seconds: float = 40.0  # absolute cap per sentence
    min_prompt_seconds: float = 1.0
    max_prompt_seconds: float = 30.0
    silence_rms: float = 1e-3  # prompts quieter than this RMS count as silent
    sentence_max_chars: int = 250
    pause_seconds: float = 0.2  # silence between sentences of a long text
    # silence before the first and after the last sentence of every output (continuation mode: after it only). The
    # model's speech starts at the first sample; an ASR (Whisper) mishears a first word with no lead-in, as
    # recordings always have one (~0.3 s on the dev sets). tts_demo: 0.3 (docs/experiments/real-voices.md, session 19)
    edge_seconds: float = 0.0

    def __post_init__(self) -> None:
        if MODALITY not in self.model.modalities:
            raise ValueError(
                f"TTSConfig.model needs an {MODALITY!r} modality, has {list(self.model.modalities)}"
            )
        if self.patch < 1 or self.latent_dim % self.patch:
            raise ValueError(
                f"patch must be >= 1 and divide the audio latent_dim ({self.latent_dim}), got {self.patch}"
            )
        if self.frame_rate <= 0 or self.max_frames_per_phoneme <= 0:
            raise ValueError("frame_rate and max_frames_per_phoneme must be positive")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")
        if not 0 <= self.edge_seconds <= MAX_EDGE_SECONDS or not 0 <= self.pause_seconds <= MAX_EDGE_SECONDS:
            raise ValueError(
                f"edge_seconds and pause_seconds must be in [0, {MAX_EDGE_SECONDS:g}], got {self.edge_seconds}, "
                f"{self.pause_seconds}"
            )
        if not 0 <= self.temperature <= MAX_TEMPERATURE:
            raise ValueError(f"temperature must be in [0, {MAX_TEMPERATURE:g}], got {self.temperature}")
        if self.guidance not in GUIDANCES:
            raise ValueError(f"guidance must be one of {GUIDANCES}, got {self.guidance!r}")
        if self.timing not in TIMINGS:
            raise ValueError(f"timing must be one of {TIMINGS}, got {self.timing!r}")
        if self.timing == "predictor" and not self.interleave:
            raise ValueError('timing "predictor" needs the interleaved layout (interleave: true)')
        if self.lm_timing.min_frames_per_phoneme > self.max_frames_per_phoneme:
            raise ValueError("lm_timing.min_frames_per_phoneme must be in [0, max_frames_per_phoneme]")

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """Configs written before session 11: the training-only keys (now TrainConfig's) are dropped, the keys
        only LM-head timing reads move into ``lm_timing``, and ``read_noise`` (measured without gain,
        docs/experiments/ctc.md) is gone: a release that set it is refused rather than decoded differently."""
        for key in TRAINING_ONLY:
            data.pop(key, None)
        moved = {k: data.pop(k) for k in LM_TIMING if k in data}
        if moved:
            base = data.get("lm_timing")
            data["lm_timing"] = {**(base if isinstance(base, dict) else {}), **moved}
        read_noise = data.pop("read_noise", 0.0)
        if read_noise:
            raise ValueError(f"read_noise ({read_noise}) was retired in session 11; this code cannot decode so")
        return data

    @property
    def latent_dim(self) -> int:
        """Dim of one sequence item (patch x the VAE's latent dim)."""
        return self.model.modalities[MODALITY].latent_dim

    @property
    def frame_dim(self) -> int:
        """Dim of one VAE frame."""
        return self.latent_dim // self.patch
