"""How well do a TTS release's attention heads follow the phoneme <-> frame diagonal? (teacher-forced, held out)

    python recipes/lab/align_report.py checkpoints/tts_demo [OTHER_RELEASE ...] --manifest data/corpus/valid.jsonl \\
        --latents data/latents [--items 32] [--plot eval/align.png]

For every release: cross-sentence items of held-out speakers (prompt = another utterance of the same speaker,
whole; phonemes = prompt text + target text) run through the LatentLM with the ground-truth latents, and every
head of every trunk layer is scored with ``tts.align``'s band mass (share of a frame's attention inside the
diagonal band, sigma 0.1, mean over frames and items; 1 = perfectly diagonal; the report also prints what
attention spread evenly over all visible keys would score on the same items). Prints, per release, the best head of each layer and the mean over the heads the
recipe guided, and how much the model's teacher-forced diffusion loss depends on the phonemes (loss with the
phonemes dropped to ``<null>`` / loss with them; 1.0 = the text is ignored and the audio history alone
predicts the next frame), the same ratio when the model reads input-noised latents as in training, how much the
hidden state at the target frames moves when the phonemes are shuffled (relative), and the phoneme error of the
``tts.ctc`` read-out of those hidden states (only meaningful for a model trained with ``ctc_weight``). ``--plot`` draws the best head's attention over one item for each release (PNG);
``--generate-plot`` draws, for each release, where that head looks in the phonemes while the model GENERATES
(synthesis of the first held-out target with its prompt, CFG rows dropped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tts import align, ctc  # noqa: E402
from tts.data import LatentStore, PromptTargetDataset, collate  # noqa: E402
from tts.layout import training_batch  # noqa: E402
from tts.manifests import read_jsonl  # noqa: E402
from tts.model import TTS  # noqa: E402


def items(tts: TTS, manifest: str, latents: str, n: int) -> list[dict]:
    rows = read_jsonl(manifest)
    store = LatentStore(latents, patch=tts.cfg.patch)
    ph = {r.id: tts.frontend.encode(r.text) for r in rows if r.id in store}
    ds = PromptTargetDataset(rows, store, ph, p_prefix=0.0, max_prompt_frames=250, seed=0)
    picked = [ds[i] for i in range(len(ds))]
    picked = [x for x in picked if x["mode"] == "speaker" and x.get("align_split")]
    return picked[:n]


@torch.no_grad()
def band_mass(tts: TTS, data: list[dict], sigma: float = 0.1) -> torch.Tensor:
    """[layers, heads] mean band mass over the items (one item per forward: no padding)."""
    lm = tts.lm
    L, H = len(lm.trunk.layers), lm.cfg.trunk.n_heads
    for layer in lm.trunk.layers:
        layer.attn.keep_probs = H
    total = torch.zeros(L, H)
    for x in data:
        collated = collate([x])
        batch = training_batch(lm, collated, p_uncond=0.0, latent_noise_scale=0.0)
        lm(batch)
        for i, layer in enumerate(lm.trunk.layers):
            for h in range(H):
                _, mass = align.guided_attention_loss(
                    [layer.attn.probs[:, h : h + 1]], batch, lm, collated["align_split"], sigma
                )
                total[i, h] += float(mass)
    for layer in lm.trunk.layers:
        layer.attn.keep_probs, layer.attn.probs = 0, None
    return total / len(data)


def uniform_mass(tts: TTS, data: list[dict], sigma: float = 0.1) -> float:
    """The band mass of attention spread evenly over every visible (causal) key: the chance level."""
    total = 0.0
    for x in data:
        collated = collate([x])
        batch = training_batch(tts.lm, collated, p_uncond=0.0, latent_noise_scale=0.0)
        N = batch.tokens.shape[1]
        causal = torch.ones(N, N).tril()
        p = (causal / causal.sum(-1, keepdim=True))[None, None]  # [1, 1, N, N]
        total += float(align.guided_attention_loss([p], batch, tts.lm, collated["align_split"], sigma)[1])
    return total / len(data)


@torch.no_grad()
def attention_map(tts: TTS, x: dict, layer: int, head: int) -> torch.Tensor:
    """[T, P] attention of one head from each latent frame to each phoneme."""
    lm = tts.lm
    collated = collate([x])
    batch = training_batch(lm, collated, p_uncond=0.0, latent_noise_scale=0.0)
    lm.trunk.layers[layer].attn.keep_probs = head + 1
    lm(batch)
    p = lm.trunk.layers[layer].attn.probs[0, head]
    lm.trunk.layers[layer].attn.keep_probs, lm.trunk.layers[layer].attn.probs = 0, None
    text, frames = align.positions(batch, lm, 0)
    return p[frames][:, text]


@torch.no_grad()
def text_dependence(
    tts: TTS, data: list[dict], draws: int = 4, input_noise: float = 0.0
) -> tuple[float, float]:
    """Mean diffusion loss over the items with the phonemes and with them dropped (same noise draws).
    ``input_noise``: the model reads target latents corrupted as in training (tts.layout.training_batch)."""
    out = []
    for drop in (0.0, 1.0):
        total = 0.0
        for i, x in enumerate(data):
            batch = training_batch(
                tts.lm,
                collate([x]),
                p_uncond=drop,
                latent_noise_scale=0.0,
                input_noise=input_noise,
                generator=torch.Generator().manual_seed(7 + i),
            )
            for k in range(draws):
                g = torch.Generator().manual_seed(1000 * i + k)
                total += float(tts.lm.losses(batch, generator=g)["diff_audio"]) / draws
        out.append(total / len(data))
    return out[0], out[1]


@torch.no_grad()
def phoneme_sensitivity(tts: TTS, data: list[dict]) -> tuple[float, float]:
    """What the trunk's output knows about the text, teacher forced:
    (mean relative change of the hidden state at the target frames when the row's phonemes are shuffled,
    greedy phoneme error rate of the tts.ctc read-out; about 1 when the model was not trained with CTC)."""
    change, per = [], []
    for i, x in enumerate(data):
        batch = training_batch(tts.lm, collate([x]), p_uncond=0.0, latent_noise_scale=0.0)
        perm = torch.randperm(len(x["phonemes"]), generator=torch.Generator().manual_seed(i))
        shuffled = training_batch(
            tts.lm, collate([{**x, "phonemes": x["phonemes"][perm]}]), p_uncond=0.0, latent_noise_scale=0.0
        )
        h, h2 = tts.lm(batch), tts.lm(shuffled)
        sel = (batch.modality[0] >= 0) & (batch.weight[0] > 0)
        change.append(float(((h[0, sel] - h2[0, sel]).norm(dim=-1) / h[0, sel].norm(dim=-1)).mean()))
        per.append(float(ctc.phoneme_ctc_loss(h, batch, tts.lm)[1]))
    return sum(change) / len(change), sum(per) / len(per)


@torch.no_grad()
def generation_attention(tts: TTS, x: dict, rows: dict, layer: int, head: int) -> tuple[torch.Tensor, int]:
    """[frames, P] attention of one head from each generated frame to the P prefix phonemes, and the index of
    the first target phoneme. x: a dataset item (its prompt and target utterances are looked up in ``rows``)."""
    prompt, target = rows[x["prompt_id"]], rows[x["id"]]
    attn = tts.lm.trunk.layers[layer].attn
    attn.keep_probs = head + 1
    calls: list[torch.Tensor] = []
    hook = attn.register_forward_hook(lambda m, i, o: calls.append(m.probs[0, head].clone()))  # row 0: cond
    try:
        tts.synthesize(target.text, prompt.audio, prompt_text=prompt.text, seed=0)
    finally:
        hook.remove()
        attn.keep_probs, attn.probs = 0, None
    n_prompt = len(tts.frontend.encode(prompt.text)) + 1  # + the joining space
    P = n_prompt + len(tts.frontend.encode(target.text))
    steps = [c[-1, 1 : P + 1] for c in calls[1:] if c.shape[0] == 1]  # decode steps; prefix pos 0 is <bos>
    return torch.stack(steps), n_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("releases", nargs="+")
    ap.add_argument("--manifest", default="data/corpus/valid.jsonl")
    ap.add_argument("--latents", default="data/latents")
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--generate-plot", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    maps = []
    for rel in args.releases:
        tts = TTS.from_pretrained(rel)
        if tts.cfg.interleave:  # its sequences carry each target symbol's token before its frames
            raise SystemExit(
                f"{rel}: an interleaved-layout model; this script builds prefix-layout sequences"
            )
        data = items(tts, args.manifest, args.latents, args.items)
        m = band_mass(tts, data)
        best = m.max(1)
        print(
            f"{rel} ({len(data)} held-out items): best head per layer "
            + " ".join(f"L{i}:h{int(h)}={v:.2f}" for i, (v, h) in enumerate(zip(best.values, best.indices)))
        )
        print(
            f"    all heads: mean {float(m.mean()):.3f}; head 0 of layers 1-4: {float(m[1:5, 0].mean()):.3f}; "
            f"even attention: {uniform_mass(tts, data):.3f}"
        )
        with_text, without = text_dependence(tts, data)
        print(
            f"    diffusion loss with phonemes {with_text:.4f}, phonemes dropped {without:.4f}: "
            f"ratio {without / with_text:.3f}"
        )
        noisy_text, noisy_without = text_dependence(tts, data, input_noise=0.75)
        change, per = phoneme_sensitivity(tts, data)
        print(
            f"    reading input-noised latents (input_noise 0.75): ratio {noisy_without / noisy_text:.3f}; "
            f"hidden state change with shuffled phonemes {change:.3f}; CTC read-out phoneme error {per:.2f}"
        )
        flat = int(m.argmax())
        layer, head = divmod(flat, m.shape[1])
        gen = None
        if args.generate_plot:
            rows = {r.id: r for r in read_jsonl(args.manifest)}
            gen = generation_attention(tts, data[0], rows, layer, head)
        maps.append((rel, layer, head, attention_map(tts, data[0], layer, head), gen))
    if args.plot:
        _plot(args.plot, [(rel, f"layer {la} head {h}", a) for rel, la, h, a, _ in maps], "latent frame")
    if args.generate_plot:
        _plot(
            args.generate_plot,
            [(rel, f"generating, layer {la} head {h}", g[0]) for rel, la, h, _, g in maps],
            "generated frame (target only)",
        )


def _plot(path: str, panels: list[tuple], xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (rel, title, a) in zip(axes[0], panels):
        ax.imshow(a.T.numpy(), origin="lower", aspect="auto", cmap="viridis")
        ax.set_title(f"{Path(rel).name}: {title}", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("phoneme (prompt text, then target text)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
