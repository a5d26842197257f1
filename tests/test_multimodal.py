"""One LatentLM, interleaved: after a short CPU training the same weights do text->image (a real-digit classifier
recognises the captioned digit), image->text (the caption names the digit) and text->speech (synthetic
text-dependent latents: the model stops at the right length and the content matches its own text)."""

from __future__ import annotations

import random

import pytest
import torch

from latentlm.config import load_config
from latentlm.image.multimodal import (
    SyntheticSpeech,
    SyntheticSpeechConfig,
    predicted_digit,
    speech_match_accuracy,
)
from latentlm.image.multimodal_train import MultimodalTrainConfig, run

SMALL = [
    "vae.image_size=8", "vae.levels=2", "vae.width=32", "vae.bottleneck.latent_dim=8", "vae_steps=200",
    "mm.lm.trunk.dim=96", "mm.lm.trunk.n_layers=2", "mm.lm.modalities.image.cond_dim=96",
    "mm.lm.modalities.image.latent_dim=8", "mm.lm.modalities.image.width=96", "mm.lm.modalities.image.depth=2",
    "mm.lm.modalities.audio.cond_dim=96", "mm.lm.modalities.audio.width=96", "mm.lm.modalities.audio.depth=2",
    "mm.batch=32", "mm.lr=0.002", "mm.log_every=0", "mm.steps=450",
    "classifier.steps=300", "eval_per_class=10", "eval_texts=20",
]  # fmt: skip


def test_synthetic_speech_depends_on_text():
    sp = SyntheticSpeech(SyntheticSpeechConfig(latent_dim=4, frames_per_char=2))
    a, b = sp.clean("one two"), sp.clean("two one")
    assert a.shape == (14, 4) and not torch.equal(a, b)
    assert torch.equal(a[:2], sp.clean("o"))  # same character, same frames
    assert sp.text(random.Random(0)).split()[0] in {
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    }
    with pytest.raises(ValueError, match="lowercase"):
        sp.clean("One")
    refs = [sp.clean(t) for t in ("one", "seven", "three two")]
    assert speech_match_accuracy(refs, refs) == 1.0
    assert speech_match_accuracy(refs[::-1], refs) < 1.0
    assert predicted_digit("a drawing of the digit seven") == 7 and predicted_digit("a drawing") == -1


@pytest.mark.slow
def test_one_model_does_all_three_directions(tmp_path):
    cfg = load_config(
        MultimodalTrainConfig, "recipes/multimodal/digits_speech.yaml", SMALL + [f"out_dir={tmp_path}"]
    )
    mm, rep = run(cfg)
    assert rep["t2i_acc_cfg2"] > 0.25, rep  # chance 0.1
    assert rep["t2i_acc_cfg1"] > 0.15, rep
    assert rep["i2t_acc"] > 0.3, rep  # chance 0.1
    assert rep["tts_len_corr"] > 0.5, rep
    assert rep["tts_match_acc"] > 3 * rep["tts_match_chance"], rep
    assert (tmp_path / "lm" / "tokenizer.json").is_file() and (tmp_path / "samples_t2i_cfg2.png").is_file()
