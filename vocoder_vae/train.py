"""Train the audio VAE:  python -m vocoder_vae.train RECIPE.yaml key=value ... [--export DIR]

Single process, or ``torchrun --nproc_per_node=N -m vocoder_vae.train ...`` (DDP). Resumes from
``out_dir/last.pt`` when it exists (model, discriminators, EMA, optimizers, schedulers, step, RNG states; the
data position is the step, see data.py). A checkpoint is written atomically every ``save_every`` steps, at the
end, and on SIGINT/SIGTERM. At the end a release (EMA weights + config + latent stats) goes to
``out_dir/release`` (or ``--export DIR``; ``--export`` with ``max_steps`` already reached just exports).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from latentlm.checkpoint import (
    load_state_dict_strict,
    load_training_state,
    rng_state,
    save_training_state,
    set_rng_state,
)
from latentlm.config import load_config, to_dict
from latentlm.training import ema_update_, fit_loop
from vocoder_vae import losses as L
from vocoder_vae.data import CropDataset, DataConfig, GTAPairs, list_audio
from vocoder_vae.discriminators import DiscriminatorConfig, Discriminators
from vocoder_vae.model import AudioVAE, VAEConfig


@dataclass
class OptimConfig:
    lr: float = 3e-4
    lr_disc: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    warmup_steps: int = 200
    decay: float = 0.999996  # per-step exponential lr decay after warmup
    grad_clip: float = 1000.0


@dataclass
class TrainConfig:
    model: VAEConfig = field(default_factory=VAEConfig)
    loss: L.LossConfig = field(default_factory=L.LossConfig)
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    max_steps: int = 100_000
    time_limit_minutes: float = 0.0  # 0 = no limit; stops, saves and exports when reached
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = False  # autocast to bfloat16 on CUDA
    ema_decay: float = 0.999
    out_dir: str = "runs/vae"
    save_every: int = 1000
    log_every: int = 50
    sample_every: int = 1000
    threads: int = 0  # torch CPU threads (0 = leave torch's default)
    progress: bool = True
    # Fine-tuning: a fresh run (no OUT/last.pt) starts from this release's weights (same model config), and
    # freeze_encoder keeps the encoder (so the latent space, and every LM trained on it, stays valid) while
    # the decoder = vocoder trains on.
    init_from: str = ""
    freeze_encoder: bool = False


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = True):
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        if want_cuda and not torch.cuda.is_available():
            raise ValueError("device=cuda requested but CUDA is not available")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if want_cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if want_cuda else "cpu")
        if want_cuda:
            torch.cuda.set_device(self.device)
        torch.manual_seed(cfg.seed + self.rank)

        self.model = AudioVAE(cfg.model).to(self.device)
        self.out = Path(cfg.out_dir)
        self.ckpt = self.out / "last.pt"
        if cfg.init_from and not (resume and self.ckpt.is_file()):
            self._init_from(Path(cfg.init_from))
        if cfg.freeze_encoder:
            self.model.encoder.requires_grad_(False)
        if cfg.data.gta:
            if not cfg.freeze_encoder:
                raise ValueError("data.gta (decoder fine-tuning on an LM's latents) needs freeze_encoder=true")
            if self.world > 1:
                raise ValueError("data.gta runs in one process (no DDP)")
            if not 0.0 < cfg.data.gta_fraction <= 1.0:
                raise ValueError(f"data.gta_fraction must be in (0, 1], got {cfg.data.gta_fraction}")
        self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.use_adv = cfg.loss.weight("adv") > 0 or cfg.loss.weight("feat") > 0
        self.disc = Discriminators(cfg.disc).to(self.device) if self.use_adv else None
        self.recon_loss = L.ReconstructionLoss(cfg.loss, cfg.model.sample_rate).to(self.device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt_g = torch.optim.AdamW(trainable, cfg.optim.lr, betas=tuple(cfg.optim.betas))
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, self._lr_factor)
        self.opt_d = self.sched_d = None
        if self.disc is not None:
            self.opt_d = torch.optim.AdamW(
                self.disc.parameters(), cfg.optim.lr_disc, betas=tuple(cfg.optim.betas)
            )
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, self._lr_factor)
        self.noise_gen = torch.Generator(self.device).manual_seed(cfg.seed * 7 + 1 + self.rank)
        self.g_model: nn.Module = self.model
        self.d_model: nn.Module | None = self.disc
        if self.world > 1:
            ids = [self.device.index] if want_cuda else None
            self.g_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
            if self.disc is not None:
                self.d_model = nn.parallel.DistributedDataParallel(self.disc, device_ids=ids)
        self.step = 0
        if resume and self.ckpt.is_file():
            self._load(load_training_state(self.ckpt, map_location=self.device))
        self.stop_requested = False

    def _init_from(self, directory: Path) -> None:
        src = AudioVAE.from_pretrained(directory)
        if to_dict(src.cfg) != to_dict(self.cfg.model):
            raise ValueError(
                f"init_from={directory}: its model config differs from this recipe's model section"
            )
        load_state_dict_strict(self.model, src.state_dict(), source=str(directory))

    # ---- schedule / state ------------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        o = self.cfg.optim
        warm = min(1.0, (step + 1) / max(1, o.warmup_steps))
        return warm * o.decay ** max(0, step - o.warmup_steps)

    def state(self) -> dict:
        s = {
            "model": self.model.state_dict(),
            "ema": self.ema,
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "step": self.step,
            "data_position": self.step,
            "rng": rng_state(),
            "noise_gen": self.noise_gen.get_state(),
            "config": to_dict(self.cfg),
        }
        if self.disc is not None:
            s.update(
                disc=self.disc.state_dict(), opt_d=self.opt_d.state_dict(), sched_d=self.sched_d.state_dict()
            )
        return s

    def _load(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.ema = {k: v.to(self.device) for k, v in s["ema"].items()}
        self.opt_g.load_state_dict(s["opt_g"])
        self.sched_g.load_state_dict(s["sched_g"])
        if self.disc is not None and "disc" not in s:
            # Two-stage training: a reconstruction-only run continued with adversarial terms switched on.
            if self.rank == 0:
                print(f"{self.ckpt}: no discriminator state; starting fresh discriminators", flush=True)
        elif self.disc is not None:
            self.disc.load_state_dict(s["disc"])
            self.opt_d.load_state_dict(s["opt_d"])
            self.sched_d.load_state_dict(s["sched_d"])
        self.step = int(s["step"])
        set_rng_state(s["rng"])
        self.noise_gen.set_state(s["noise_gen"].cpu())

    def save(self) -> None:
        if self.rank == 0:
            save_training_state(self.ckpt, self.state())

    def _update_ema(self) -> None:
        # warm-up: early in training the average must not be dominated by the random initialisation
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        ema_update_(self.ema, self.model.state_dict(), decay)

    # ---- one step --------------------------------------------------------------------------------------
    def train_step(self, wav: torch.Tensor, gta: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        """One update on ``wav`` [B, 1, L] reconstructed through the encoder, plus ``gta`` = (audio [B', 1, L'],
        latents [B', D, L / hop]) decoded from the given latents (data.gta)."""
        cfg = self.cfg
        amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and self.device.type == "cuda")
        with amp:
            recon, bout = self.g_model(wav, generator=self.noise_gen)
            if gta is not None:
                recon = torch.cat([recon, self.model.decode_frames(gta[1])])
                wav = torch.cat([wav, gta[0]])
        recon = recon.float()
        losses = self.recon_loss(recon.squeeze(1), wav.squeeze(1))
        losses.update({k: v for k, v in bout.losses.items() if cfg.loss.weight(k) > 0})
        logs: dict[str, float] = {}
        adv_on = self.disc is not None and self.step >= cfg.loss.adv_start_step
        if adv_on:
            with amp:
                real_s, _ = self.d_model(wav)
                fake_s, _ = self.d_model(recon.detach())
                d_loss = L.discriminator_loss(real_s, fake_s, cfg.loss.gan)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.optim.grad_clip)
            self.opt_d.step()
            logs["disc"] = d_loss.item()
            with amp:
                fake_s, fake_f = self.d_model(recon)
                with torch.no_grad():
                    _, real_f = self.d_model(wav)
                if cfg.loss.weight("adv") > 0:
                    losses["adv"] = L.generator_adv_loss(fake_s, cfg.loss.gan).float()
                if cfg.loss.weight("feat") > 0:
                    losses["feat"] = L.feature_matching_loss(real_f, fake_f).float()
        loss = L.total(losses, cfg.loss)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.opt_g.step()
        self.sched_g.step()
        if adv_on:
            self.sched_d.step()  # the discriminator's warmup starts with adversarial training
        self._update_ema()
        self.step += 1
        logs.update({k: v.item() for k, v in losses.items()})
        logs.update(total=loss.item(), grad_norm=float(gnorm), lr=self.sched_g.get_last_lr()[0])
        return logs

    # ---- loop ------------------------------------------------------------------------------------------
    def fit(self, data: CropDataset, valid: list[torch.Tensor] | None = None, gta: GTAPairs | None = None) -> None:
        """Train until max_steps / time limit / SIGINT-SIGTERM (then save; rerun to resume). ``gta``: pairs that
        fill ``data.gta_fraction`` of every batch's rows (at least one row of each kind)."""
        self.model.train()

        bs = self.cfg.data.batch_size
        n_gta = 0 if gta is None else max(1, min(bs - 1, round(bs * self.cfg.data.gta_fraction)))

        def step() -> dict[str, float]:
            wav = data.batch(self.step, bs - n_gta).to(self.device, non_blocking=True)
            if not n_gta:
                return self.train_step(wav)
            pair = tuple(t.to(self.device) for t in gta.batch(self.step, n_gta))
            return self.train_step(wav, pair)

        fit_loop(
            self,
            self.cfg,
            step,
            desc="vae",
            postfix=lambda logs: {"mel": f"{logs.get('mel', float('nan')):.3f}"},
            sample_fn=(lambda writer: self._write_samples(writer, valid)) if valid else None,
        )

    def ema_model(self) -> AudioVAE:
        m = AudioVAE(self.cfg.model).to(self.device)
        m.load_state_dict(self.ema)
        return m.eval()

    @torch.no_grad()
    def _write_samples(self, writer, valid: list[torch.Tensor]) -> None:
        m = self.ema_model()
        sr = self.cfg.model.sample_rate
        for i, clip in enumerate(valid):
            y = m.decode_frames(m.encode_frames(clip[None, None].to(self.device)))[0, 0]
            writer.add_audio(f"recon/{i}", y.clamp(-1, 1).cpu(), self.step, sample_rate=sr)
            if self.step == self.cfg.sample_every:
                writer.add_audio(f"orig/{i}", clip, self.step, sample_rate=sr)

    @torch.no_grad()
    def export(self, directory: Path, data: CropDataset) -> Path:
        """Release with EMA weights and per-dim latent stats over up to ``stats_files`` training clips; a decoder
        fine-tune (init_from + freeze_encoder) keeps the stats of the release it started from, so latents every
        LM of that release normalised stay the same numbers whatever data the decoder saw."""
        m = self.ema_model()
        meta = {"steps": self.step, "train": self.cfg.data.train}
        if self.cfg.init_from and self.cfg.freeze_encoder:  # the EMA holds the start release's stats
            meta["stats"] = "kept from init_from (frozen encoder)"
        else:
            zs = [
                m.encode_frames(c[None, None].to(self.device))[0].T  # [T, D]
                for c in data.clips[: self.cfg.data.stats_files]
            ]
            z = torch.cat(zs)
            m.set_latent_stats(z.mean(0), z.std(0))
            meta["stats_frames"] = int(z.shape[0])
        if self.cfg.init_from:
            meta.update(init_from=self.cfg.init_from, freeze_encoder=self.cfg.freeze_encoder)
        return m.save_pretrained(directory, meta=meta)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the audio sigma-VAE (tokenizer + vocoder).")
    ap.add_argument("recipe", help="YAML recipe (TrainConfig)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.train=DIR max_steps=1000")
    ap.add_argument("--export", default=None, help="release directory (default: OUT_DIR/release)")
    ap.add_argument("--no-resume", action="store_true", help="ignore an existing OUT_DIR/last.pt")
    args = ap.parse_args(argv)
    cfg = load_config(TrainConfig, args.recipe, args.overrides)
    if not cfg.data.train:
        sys.exit("error: set data.train=<manifest, directory or file> (in the recipe or as an override)")
    trainer = Trainer(cfg, resume=not args.no_resume)
    files = list_audio(cfg.data.train)
    if cfg.data.max_files:
        files = files[: cfg.data.max_files]
    seg = int(cfg.data.segment_seconds * cfg.model.sample_rate) // cfg.model.hop * cfg.model.hop
    if seg <= 0:
        raise ValueError(f"data.segment_seconds={cfg.data.segment_seconds} is shorter than one hop")
    data = CropDataset(files, cfg.model.sample_rate, seg, seed=cfg.seed, rank=trainer.rank)
    valid_files = list_audio(cfg.data.valid) if cfg.data.valid else files
    valid = [
        c[: 5 * cfg.model.sample_rate]
        for c in CropDataset(valid_files[: cfg.data.num_samples], cfg.model.sample_rate, seg).clips
    ]
    if trainer.rank == 0:
        n = sum(p.numel() for p in trainer.model.parameters())
        print(
            f"vae: {n / 1e6:.2f}M params, hop {cfg.model.hop} ({cfg.model.frame_rate:g} Hz x "
            f"{cfg.model.bottleneck.latent_dim}), {len(files)} files / {data.num_samples / cfg.model.sample_rate / 60:.1f} min, "
            f"device {trainer.device}, resuming at step {trainer.step}",
            flush=True,
        )
    gta = None
    if cfg.data.gta:
        gta = GTAPairs(cfg.data.gta, cfg.model.hop, seg // cfg.model.hop, seed=cfg.seed, rank=trainer.rank)
        print(f"vae: {len(gta.z)} GTA utterances from {cfg.data.gta}", flush=True)
    trainer.fit(data, valid, gta)
    if trainer.stop_requested:
        if trainer.rank == 0:
            print(
                f"interrupted at step {trainer.step}: state saved to {trainer.ckpt}; rerun to resume",
                flush=True,
            )
        return
    if trainer.rank == 0:
        out = trainer.export(Path(args.export) if args.export else trainer.out / "release", data)
        print(f"step {trainer.step}: release written to {out}", flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
