"""A TTS release from a training run, at any step: its EMA weights, the run's config and the audio VAE.

    python -m tts.export RUN_DIR RELEASE_DIR [--vae DIR] [--duration DIR]   # RUN_DIR: config.yaml + last.pt (or EMA parts)
    python -m tts.export RUN_DIR --ema-parts DIR [--part-mb 15]

The first form reads the EMA weights from RUN_DIR/last.pt (``weights_only``), or from RUN_DIR/ema-*.safetensors
where they travelled in parts, and writes what ``python -m tts.train`` exports at the end of a run (the release
records the step it came from). ``--vae`` defaults to the run's ``vae``. The second form writes only the EMA
weights, split into safetensors files of at most ``--part-mb`` MB, with config.yaml and step.json beside them:
a copy small enough for a machine that hands back only small files (a lent GPU), exported where the front end
(espeak-ng) lives.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from latentlm.checkpoint import load_state_dict_strict, load_training_state
from latentlm.config import load_config
from latentlm.model import LatentLM
from tts.duration_predictor import load_aligner, load_predictor
from tts.frontend import Frontend
from tts.model import TTS
from tts.store_files import duration_model_dir
from tts.train_config import TrainConfig
from vocoder_vae.model import AudioVAE


def release_meta(cfg: TrainConfig, step: int, **extra) -> dict:
    """What a release records of the run it came from."""
    meta = {"steps": step, "train_manifest": cfg.data.manifest, "vae_source": cfg.vae, **extra}
    if cfg.init_from:
        meta["init_from"] = cfg.init_from
    return meta


def read_run(run: str | Path) -> tuple[TrainConfig, dict[str, torch.Tensor], int]:
    """(config, EMA state dict, step) of a run folder."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run}: no config.yaml (is it a tts.train out_dir?)")
    cfg = load_config(TrainConfig, run / "config.yaml")
    parts = sorted(run.glob("ema-*.safetensors"))
    if parts:
        ema: dict[str, torch.Tensor] = {}
        for p in parts:
            ema.update(load_file(p))
        step = int(json.loads((run / "step.json").read_text())["step"])
        return cfg, ema, step
    state = load_training_state(run / "last.pt")
    return cfg, state["ema"], int(state["step"])


def export(run: str | Path, out: str | Path, vae: str | None = None, duration: str | None = None) -> Path:
    """``duration``: a duration predictor release (python -m tts.duration_train) to ship; the release then
    times its synthesis with it (tts.timing = "predictor"). Default: the run's own when it trained with one."""
    cfg, ema, step = read_run(run)
    lm = LatentLM(cfg.tts.model)
    load_state_dict_strict(lm, ema, source=str(run))
    vae_dir = vae or cfg.vae
    path = None
    if duration:
        cfg.tts = dataclasses.replace(cfg.tts, timing="predictor")  # validated: needs the interleaved layout
        path = Path(duration)
    elif cfg.tts.timing == "predictor":
        path = duration_model_dir(cfg.data)
        if not path.is_dir():
            raise FileNotFoundError(
                f"the run times synthesis with a duration predictor; {path} is missing: pass --duration DIR"
            )
    predictor, aligner = (load_predictor(path), load_aligner(path)) if path is not None else (None, None)
    tts = TTS(
        cfg.tts, lm.eval(), AudioVAE.from_pretrained(vae_dir), Frontend(cfg.tts.language), predictor, aligner
    )
    return tts.save_pretrained(out, meta=release_meta(cfg, step, vae_source=vae_dir, run=str(run)))


def write_ema_parts(run: str | Path, out: str | Path, part_mb: float = 15.0) -> list[Path]:
    """Split the run's EMA weights into safetensors files of at most ``part_mb`` MB (+ config.yaml, step.json)."""
    cfg, ema, step = read_run(run)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    limit = part_mb * 1e6
    parts: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(ema):
        v = ema[k].detach().cpu().contiguous()
        n = v.numel() * v.element_size()
        if n > limit:
            raise ValueError(f"tensor {k} alone is {n / 1e6:.1f} MB > --part-mb {part_mb}")
        if size + n > limit and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][k] = v
        size += n
    paths = []
    for i, p in enumerate(parts):
        save_file(p, out / f"ema-{i:02d}.safetensors")
        paths.append(out / f"ema-{i:02d}.safetensors")
    shutil.copy(Path(run) / "config.yaml", out / "config.yaml")
    (out / "step.json").write_text(json.dumps({"step": step}))
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Export a TTS release (or its EMA weights in parts) from a run.")
    ap.add_argument("run", help="a tts.train out_dir (config.yaml + last.pt, or EMA parts)")
    ap.add_argument("release", nargs="?", help="release directory to write")
    ap.add_argument("--vae", default=None, help="audio VAE release (default: the run's vae)")
    ap.add_argument(
        "--duration",
        default=None,
        help="ship this duration predictor (tts.duration_train) and time synthesis with it",
    )
    ap.add_argument("--ema-parts", default=None, help="write only the EMA weights, in parts, to this folder")
    ap.add_argument("--part-mb", type=float, default=15.0)
    a = ap.parse_args(argv)
    try:
        if a.ema_parts:
            paths = write_ema_parts(a.run, a.ema_parts, a.part_mb)
            print(f"EMA weights in {len(paths)} parts in {a.ema_parts}")
        elif a.release:
            print(f"exported release to {export(a.run, a.release, a.vae, a.duration)}")
        else:
            ap.error("give RELEASE_DIR or --ema-parts DIR")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
