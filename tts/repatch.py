"""A release that reads and predicts several VAE frames per item (``tts.patch``, tts/patch.py), made from a
trained one-frame-per-item release so that training starts from what the release learnt instead of from scratch.

    python -m tts.repatch checkpoints/tts_demo --patch 2 --out runs/patch2/init
    # then train it: tts.train ... init_from=runs/patch2/init tts.patch=2 tts.model.modalities.audio.latent_dim=64

With patch p the trunk steps at frame_rate / p, so a sentence costs p times fewer trunk calls (issue 20: RTF), and
a training step of the same number of items holds p times the audio. Only the weights that touch a latent change
shape; each new one is made so that an item whose p frames are equal behaves as that one frame did:

- ``latent_in`` (reads an item, [C, p*D]): the old [C, D] weight divided by p, once per frame: an item's
  embedding is the mean of its frames' embeddings;
- the diffusion head's ``x_in`` (reads the noisy item, [W, p*D]): the same, so a noisy item of p equal frames
  enters the head as that frame did;
- the head's ``out`` (writes the item's v or eps, [p*D, W]): the old [D, W] weight once per frame: at first every
  frame of an item gets the prediction the release made for one frame;
- the latent statistics: repeated p times (as ``tts.patch.repeat_stats`` lays them out).

So before training it speaks in items of p copies of a frame at the release's tempo per item (p times too few
distinct frames): a starting point, not a model to use; training teaches the trunk its new step (p frames of
time) and the head the frames within an item. Everything else (trunk, LM head, VAE, duration predictor) is copied
unchanged; a one-step head is not (it was distilled for one frame per item: distil the trained model again).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch

from latentlm.model import LatentLM
from tts.layout import MODALITY
from tts.model import TTS
from tts.patch import repeat_stats
from tts.release_cli import derive_release


@torch.no_grad()
def repatch_lm(lm: LatentLM, p: int) -> LatentLM:
    """A LatentLM like ``lm`` (one frame per item) whose audio items are ``p`` frames (module docstring);
    ``lm`` is unchanged."""
    if p < 2:
        raise ValueError(f"patch must be >= 2, got {p}")
    cfg = copy.deepcopy(lm.cfg)
    head = cfg.modalities[MODALITY]
    d = head.latent_dim
    cfg.modalities[MODALITY] = dataclasses.replace(head, latent_dim=p * d)
    new = LatentLM(cfg).to(next(lm.parameters()).device)
    sd = dict(lm.state_dict())  # new tensors replace entries; load_state_dict copies into the new model
    mean, std = repeat_stats(sd[f"latent_mean_{MODALITY}"], sd[f"latent_std_{MODALITY}"], p)
    sd[f"latent_mean_{MODALITY}"], sd[f"latent_std_{MODALITY}"] = mean, std
    for reads in (f"latent_in.{MODALITY}.weight", f"heads.{MODALITY}.x_in.weight"):  # [C, D] -> [C, p * D]
        sd[reads] = torch.cat([sd[reads] / p] * p, dim=1)
    writes = f"heads.{MODALITY}.out.weight"  # [D, W] -> [p * D, W]
    sd[writes] = torch.cat([sd[writes]] * p, dim=0)  # (the head's output layer has no bias)
    new.load_state_dict(sd, strict=True)
    return new.eval()


def repatch_release(release: str | Path, p: int, out: str | Path) -> TTS:
    """Load ``release`` (one frame per item), make its ``p``-frame version, save it as a release at ``out``
    and return it."""
    tts = TTS.from_pretrained(release)
    if tts.cfg.patch != 1:
        raise ValueError(
            f"{release} already has {tts.cfg.patch} frames per item; repatch a one-frame release"
        )
    lm = repatch_lm(tts.lm, p)
    cfg = dataclasses.replace(tts.cfg, model=lm.cfg, patch=p)
    made = TTS(cfg, lm, tts.vae, tts.frontend, tts.duration, tts.aligner, None)
    made.save_pretrained(out)
    return made


def main(argv: list[str] | None = None) -> None:
    a, made = derive_release(
        argv,
        "tts.repatch",
        __doc__,
        "patch",
        "VAE frames per item of the new release (>= 2)",
        repatch_release,
    )
    n = sum(x.numel() for x in made.lm.parameters())
    print(
        f"made {a.out}: {a.patch} frames per item ({n / 1e6:.2f}M parameters); train it with "
        f"init_from={a.out} tts.patch={a.patch} tts.model.modalities.audio.latent_dim={made.cfg.latent_dim}"
    )


if __name__ == "__main__":
    main()
