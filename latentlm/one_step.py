"""One-step diffusion heads: a student that samples a latent in one network evaluation, on one trunk row.

The reference head (latentlm/head.py) samples each latent with ``steps`` DPM-Solver++ evaluations on two rows
(the condition and, for classifier-free guidance, the null condition). A one-step head is a ``DiffusionHead`` of
the same shape, distilled (latentlm/distill.py) to map the starting noise straight to the guided sample the
teacher reaches from that noise:

    student(x_T = temperature * z; cond)  ~=  teacher_{steps, cfg}(x_T; cond, uncond)

evaluated once at t = T-1 (``DiffusionHead.sample(cond, steps=1)``: x0 = alpha * x_T - sigma * v). The guidance
is distilled into the conditioned row, so a decoder using it runs the trunk on one row (``cfg=1``) as well.
Knowledge distillation of a deterministic sampler (Luhman & Luhman 2021, arXiv 2101.02388); Kyutai's Pocket TTS
samples its continuous latents in one head evaluation with guidance distilled away in the same spirit.

On disk, beside a release: ``DIRNAME/model.safetensors`` (the student's weights) and ``DIRNAME/config.json``
(``OneStepConfig``: what it was distilled from, at which guidance and temperatures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from latentlm.checkpoint import load_release, load_state_dict_strict, save_release
from latentlm.config import from_dict
from latentlm.head import DiffusionHead, HeadConfig

DIRNAME = "one_step_head"
KIND = "one_step_head"


@dataclass
class OneStepConfig:
    head: HeadConfig = field(default_factory=HeadConfig)  # the student's shape (the teacher's)
    modality: str = "audio"
    cfg_scale: float = 1.0  # the guidance the teacher sampled with; the student's one row carries it
    teacher_steps: int = 10  # DPM-Solver++ steps of the teacher
    max_temperature: float = 1.0  # distilled on temperatures uniform in [0, max_temperature]
    default: bool = False  # a release decodes with it unless a call asks for the reference head

    def __post_init__(self) -> None:
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")
        if self.teacher_steps < 1:
            raise ValueError(f"teacher_steps must be >= 1, got {self.teacher_steps}")
        if not self.max_temperature > 0:
            raise ValueError(f"max_temperature must be positive, got {self.max_temperature}")


def student_from(teacher: DiffusionHead) -> DiffusionHead:
    """A student of the teacher's shape starting from its weights (so it starts as the teacher's one-step
    estimate, the posterior mean at t = T-1)."""
    student = DiffusionHead(teacher.cfg)
    student.load_state_dict(teacher.state_dict())
    return student


def save_one_step(directory: str | Path, head: DiffusionHead, cfg: OneStepConfig, meta: dict | None = None) -> Path:
    """Write ``directory`` (normally RELEASE/one_step_head) with the student's weights and config."""
    if head.cfg != cfg.head:
        raise ValueError("the head's shape differs from OneStepConfig.head")
    return save_release(directory, head, cfg, meta=meta or {}, kind=KIND)


def load_one_step(directory: str | Path, map_location="cpu") -> tuple[DiffusionHead, OneStepConfig]:
    sd, cfg_dict, _ = load_release(directory, kind=KIND)
    cfg = from_dict(OneStepConfig, cfg_dict)
    head = DiffusionHead(cfg.head)
    load_state_dict_strict(head, sd, source=str(directory))
    return head.to(map_location).eval(), cfg
