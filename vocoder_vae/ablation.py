"""The LatentLM paper's tokenizer ablation at small scale: sigma-VAE against a learned-variance (gaussian) VAE.

    python -m vocoder_vae.ablation --steps 1500 --out runs/vae_ablation --train TRAIN --eval EVAL \
        [--recipe R.yaml] [key=value ...]

TRAIN / EVAL: manifests/dirs/files, e.g. the team's real_speech/librispeech_train-clean-100/manifest.tsv and
real_speech/dev/manifest.tsv.

Both models share the recipe (default ``recipes/vae/ablation_tiny.yaml``: reconstruction losses only), the seed,
the training clips and crops, and the step budget; only ``model.bottleneck.kind`` differs. Each is trained with
the regular ``Trainer`` (so a rerun resumes from ``OUT/<kind>/last.pt``) and exported with latent stats. Then,
on held-out clips (by default 8 clips spread over EVAL), we measure

- posterior variance of the latents: gaussian, mean of exp(logvar) over frames and dims; sigma, the
  distribution of sigma^2 (one sigma per example, |N(0, (s/0.8)^2)|; mean, 10th and 90th percentile),
  and, for both, the variance of mu across frames (per dim, averaged over dims) and the ratio of the two;
- decoder robustness: mel distance and STOI of reconstructions from mu + noise * latent_std * eps,
  for each noise level (latent_std: per-dim std of training latents, as in ``vocoder_vae.evaluate``).

Writes ``OUT/<kind>/result.json`` per kind, then ``OUT/results.json`` and ``OUT/table.md`` over every kind
measured in OUT with the same steps, clips and noise levels (so the two kinds can train as two processes:
``--kinds sigma`` and ``--kinds gaussian`` with the same ``--out``), and prints the markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from latentlm.config import load_config, to_dict
from latentlm.sigma_vae import draw_sigma
from vocoder_vae.audio import load_audio
from vocoder_vae.data import CropDataset, list_audio
from vocoder_vae.metrics import mel_distance, stoi
from vocoder_vae.model import AudioVAE
from vocoder_vae.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "recipes" / "vae" / "ablation_tiny.yaml"
KINDS = ("sigma", "gaussian")
NOISE_LEVELS = (0.0, 0.1, 0.25, 0.5, 1.0)
POSTERIOR_COLUMNS = [
    "model",
    "steps",
    "train min",
    "final train mel",
    "posterior var",
    "posterior var p10 / p90",
    "var(mu) across frames",
    "posterior var / var(mu)",
]
ROBUSTNESS_COLUMNS = ["model", "noise (x latent std)", "mel distance", "STOI", "mel distance increase"]


def spread(files: list[Path], n: int) -> list[Path]:
    """n files evenly spaced over the list (so several speakers/corpora of a manifest are covered)."""
    if n <= 0 or n >= len(files):
        return list(files)
    return [files[int(i * len(files) / n)] for i in range(n)]


def train_one(cfg: TrainConfig, kind: str, steps: int, files: list[Path], out: Path) -> tuple[AudioVAE, dict]:
    """Train one bottleneck kind for ``steps`` steps (resuming if OUT/<kind>/last.pt exists) and export it."""
    cfg = copy.deepcopy(cfg)
    cfg.model.bottleneck.kind = kind
    cfg.max_steps = steps
    cfg.out_dir = str(out / kind)
    trainer = Trainer(cfg)
    seg = int(cfg.data.segment_seconds * cfg.model.sample_rate) // cfg.model.hop * cfg.model.hop
    if seg <= 0:
        raise ValueError(f"data.segment_seconds={cfg.data.segment_seconds} is shorter than one hop")
    data = CropDataset(files, cfg.model.sample_rate, seg, seed=cfg.seed)
    start, t0 = trainer.step, time.monotonic()
    trainer.fit(data)
    seconds = time.monotonic() - t0
    with torch.no_grad():  # final reconstruction loss of the EMA model on a fixed batch of training crops
        m = trainer.ema_model()
        batch = data.batch(10**9, 8).to(trainer.device)
        mel = trainer.recon_loss(m.decode_frames(m.encode_frames(batch)).squeeze(1), batch.squeeze(1))
    trainer.export(out / kind / "release", data)
    info = {
        "kind": kind,
        "steps": trainer.step,
        "steps_this_run": trainer.step - start,
        "train_seconds_this_run": round(seconds, 1),
        "final_train_mel": float(mel["mel"]) if "mel" in mel else math.nan,
    }
    return AudioVAE.from_pretrained(out / kind / "release"), info


@torch.no_grad()
def posterior_stats(vae: AudioVAE, clips: list[torch.Tensor], generator: torch.Generator) -> dict:
    """Posterior variance vs the spread of the latent means, over held-out clips [L] at the model rate."""
    mus, variances = [], []
    for wav in clips:
        h = vae.encoder(vae.pad_to_hop(wav.to(vae.device))[None, None])  # [1, C, T]
        mu, logvar = vae.bottleneck._split(h, channel_dim=1)  # [1, D, T] each (logvar None for sigma)
        mus.append(mu[0].T)  # [T, D]
        if logvar is not None:
            variances.append(logvar[0].exp().flatten())
    mu_all = torch.cat(mus)  # [sum T, D]
    var_mu = float(mu_all.var(0).mean())
    if variances:
        v = torch.cat(variances)
    else:  # sigma kind: the noise is one sigma per example, shared by all elements
        s = vae.cfg.bottleneck.sigma_scale
        v = draw_sigma(100_000, s, generator, vae.device, torch.float32).pow(2)
    p10, p90 = torch.quantile(v.float(), torch.tensor([0.1, 0.9], device=v.device)).tolist()
    post = float(v.mean())
    return {
        "posterior_var": post,
        "posterior_var_p10": p10,
        "posterior_var_p90": p90,
        "var_mu": var_mu,
        "posterior_to_mu_var": post / max(var_mu, 1e-12),
        "frames": int(mu_all.shape[0]),
    }


@torch.no_grad()
def robustness(
    vae: AudioVAE, clips: list[torch.Tensor], noise_levels, generator: torch.Generator
) -> list[dict]:
    """Mean mel distance and STOI over clips of reconstructions from noisy latents, per noise level."""
    sr, rows = vae.sample_rate, []
    latents = [vae.encode(wav, sr) for wav in clips]  # [T, D] means
    for lvl in noise_levels:
        mels, stois = [], []
        for wav, z in zip(clips, latents):
            zn = z + lvl * vae.latent_std * torch.randn(z.shape, generator=generator, device=z.device)
            y = vae.decode(zn)[: len(wav)].cpu()
            mels.append(mel_distance(wav, y, sr))
            stois.append(stoi(wav, y, sr))
        rows.append(
            {"noise": float(lvl), "mel_distance": float(np.mean(mels)), "stoi": float(np.mean(stois))}
        )
    base = rows[0]["mel_distance"] if rows and rows[0]["noise"] == 0 else math.nan
    for r in rows:
        r["mel_increase"] = r["mel_distance"] - base
    return rows


def markdown_table(results: dict) -> str:
    """Two markdown tables (posterior variance; robustness to latent noise) from ``run_ablation``'s dict."""
    lines = ["| " + " | ".join(POSTERIOR_COLUMNS) + " |", "|" + "---|" * len(POSTERIOR_COLUMNS)]
    for kind, r in results["models"].items():
        p, t = r["posterior"], r["train"]
        cells = [
            kind,
            str(t["steps"]),
            f"{t['train_seconds_this_run'] / 60:.1f}",
            f"{t['final_train_mel']:.3f}",
            f"{p['posterior_var']:.4g}",
            f"{p['posterior_var_p10']:.3g} / {p['posterior_var_p90']:.3g}",
            f"{p['var_mu']:.4g}",
            f"{p['posterior_to_mu_var']:.4g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| " + " | ".join(ROBUSTNESS_COLUMNS) + " |", "|" + "---|" * len(ROBUSTNESS_COLUMNS)]
    for kind, r in results["models"].items():
        for row in r["robustness"]:
            cells = [
                kind,
                f"{row['noise']:g}",
                f"{row['mel_distance']:.3f}",
                f"{row['stoi']:.3f}",
                f"{row['mel_increase']:+.3f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(
    cfg: TrainConfig,
    steps: int,
    out: str | Path,
    train_files: list[Path],
    eval_files: list[Path],
    noise_levels=NOISE_LEVELS,
    kinds=KINDS,
    seed: int = 0,
) -> dict:
    """Train each kind at the same budget, measure both on ``eval_files``; returns (and writes) the results."""
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if not eval_files or not train_files:
        raise ValueError("need at least one training and one evaluation clip")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown bottleneck kind(s) {bad}; valid: {list(KINDS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clips = [load_audio(f, cfg.model.sample_rate) for f in eval_files]
    results: dict = {
        "steps": steps,
        "train_files": [str(f) for f in train_files],
        "eval_files": [str(f) for f in eval_files],
        "noise_levels": [float(x) for x in noise_levels],
        "config": to_dict(cfg),
        "torch_threads": torch.get_num_threads(),
        "models": {},
    }
    for kind in kinds:
        vae, info = train_one(cfg, kind, steps, train_files, out)
        g = torch.Generator(vae.device).manual_seed(seed)
        res = {
            "train": info,
            "posterior": posterior_stats(vae, clips, g),
            "robustness": robustness(vae, clips, noise_levels, g),
            "setup": {k: results[k] for k in ("steps", "eval_files", "noise_levels")},
        }
        (out / kind / "result.json").write_text(json.dumps(res, indent=2) + "\n")
    # every kind measured in OUT with the same setup, so `--kinds sigma` and `--kinds gaussian` can run as two
    # processes into one OUT and the last to finish writes the combined table
    for kind in KINDS:
        path = out / kind / "result.json"
        res = json.loads(path.read_text()) if path.is_file() else None
        if res is not None and res.pop("setup") == {
            k: results[k] for k in ("steps", "eval_files", "noise_levels")
        }:
            results["models"][kind] = res
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "table.md").write_text(markdown_table(results))
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Sigma-VAE vs gaussian VAE ablation at the same small budget.")
    ap.add_argument("overrides", nargs="*", help="dotted recipe overrides, e.g. model.channels=4")
    ap.add_argument("--steps", type=int, required=True, help="training steps per model")
    ap.add_argument("--out", required=True, help="output directory (one run folder per kind, results, table)")
    ap.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    ap.add_argument(
        "--train",
        required=True,
        help="training audio (manifests/dirs/files; real_speech/librispeech_train-clean-100)",
    )
    ap.add_argument("--train-files", type=int, default=32, help="first N training clips (0 = all)")
    ap.add_argument("--eval", required=True, help="held-out audio (manifests/dirs/files; real_speech/dev)")
    ap.add_argument("--eval-files", type=int, default=8, help="N clips evenly spread over --eval (0 = all)")
    ap.add_argument("--noise", default=",".join(f"{x:g}" for x in NOISE_LEVELS))
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(TrainConfig, args.recipe, [f"threads={args.threads}", *args.overrides])
    train_files = list_audio(args.train)
    if args.train_files:
        train_files = train_files[: args.train_files]
    eval_files = spread(list_audio(args.eval), args.eval_files)
    results = run_ablation(
        cfg,
        args.steps,
        args.out,
        train_files,
        eval_files,
        [float(x) for x in args.noise.split(",")],
        [k.strip() for k in args.kinds.split(",")],
    )
    print(markdown_table(results), flush=True)


if __name__ == "__main__":
    main()
