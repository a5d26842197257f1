"""A deeper trunk grown from a trained release, speaking exactly as before until it trains: capacity without
throwing away the CPU-hours already spent.

    python -m tts.grow checkpoints/tts_demo --layers 9 --out runs/grown/release
    # then train it: tts.train ... init_from=runs/grown/release tts.model.trunk.n_layers=9

New blocks are inserted evenly between the old ones (a trunk of 6 grown to 9 gets one after every second
block). Each is a copy of the block below it with its attention output and MLP down projection zeroed, so it
adds nothing to the residual stream at first (pre-norm blocks: x + 0 + 0): the grown model computes the same
hidden states, the same logits and the same speech (tested), and its one-step head and step bridge, fitted on
those states, stay valid. Training then opens the new blocks from their output projections, as AdaLN-Zero and ReZero do
(Gong et al. 2019, "Efficient training of BERT by progressively stacking", grow depth by copying blocks).
The VAE, duration predictor, one-step head and step bridge are copied unchanged; the release's config records
the new depth.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch

from latentlm.model import LatentLM
from tts.model import TTS
from tts.release_cli import derive_release


def insertion_plan(n_old: int, n_new: int) -> list[tuple[int, bool]]:
    """The grown trunk's blocks in order as (source block, is_new): every old block once, in order, and
    ``n_new - n_old`` new ones spread evenly, each after the block it copies."""
    k = n_new - n_old
    if not 0 < k <= n_old:
        raise ValueError(
            f"a trunk of {n_old} blocks grows to between {n_old + 1} and {2 * n_old}, not {n_new}"
        )
    after = {(j + 1) * n_old // k - 1 for j in range(k)}  # k distinct blocks, the last one included
    plan: list[tuple[int, bool]] = []
    for i in range(n_old):
        plan.append((i, False))
        if i in after:
            plan.append((i, True))
    return plan


@torch.no_grad()
def grow_depth(lm: LatentLM, n_layers: int) -> LatentLM:
    """A LatentLM like ``lm`` with ``n_layers`` trunk blocks (see the module docstring); ``lm`` is unchanged."""
    cfg = copy.deepcopy(lm.cfg)
    plan = insertion_plan(cfg.trunk.n_layers, n_layers)
    cfg.trunk = dataclasses.replace(cfg.trunk, n_layers=n_layers)
    new = LatentLM(cfg).to(next(lm.parameters()).device)
    old_sd = lm.state_dict()
    sd = {k: v for k, v in old_sd.items() if not k.startswith("trunk.layers.")}
    for dst, (src, fresh) in enumerate(plan):
        prefix = f"trunk.layers.{src}."
        for k, v in old_sd.items():
            if k.startswith(prefix):
                name = k[len(prefix) :]
                zero = fresh and name in ("attn.out.weight", "mlp.down.weight")
                sd[f"trunk.layers.{dst}.{name}"] = torch.zeros_like(v) if zero else v.clone()
    new.load_state_dict(sd, strict=True)
    return new.eval()


def grow_release(release: str | Path, n_layers: int, out: str | Path) -> TTS:
    """Load ``release``, grow its trunk to ``n_layers`` blocks, save the result as a release at ``out`` and
    return it."""
    tts = TTS.from_pretrained(release)
    lm = grow_depth(tts.lm, n_layers)
    cfg = dataclasses.replace(tts.cfg, model=lm.cfg)
    grown = TTS(cfg, lm, tts.vae, tts.frontend, tts.duration, tts.aligner, tts.one_step, tts.bridge)
    grown.save_pretrained(out)
    return grown


def main(argv: list[str] | None = None) -> None:
    a, grown = derive_release(
        argv, "tts.grow", __doc__, "layers", "trunk blocks of the grown model", grow_release
    )
    n = sum(x.numel() for x in grown.lm.parameters())
    print(f"grew {a.release} to {a.layers} trunk blocks ({n / 1e6:.2f}M parameters) at {a.out}")


if __name__ == "__main__":
    main()
