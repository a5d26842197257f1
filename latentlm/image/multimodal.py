"""One LatentLM, interleaved: text -> image, image -> text and text -> speech with the same weights.

Dimension legend: n rows, L image latents (h * w), Di image latent dim, T speech frames, Da speech latent dim.

Sequences (the layout's boundary tokens separate the modalities; weights 0 mark pure context):
    caption -> image : <bos> text("a drawing of the digit seven") <bo_image> z_1..z_L <eo_image>
    image -> caption : <bos> <bo_image> z_1..z_L <eo_image> text("a drawing of the digit seven") <eos>
    text -> speech   : <bos> text("seven two") <bo_audio> a_1..a_T <eo_audio>      (the TTS layout)
The caption of a caption->image row is replaced by ``<null>`` with probability ``p_null`` (CFG).

Text is byte-level BPE (``latentlm.text.tokenizer``) trained on the captions and the speech texts.
"Speech" here is a synthetic, text-dependent latent modality (documented in docs/MULTIMODAL.md): each character
of the text maps to a fixed random prototype vector [Da] (seeded), ``frames_per_char`` frames per character, plus
N(0, noise^2) per frame. So the stop length is proportional to the text length and the content is determined by the
text, as with real speech latents, at a cost the shared CPU can afford. Real speech goes through tts/.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from latentlm.image.data import DIGIT_WORDS
from latentlm.image.generation import MODALITY as IMAGE
from latentlm.image.generation import generate_latents, image_spans, noisy_normalised
from latentlm.image.vae import ImageVAE
from latentlm.model import LatentLM, LatentLMConfig
from latentlm.sequence import Batch, Latents, Span, Tokens, pack
from latentlm.text.tokenizer import TextTokenizer
from latentlm.training import optimizer_step

AUDIO = "audio"
CHARS = " abcdefghijklmnopqrstuvwxyz"


def caption(label: int) -> str:
    return f"a drawing of the digit {DIGIT_WORDS[label]}"


@dataclass
class SyntheticSpeechConfig:
    latent_dim: int = 8  # Da
    frames_per_char: int = 1
    noise: float = 0.1
    max_words: int = 3
    seed: int = 1234


class SyntheticSpeech:
    """Text-dependent latent sequences standing in for speech latents (see the module docstring)."""

    def __init__(self, cfg: SyntheticSpeechConfig):
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        self.prototypes = torch.randn(len(CHARS), cfg.latent_dim, generator=g)  # [chars, Da]

    def text(self, rng: random.Random) -> str:
        return " ".join(rng.choice(DIGIT_WORDS) for _ in range(rng.randint(1, self.cfg.max_words)))

    def clean(self, text: str) -> Tensor:
        """Noise-free latents of a text -> [T, Da], T = frames_per_char * len(text)."""
        bad = sorted(set(text) - set(CHARS))
        if bad:
            raise ValueError(f"synthetic speech covers lowercase letters and spaces only, got {bad}")
        idx = torch.tensor([CHARS.index(c) for c in text]).repeat_interleave(self.cfg.frames_per_char)
        return self.prototypes[idx]

    def sample(self, text: str, generator: torch.Generator | None = None) -> Tensor:
        z = self.clean(text)
        return z + self.cfg.noise * torch.randn(z.shape, generator=generator)


@dataclass
class MultimodalConfig:
    lm: LatentLMConfig = field(default_factory=LatentLMConfig)  # modalities: image (VAE dim), audio (Da)
    speech: SyntheticSpeechConfig = field(default_factory=SyntheticSpeechConfig)
    tokenizer_vocab: int = 297  # byte-level BPE: 256 bytes + merges; lm.vocab_size follows the tokenizer
    task_probs: list[float] = field(default_factory=lambda: [0.4, 0.3, 0.3])  # t2i, i2t, tts
    p_null: float = 0.1
    steps: int = 1000
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0
    log_every: int = 100

    def __post_init__(self) -> None:
        if len(self.task_probs) != 3 or min(self.task_probs) < 0 or sum(self.task_probs) <= 0:
            raise ValueError(
                f"task_probs must be 3 non-negative weights (t2i, i2t, tts), got {self.task_probs}"
            )
        if not 0 <= self.p_null < 1:
            raise ValueError(f"p_null must be in [0, 1), got {self.p_null}")


class Interleaved:
    """Builds interleaved training rows and runs the three directions with one LatentLM."""

    def __init__(self, model: LatentLM, vae: ImageVAE, tok: TextTokenizer, speech: SyntheticSpeech):
        if set(model.layout.modalities) != {IMAGE, AUDIO}:
            raise ValueError(
                f"the multimodal LatentLM needs modalities image and audio, has {model.layout.modalities}"
            )
        if model.cfg.vocab_size != tok.vocab_size:
            raise ValueError(f"lm.vocab_size {model.cfg.vocab_size} != tokenizer vocab {tok.vocab_size}")
        self.model, self.vae, self.tok, self.speech = model, vae, tok, speech
        self.lay = model.layout

    def text(self, s: str) -> Tensor:
        return self.lay.text(self.tok.encode(s))

    def t2i(self, z: Tensor, label: int | None) -> list[Span]:
        cond = [
            Tokens(torch.tensor([self.lay.null]), 0.0)
            if label is None
            else Tokens(self.text(caption(label)), 0.0)
        ]
        return [Tokens(torch.tensor([self.lay.bos]), 0.0), *cond, *image_spans(self.model, z)]

    def i2t(self, z: Tensor, label: int | None) -> list[Span]:
        spans: list[Span] = [
            Tokens(torch.tensor([self.lay.bos]), 0.0),
            *image_spans(self.model, z, weight=0.0),
        ]
        if label is not None:
            spans += [Tokens(self.text(caption(label))), Tokens(torch.tensor([self.lay.eos]))]
        return spans

    def tts(self, text: str, a: Tensor | None) -> list[Span]:
        spans: list[Span] = [
            Tokens(torch.tensor([self.lay.bos]), 0.0),
            Tokens(self.text(text), 0.0),
            Tokens(torch.tensor([self.lay.begin[AUDIO]]), 0.0),
        ]
        if a is not None:
            spans += [
                Latents(AUDIO, self.model.normalize(AUDIO, a)),
                Tokens(torch.tensor([self.lay.end[AUDIO]])),
            ]
        return spans

    def batch(
        self, mu: Tensor, labels: Tensor, cfg: MultimodalConfig, g: torch.Generator, rng: random.Random
    ) -> Batch:
        """A mixed batch: each row is t2i / i2t / tts with ``cfg.task_probs``. mu [n, L, Di] VAE means."""
        tasks = torch.multinomial(torch.tensor(cfg.task_probs), cfg.batch, replacement=True, generator=g)
        idx = torch.randint(0, len(labels), (cfg.batch,), generator=g)
        z = noisy_normalised(self.model, self.vae, mu[idx], g)  # [batch, L, Di]
        rows = []
        for r in range(cfg.batch):
            lab = int(labels[idx[r]])
            if tasks[r] == 0:
                rows.append(self.t2i(z[r], None if rng.random() < cfg.p_null else lab))
            elif tasks[r] == 1:
                rows.append(self.i2t(z[r], lab))
            else:
                text = self.speech.text(rng)
                rows.append(self.tts(text, self.speech.sample(text, g)))
        return pack(rows, self.lay, self.model.latent_dims)

    # ---- the three directions ------------------------------------------------------------------------------
    def text_to_image(self, labels: list[int], cfg: float = 1.0, steps: int = 10, generator=None) -> Tensor:
        """Captions of labels -> images [n, K, S, S]."""
        conds = [self.text(caption(c)).tolist() for c in labels]
        z = generate_latents(
            self.model, conds, self.vae.cfg.num_latents, cfg=cfg, steps=steps, generator=generator
        )
        return self.vae.decode(self.vae.from_tokens(self.model.denormalize(IMAGE, z)))

    def image_to_text(self, mu: Tensor, max_new: int = 16) -> list[str]:
        """VAE means [n, L, Di] -> greedy captions."""
        z = self.model.normalize(IMAGE, mu)
        prefix = pack([self.i2t(z[i], None) for i in range(len(z))], self.lay, self.model.latent_dims)
        out = self.model.generate(prefix, max_new=max_new, token_temperature=0.0, stop_tokens=[self.lay.eos])
        texts = []
        for items in out:
            ids = [t - self.lay.offset for t in items if isinstance(t, int) and t >= self.lay.offset]
            texts.append(self.tok.decode(ids))
        return texts

    def text_to_speech(
        self, texts: list[str], max_frames: int, steps: int = 10, generator=None
    ) -> list[Tensor]:
        """Texts -> latent sequences [T_i, Da] (unnormalised), each ended by the model's own <eo_audio>."""
        prefix = pack([self.tts(t, None) for t in texts], self.lay, self.model.latent_dims)
        out = self.model.generate(
            prefix, max_new=max_frames + 1, max_latents=max_frames, steps=steps,
            stop_tokens=[self.lay.end[AUDIO]], generator=generator,
        )  # fmt: skip
        seqs = []
        for items in out:
            lat = [x for x in items if isinstance(x, Tensor)]
            empty = torch.zeros(0, self.speech.cfg.latent_dim)
            seqs.append(self.model.denormalize(AUDIO, torch.stack(lat)) if lat else empty)  # [T_i, Da]
        return seqs


def predicted_digit(text: str) -> int:
    """The digit word a caption names (-1 if none)."""
    words = text.split()
    for w in reversed(words):
        if w in DIGIT_WORDS:
            return DIGIT_WORDS.index(w)
    return -1


def speech_match_accuracy(generated: list[Tensor], references: list[Tensor]) -> float:
    """Fraction of generated sequences whose nearest reference (mean frame distance over the shared prefix
    length) is their own; chance = 1 / len(references)."""
    hits = 0
    for i, gen in enumerate(generated):
        d = []
        for ref in references:
            n = min(len(gen), len(ref))
            d.append(float((gen[:n] - ref[:n]).norm(dim=-1).mean()) if n else float("inf"))
        hits += int(np.argmin(d) == i)
    return hits / len(generated)


def train_multimodal(
    cfg: MultimodalConfig, vae: ImageVAE, mu: Tensor, labels: Tensor
) -> tuple[Interleaved, dict]:
    """Tokenizer on captions + speech texts, one LatentLM on the mixed tasks. mu [n, L, Di] training VAE means."""
    rng = random.Random(cfg.seed)
    speech = SyntheticSpeech(cfg.speech)
    texts = [caption(c) for c in range(10)] * 20 + [speech.text(rng) for _ in range(500)]
    tok = TextTokenizer.train(texts, vocab_size=cfg.tokenizer_vocab)
    lm_cfg = cfg.lm
    if lm_cfg.vocab_size != tok.vocab_size:
        lm_cfg = replace(lm_cfg, vocab_size=tok.vocab_size)
    torch.manual_seed(cfg.seed)
    model = LatentLM(lm_cfg)
    flat = mu.reshape(-1, mu.shape[-1])  # [n*L, Di]
    model.set_latent_stats(IMAGE, flat.mean(0), flat.std(0).clamp_min(1e-5))
    ref = torch.cat([speech.sample(speech.text(rng)) for _ in range(200)])  # [frames, Da]
    model.set_latent_stats(AUDIO, ref.mean(0), ref.std(0).clamp_min(1e-5))
    mm = Interleaved(model, vae, tok, speech)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    model.train()
    terms: dict = {}
    for step in range(cfg.steps):
        terms = model.losses(mm.batch(mu, labels, cfg, g, rng))
        optimizer_step(model, opt, sched, terms)
        if cfg.log_every and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            print(
                f"mm step {step:5d}  " + "  ".join(f"{k} {v.item():.4f}" for k, v in terms.items()),
                flush=True,
            )
    model.eval()
    return mm, {k: float(v.detach()) for k, v in terms.items()}
