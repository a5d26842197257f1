"""The TTS trainer's loss terms: LatentLM's (next-token LM, diffusion) and the trainer's own (guided attention,
tts/align.py; phoneme CTC, tts/ctc.py), and their weights in one table.

Dimension legend: B rows, N positions, C trunk width.
"""

from __future__ import annotations

from torch import Tensor, nn

from latentlm.model import LatentLM
from tts import align, ctc


class TrainLosses(nn.Module):
    """Wraps LatentLM.losses as forward() so DDP / FSDP see the call; ``total`` weighs the terms."""

    def __init__(self, lm: LatentLM, align_cfg: align.AlignConfig, ctc_weight: float = 0.0):
        super().__init__()
        self.lm, self.align, self.ctc = lm, align_cfg, ctc_weight > 0
        if align_cfg.weight > 0:
            align.enable(lm, align_cfg)
        # the weights of the trainer's own terms, added to LatentLM's total (its "lm" and "diff_audio" terms
        # weigh tts.model.loss_weights); a term a run does not compute is skipped
        self.weights = {"align": align_cfg.weight, "ctc": ctc_weight}

    def forward(self, batch, generator, splits=None, ctc_spans=None):
        hidden = self.lm(batch)  # [B, N, C]
        terms = self.lm.losses(batch, generator=generator, hidden=hidden)
        if self.ctc:
            terms["ctc"], terms["ctc_per"] = ctc.phoneme_ctc_loss(hidden, batch, self.lm, ctc_spans)
        if self.align.weight > 0:
            probs = align.kept_probs(self.lm, self.align)
            terms["align"], terms["align_mass"] = align.guided_attention_loss(
                probs, batch, self.lm, splits, self.align.sigma
            )
            for i in self.align.layers:  # do not keep the graph alive until the next step
                self.lm.trunk.layers[i].attn.probs = None
        return terms

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        """The loss to minimise: LatentLM's weighted total plus the weighted terms of ``weights``."""
        loss = self.lm.total_loss(terms)
        for name, weight in self.weights.items():
            if name in terms:
                loss = loss + weight * terms[name]
        return loss
