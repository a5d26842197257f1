"""The TTS trainer's configuration (python -m tts.train RECIPE.yaml key=value ...): the release to train
(``tts``, a TTSConfig), the data, the optimizer, the auxiliary losses and the run. Built from a recipe by
latentlm.config.load_config; unknown keys and wrong types are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tts import align
from tts.config import TRAINING_ONLY, TTSConfig


@dataclass
class DataConfig:
    manifest: str = ""  # training manifest (JSONL)
    latents: str = ""  # latent store directory (tts.data.extract_latents)
    valid_manifest: str = ""  # rows for the audio samples (default: the training manifest)
    max_frames: int = 3000  # per micro-batch: sum of (target frames + phonemes)
    max_batch: int = 64
    max_item_frames: int = 500  # drop utterances with more target frames (20 s at 25 Hz)
    p_prefix: float = 0.3  # share of 3 s-continuation items (prompt = start of the same utterance)
    prefix_frames: list[int] = field(default_factory=lambda: [20, 60])
    max_prompt_frames: int = 150
    num_samples: int = 2  # validation prompts rendered to TensorBoard
    # frames per phoneme symbol ({id: [...]}, python -m tts.durations) for tts.interleave; "" = LATENTS/durations.json
    durations: str = ""
    # duration predictor release (python -m tts.duration_train) shipped with the exports when tts.timing is
    # "predictor"; "" = LATENTS/duration_model
    duration_model: str = ""
    # a file of speaker ids (one per line, e.g. tts.real_voices' heldout.txt): a manifest row of any of them is
    # an error, so a dev set's voices never reach training
    heldout_speakers: str = ""
    # > 0: micro-batches are laid out in this many worker processes, ahead of the training step (on a GPU,
    # where laying out ~60 rows on the host took as long as the step; on a CPU the cores are busy anyway)
    num_workers: int = 0
    prefetch: int = 4  # micro-batches each worker keeps ready


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio at max_steps
    grad_clip: float = 1.0
    accum_steps: int = 1


@dataclass
class TrainConfig:
    tts: TTSConfig = field(default_factory=TTSConfig)
    vae: str = "checkpoints/vae_small"  # the audio VAE release the latents were made with
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    align: align.AlignConfig = field(default_factory=align.AlignConfig)  # guided attention (tts/align.py)
    p_uncond: float = 0.1  # condition dropout for classifier-free guidance
    # the share of the condition-dropped rows that also lose the prompt latents (tts/layout.py), for guidance
    # towards the voice as well (TTSConfig.guidance "text+voice"); 0 = the voice always stays
    p_drop_prompt: float = 0.0
    prompt_loss_weight: float = 0.0  # loss weight of the prompt latents (target latents weigh 1)
    latent_noise_scale: float = 0.5  # sigma-VAE noise s on training latents (the VAE's sigma_scale)
    # extra Gaussian noise on the target latents the model READS (normalised units, per sequence std ~
    # U(0, 2 x input_noise)); the predicted targets stay as they were. The history can no longer simply be
    # continued, so the model has to read the phonemes (Tacotron's prenet dropout, for latents); 0 = off
    input_noise: float = 0.0
    ctc_weight: float = 0.0  # phoneme CTC on the hidden states (tts/ctc.py); 0 = off
    ctc_blind: float = 0.0  # > 0: CTC only on this share of rows, which read pure noise as their target audio
    ema_decay: float = 0.999
    max_steps: int = 10000
    time_limit_minutes: float = 0.0  # 0 = none; stops, saves and exports when reached
    # with a time limit: max_steps becomes a cap and the cosine horizon is fitted to the measured step rate so
    # the schedule ends at the limit (one-shot runs, e.g. a GPU lent for minutes; a resumed run refits)
    schedule_to_time_limit: bool = False
    save_every: int = 200
    log_every: int = 20
    sample_every: int = 500  # 0 = never
    seed: int = 0
    out_dir: str = "runs/tts"
    export_dir: str = ""  # default OUT_DIR/release
    device: Literal["auto", "cpu", "cuda"] = "auto"
    parallel: Literal["ddp", "fsdp"] = "ddp"  # with torchrun (WORLD_SIZE > 1)
    bf16: bool = True  # autocast on CUDA
    threads: int = 1  # torch CPU threads
    progress: bool = True
    init_from: str = ""  # a TTS release whose LatentLM weights start a new run (same model config)
    # with init_from: the step a new run starts at, continuing that release's lr schedule (a campaign whose run
    # folder is gone goes on from its release: the release's meta "steps"); warmup_steps re-run from there,
    # since the optimizer's moments start afresh. 0 = a new schedule from step 0
    start_step: int = 0
    max_bad_steps: int = 20  # non-finite updates are skipped; this many in a row stop the run

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """Recipes and runs written before session 11 hold the training-only keys under ``tts``: moved here."""
        tts = data.get("tts")
        if isinstance(tts, dict):
            for key in TRAINING_ONLY:
                if key in tts:
                    data[key] = tts.pop(key)
        return data

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond}")
        if not 0.0 <= self.p_drop_prompt <= 1.0:
            raise ValueError(f"p_drop_prompt must be in [0, 1], got {self.p_drop_prompt}")
        if self.input_noise < 0 or self.latent_noise_scale < 0 or self.prompt_loss_weight < 0:
            raise ValueError("input_noise, latent_noise_scale and prompt_loss_weight must be >= 0")
        if self.ctc_weight < 0 or not 0.0 <= self.ctc_blind <= 1.0:
            raise ValueError(
                f"need ctc_weight >= 0 and ctc_blind in [0, 1]; got {self.ctc_weight}, {self.ctc_blind}"
            )
        if self.start_step < 0 or (self.start_step and not self.init_from):
            raise ValueError(f"start_step must be >= 0 and needs init_from, got {self.start_step}")
        if self.start_step and self.start_step >= self.max_steps:
            raise ValueError(f"start_step={self.start_step} is not below max_steps={self.max_steps}")
        if 0 < self.start_step < self.optim.warmup_steps:
            # the run warms up again from start_step: inside the schedule's own warmup the two ramps would multiply
            raise ValueError(
                f"start_step={self.start_step} is inside the schedule's warmup (optim.warmup_steps="
                f"{self.optim.warmup_steps}): continue a release from a step past its warmup, or start at 0"
            )
        if self.max_bad_steps < 1:
            raise ValueError(f"max_bad_steps must be >= 1, got {self.max_bad_steps}")
        if self.tts.interleave and self.ctc_weight > 0:
            raise ValueError(
                "ctc_weight is for the prefix layout; the interleaved layout gives the phonemes per frame"
            )
        if self.ctc_blind > 0 and self.ctc_weight == 0:
            raise ValueError("ctc_blind needs ctc_weight > 0 (the blind rows are only read by the CTC loss)")
