"""Train the TTS LatentLM on pre-extracted VAE latents.

    python -m tts.train recipes/demo/tts_small.yaml data.manifest=M.jsonl data.latents=LATENTS/ [key=value ...]
    torchrun --nproc_per_node=8 -m tts.train recipes/librispeech/tts_base.yaml ...     (DDP; parallel=fsdp)

Data: a manifest (tts.manifests JSONL), a latent store (tts.data.extract_latents output, made with the VAE
named by ``vae``) and phoneme ids, cached in ``LATENTS/phonemes.json`` on first use. Items are prompt/target
pairs of one speaker (tts.data.PromptTargetDataset), batched by length (LengthBucketSampler, DDP-aware).

Each optimizer step sums ``optim.accum_steps`` micro-batches; AdamW, linear warmup then cosine decay to
``optim.min_lr_ratio``, gradient clipping, bf16 autocast on CUDA, EMA weights (exported). Every random draw of a
micro-batch (sigma noise, condition dropout, diffusion noise) comes from generators seeded by (seed, epoch, global
batch index), so N processes x 1 micro-batch == 1 process x N micro-batches, and resuming is exact.
``OUT_DIR/last.pt`` (atomic) is written every ``save_every`` steps, at the end and on SIGINT/SIGTERM, and
holds model, optimizer, scheduler, EMA, step, sampler epoch/position and RNG states; a rerun resumes from it.
Under ``parallel=fsdp`` it is gathered to the same full, single-process format and re-sharded on resume.
At the end (max_steps or time_limit_minutes) a release (EMA weights + VAE + front end) goes to ``export_dir``
(default OUT_DIR/release).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

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
from latentlm.model import LatentLM
from latentlm.sequence import Batch
from latentlm.training import ema_update_, fit_loop
from tts.data import LatentStore, LengthBucketSampler, PromptTargetDataset, validation_prompts
from tts.export import release_meta
from tts.frontend import Frontend
from tts.layout import MODALITY
from tts.manifests import Utterance, read_jsonl
from tts.model import TTS
from tts.patch import repeat_stats
from tts.real_voices import check_no_heldout, read_heldout
from tts.store_files import duration_model_dir, phoneme_cache
from tts.train_batches import Cursor, Job, LayoutView, MicroBatches, as_is, build_micro_batch
from tts.train_config import TrainConfig
from tts.train_losses import TrainLosses
from vocoder_vae.model import AudioVAE


def _full_cpu():
    """FSDP save options: full (unsharded) tensors, gathered onto rank 0's CPU (other ranks get nothing)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


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
        self.device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if want_cuda else "cpu")
        if want_cuda:
            torch.cuda.set_device(self.device)
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if want_cuda and cfg.bf16
            else contextlib.nullcontext()
        )
        torch.manual_seed(cfg.seed)  # same initial weights on every rank

        self.frontend = Frontend(cfg.tts.language)
        if len(self.frontend.vocab) != cfg.tts.model.vocab_size:
            raise ValueError(
                f"tts.model.vocab_size={cfg.tts.model.vocab_size} but the front end has "
                f"{len(self.frontend.vocab)} symbols: set tts.model.vocab_size={len(self.frontend.vocab)}"
            )
        self.vae = AudioVAE.from_pretrained(cfg.vae, device=self.device)
        self.lm = LatentLM(cfg.tts.model).to(self.device)
        mean, std = self.vae.latent_stats
        self.lm.set_latent_stats(MODALITY, *repeat_stats(mean, std, cfg.tts.patch))
        self.out = Path(cfg.out_dir)
        self.ckpt = self.out / "last.pt"
        if cfg.init_from and not (
            resume and self.ckpt.is_file()
        ):  # before sharding; a resumed run ignores it
            self._init_from(Path(cfg.init_from))
        self.duration, self.aligner = self._duration_model()
        TTS(
            cfg.tts, self.lm, self.vae, self.frontend, self.duration, self.aligner
        )  # validates dims / frame rate vs the VAE
        self.lm.train()
        self.losses = TrainLosses(self.lm, cfg.align, cfg.ctc_weight)
        self.net: nn.Module = self.losses  # wrapped below under DDP
        self.fsdp = self.world > 1 and cfg.parallel == "fsdp"
        if self.fsdp:  # each trunk block is one all-gather unit; the root holds embeddings + heads
            from torch.distributed.fsdp import fully_shard

            for block in self.lm.trunk.layers:
                fully_shard(block)
            fully_shard(self.net)
        elif self.world > 1:
            ids = [self.device.index] if want_cuda else None
            self.net = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        # after sharding: under FSDP the EMA holds the same DTensor shards as the parameters, so its
        # update is local; it is gathered only to save / export
        self.ema = {k: v.detach().clone() for k, v in self.lm.state_dict().items()}
        o = cfg.optim
        self.opt = torch.optim.AdamW(
            self.lm.parameters(), o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay
        )
        # the scheduler counts this run's updates; the schedule reads them from start_step on (0 unless a
        # run continues a release's schedule), which a resumed run takes from its checkpoint
        self.start_step = cfg.start_step
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._run_lr_factor)
        self.step, self.epoch, self.pos = self.start_step, 0, 0
        if resume and self.ckpt.is_file():
            # under FSDP every rank reads the whole file: keep it on the CPU, shards go to the device one by one
            where = "cpu" if self.fsdp else self.device
            self._load(load_training_state(self.ckpt, map_location=where))
        self.stop_requested = False
        self.bad_steps = 0  # consecutive skipped (non-finite) updates

    # ---- schedule / state ------------------------------------------------------------------------------
    def _init_from(self, directory: Path) -> None:
        src = TTS.from_pretrained(directory)
        if to_dict(src.cfg.model) != to_dict(self.cfg.tts.model):
            raise ValueError(
                f"init_from={directory}: its LatentLM config differs from this recipe's tts.model"
            )
        mean = f"latent_mean_{MODALITY}"
        if not torch.allclose(getattr(src.lm, mean), getattr(self.lm, mean).cpu(), atol=1e-5):
            raise ValueError(f"init_from={directory}: its latent statistics differ from vae={self.cfg.vae}'s")
        load_state_dict_strict(self.lm, src.lm.state_dict(), source=str(directory))

    def _run_lr_factor(self, k: int) -> float:
        """The lr factor of this run's k-th update: the schedule at start_step + k, warmed up again when the run
        continues a release's schedule (its optimizer moments start afresh)."""
        factor = self._lr_factor(self.start_step + k)
        if self.start_step:
            factor *= min(1.0, (k + 1) / max(1, self.cfg.optim.warmup_steps))
        return factor

    def _lr_factor(self, step: int) -> float:
        o = self.cfg.optim
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        frac = min(1.0, (step - o.warmup_steps) / max(1, self.cfg.max_steps - o.warmup_steps))
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))

    # Checkpoints have one format whatever the parallel mode: full (unsharded) tensors, the optimizer state
    # keyed by parameter index as ``torch.optim.Optimizer.state_dict`` writes it. Under FSDP, gathering is
    # collective (every rank calls state()) and the full state lands on rank 0 only (on the CPU), which
    # writes it; resuming gives every rank the whole file and each keeps its own shards.
    def _model_state(self) -> dict:
        if self.fsdp:
            from torch.distributed.checkpoint import state_dict as dsd

            sd = dsd.get_model_state_dict(self.net, options=_full_cpu())
            return {k.removeprefix("lm."): v for k, v in sd.items()}
        return self.lm.state_dict()

    def _full(self, v: torch.Tensor) -> torch.Tensor:
        return v.full_tensor() if hasattr(v, "full_tensor") else v

    def _ema_state(self) -> dict:
        if not self.fsdp:
            return {k: self._full(v) for k, v in self.ema.items()}
        out = {}
        for k, v in self.ema.items():
            full = self._full(v)  # collective: every rank gathers, rank 0 keeps it (on the CPU)
            if self.rank == 0:
                out[k] = full.cpu()
        return out

    def _param_names(self) -> list[str]:
        """FQNs (under self.net) in optimizer order: the optimizer was built from self.lm.parameters()."""
        return [f"lm.{n}" for n, _ in self.lm.named_parameters()]

    def _optim_state(self) -> dict:
        if not self.fsdp or not self.opt.state:  # nothing sharded to gather (no step taken yet)
            return self.opt.state_dict()
        from torch.distributed.checkpoint import state_dict as dsd

        osd = dsd.get_optimizer_state_dict(self.net, self.opt, options=_full_cpu())  # keyed by FQN
        if self.rank != 0:
            return {}
        index = {n: i for i, n in enumerate(self._param_names())}
        return {
            "state": {index[k]: v for k, v in osd["state"].items()},
            "param_groups": [{**g, "params": [index[k] for k in g["params"]]} for g in osd["param_groups"]],
        }

    def state(self) -> dict:
        return {
            "model": self._model_state(),
            "ema": self._ema_state(),
            "optimizer": self._optim_state(),
            "scheduler": self.sched.state_dict(),
            "step": self.step,
            "start_step": self.start_step,
            "epoch": self.epoch,
            "pos": self.pos,
            "rng": rng_state(),
            "config": to_dict(self.cfg),
        }

    def _load(self, s: dict) -> None:
        if self.fsdp:
            self._load_sharded(s)
        else:
            self.lm.load_state_dict(s["model"])
            self.ema = {k: v.to(self.device) for k, v in s["ema"].items()}
            self.opt.load_state_dict(s["optimizer"])
        self.start_step = int(s.get("start_step", 0))  # as the run began, whatever this rerun's config says
        self.sched.load_state_dict(s["scheduler"])
        self.step, self.epoch, self.pos = int(s["step"]), int(s["epoch"]), int(s["pos"])
        set_rng_state(s["rng"])

    def _load_sharded(self, s: dict) -> None:
        """Full checkpoint (any parallel mode) -> this rank's shards of model, EMA and optimizer state."""
        from torch.distributed.checkpoint import state_dict as dsd
        from torch.distributed.tensor import DTensor, distribute_tensor

        full = dsd.StateDictOptions(full_state_dict=True)  # every rank holds the whole file
        dsd.set_model_state_dict(self.net, {f"lm.{k}": v for k, v in s["model"].items()}, options=full)
        own = self.lm.state_dict()
        if set(own) != set(s["ema"]):
            raise ValueError(
                f"checkpoint EMA keys do not match the model: missing {sorted(set(own) - set(s['ema']))[:5]}, "
                f"unexpected {sorted(set(s['ema']) - set(own))[:5]}"
            )
        self.ema = {
            k: distribute_tensor(v.to(self.device), own[k].device_mesh, own[k].placements)
            if isinstance(own[k], DTensor)
            else v.to(self.device)
            for k, v in ((k, s["ema"][k]) for k in own)  # model order, the same on every rank
        }
        osd = s["optimizer"]
        if not osd["state"]:  # saved before the first step: hyperparameters only, nothing to shard
            self.opt.load_state_dict(osd)
            return
        names = self._param_names()
        osd = {
            "state": {names[i]: v for i, v in osd["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in osd["param_groups"]],
        }
        dsd.set_optimizer_state_dict(self.net, self.opt, osd, options=full)
        for group, saved in zip(self.opt.param_groups, s["optimizer"]["param_groups"]):
            group.update({k: v for k, v in saved.items() if k != "params"})  # as saved (betas stay a tuple)

    def save(self) -> None:
        state = self.state()  # collective under FSDP: every rank calls it
        if self.rank == 0:
            save_training_state(self.ckpt, state)

    def _update_ema(self) -> None:
        ema_update_(
            self.ema, self.lm.state_dict(), min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        )

    # ---- data ------------------------------------------------------------------------------------------
    def setup_data(self, rows: list[Utterance]) -> None:
        c = self.cfg.data
        store = LatentStore(c.latents, patch=self.cfg.tts.patch)  # items of tts.patch frames
        if store.frame_rate and abs(store.frame_rate - self.cfg.tts.frame_rate) > 1e-6:
            raise ValueError(f"latents at {store.frame_rate} Hz, model at {self.cfg.tts.frame_rate} Hz")
        rows = [r for r in rows if r.id in store and store.frames(r.id) <= c.max_item_frames]
        if not rows:
            raise ValueError(
                f"no manifest row has latents in {c.latents} (and <= {c.max_item_frames} frames)"
            )
        ph = phoneme_cache(rows, Path(c.latents), self.frontend, self.rank)
        durations = None
        if self.cfg.tts.interleave:
            path = Path(c.durations or Path(c.latents) / "durations.json")
            if not path.exists():
                raise ValueError(
                    f"tts.interleave needs phoneme durations at {path}: run python -m tts.durations --latents "
                    f"{c.latents} --manifest {c.manifest}"
                )
            durations = json.loads(path.read_text())
        self.ds = PromptTargetDataset(
            rows,
            store,
            ph,
            c.p_prefix,
            tuple(c.prefix_frames),
            c.max_prompt_frames,
            seed=self.cfg.seed,
            durations=durations,
        )
        too_long = [i for i, n in enumerate(self.ds.lengths) if n > c.max_frames]
        if too_long:
            raise ValueError(f"{len(too_long)} items exceed data.max_frames={c.max_frames}: raise it")
        self.sampler = LengthBucketSampler(
            self.ds.lengths, c.max_frames, self.rank, self.world, seed=self.cfg.seed, max_batch=c.max_batch
        )
        self.layout_view = LayoutView(self.lm)  # after a resume: the statistics the model now holds
        self.cursor = Cursor(self.epoch, self.pos)
        self._jobs_done = None
        if c.num_workers > 0:
            loader = torch.utils.data.DataLoader(
                MicroBatches(self.ds, self.layout_view, self.cfg),
                batch_size=None,
                sampler=self._jobs(Cursor(self.epoch, self.pos)),
                num_workers=c.num_workers,
                prefetch_factor=c.prefetch,
                collate_fn=as_is,
            )
            self._jobs_done = iter(loader)

    def _advance(self, cur: Cursor) -> Job:
        """The micro-batch at ``cur`` (this rank's indices, global index in the epoch); moves ``cur`` past it."""
        if cur.batches is None or cur.pos >= len(cur.batches):
            if cur.batches is not None:
                cur.epoch, cur.pos = cur.epoch + 1, 0
            self.sampler.set_epoch(cur.epoch)
            every = self.sampler._batches()
            cur.shared = len(every) < self.world  # tiny sets: every rank sees the same batches
            cur.batches = list(self.sampler)
            if not cur.batches:
                raise ValueError("the sampler produced no batches")
            if cur.pos >= len(cur.batches):  # resumed exactly at an epoch end
                return self._advance(cur)
        idx = cur.batches[cur.pos]
        gidx = cur.pos if cur.shared else cur.pos * self.world + self.rank
        cur.pos += 1
        key = (self.cfg.seed * 1_000_003 + cur.epoch) * 10_000_019 + gidx
        return Job(idx, cur.epoch, key, cur.pos)

    def _jobs(self, cur: Cursor) -> Iterator[Job]:
        """The data loader's sampler: an endless plan of micro-batches from its own cursor, which runs ahead of
        the training step by the prefetch depth."""
        while True:
            yield self._advance(cur)

    def next_micro_batch(self) -> tuple[Batch, Job, list, list | None]:
        """(batch on the CPU, its job, align splits, CTC spans); the trainer's (epoch, pos) follow what was
        consumed, not what the workers planned, so a checkpoint resumes exactly."""
        if self._jobs_done is not None:
            job, out = next(self._jobs_done)
        else:
            job = self._advance(self.cursor)
            out = build_micro_batch(self.ds, self.layout_view, self.cfg, job)
        self.epoch, self.pos = job.epoch, job.pos_after
        return (out[0], job, *out[1:])

    # ---- one step --------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        accum = cfg.optim.accum_steps
        self.opt.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for j in range(accum):
            batch, job, splits, spans = self.next_micro_batch()
            batch = batch.to(self.device)
            g_dev = torch.Generator(self.device).manual_seed(job.key + 1)
            sync = j == accum - 1 or not isinstance(self.net, nn.parallel.DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.net.no_sync():
                with self.autocast:
                    terms = self.net(batch, g_dev, splits, spans)
                loss = self.losses.total(terms)
                (loss / accum).backward()
            logged = {**terms, "total": loss}  # one host sync for all of them (a GPU waits at each)
            values = torch.stack([v.detach().float() for v in logged.values()]).tolist()
            for k, v in zip(logged, values):
                sums[k] = sums.get(k, 0.0) + v / accum
        gnorm = float(self._full(torch.nn.utils.clip_grad_norm_(self.lm.parameters(), cfg.optim.grad_clip)))
        # A non-finite loss or gradient (seen once on an H200 under bf16 after ~1,500 steps) would poison the
        # weights and the EMA for good: skip that update instead (the norm is the same on every rank, so they
        # agree), and stop with a clear message when it keeps happening.
        skipped = not math.isfinite(gnorm)
        if skipped:
            self.opt.zero_grad(set_to_none=True)
            self.bad_steps += 1
            if self.bad_steps >= cfg.max_bad_steps:
                raise RuntimeError(
                    f"step {self.step}: {self.bad_steps} updates in a row had a non-finite loss or gradient "
                    f"({sums}); the weights are still finite: lower optim.lr, try bf16=false, or check the data"
                )
        else:
            self.opt.step()
            self._update_ema()
            self.bad_steps = 0
        self.sched.step()
        self.step += 1
        if self.world > 1:
            vec = torch.tensor(list(sums.values()), device=self.device)
            dist.all_reduce(vec)
            sums = dict(zip(sums, (vec / self.world).tolist()))
        lr = self.sched.get_last_lr()[0]
        return {**sums, "grad_norm": gnorm, "lr": lr, "skipped": float(skipped)}

    # ---- loop ------------------------------------------------------------------------------------------
    def ema_tts(self) -> TTS:
        lm = LatentLM(self.cfg.tts.model).to(self.device)
        lm.load_state_dict({k: self._full(v) for k, v in self.ema.items()})
        return TTS(self.cfg.tts, lm.eval(), self.vae, self.frontend, self.duration, self.aligner)

    def _duration_model(self) -> tuple:
        """(duration predictor, its aligner or None) the exports ship (tts.timing "predictor"), else Nones."""
        if self.cfg.tts.timing != "predictor":
            return None, None
        c = self.cfg.data
        path = duration_model_dir(c)
        if not (path / "model.safetensors").is_file():
            raise ValueError(
                f'tts.timing "predictor" needs a duration predictor at {path}: run python -m tts.duration_train '
                f"--latents {c.latents} --manifest {c.manifest} --out {path} (or set data.duration_model)"
            )
        from tts.duration_predictor import load_aligner, load_predictor

        return load_predictor(path, device=self.device), load_aligner(path)

    @torch.no_grad()
    def _write_samples(self, writer, valid: list[tuple]) -> None:
        tts = self.ema_tts()
        for i, (text, prompt, prompt_text) in enumerate(valid):
            res = tts.synthesize(text, prompt, prompt_text=prompt_text, seed=i, max_seconds=8)
            writer.add_audio(
                f"sample/{i}", torch.from_numpy(res.audio).clamp(-1, 1), self.step, tts.sample_rate
            )
            writer.add_scalar(f"sample/{i}_seconds", res.duration, self.step)

    def fit(self, valid: list[tuple] | None = None) -> None:
        """Train until max_steps / time limit / SIGINT-SIGTERM (then save; rerun to resume)."""
        fit_loop(
            self,
            self.cfg,
            self.train_step,
            desc="tts",
            postfix=lambda logs: {"lm": f"{logs['lm']:.3f}", "diff": f"{logs[f'diff_{MODALITY}']:.3f}"},
            sample_fn=(lambda writer: self._write_samples(writer, valid)) if valid else None,
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the TTS LatentLM on VAE latents.")
    ap.add_argument("recipe", help="YAML recipe (TrainConfig)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.manifest=M.jsonl max_steps=100")
    ap.add_argument(
        "--export", default=None, help="release directory (default: export_dir or OUT_DIR/release)"
    )
    ap.add_argument("--no-resume", action="store_true", help="ignore an existing OUT_DIR/last.pt")
    ap.add_argument(
        "--no-export", action="store_true", help="train and save only (export later: python -m tts.export)"
    )
    args = ap.parse_args(argv)
    cfg = load_config(TrainConfig, args.recipe, args.overrides)
    if not cfg.data.manifest or not cfg.data.latents:
        raise SystemExit("error: set data.manifest=<JSONL> and data.latents=<latent store dir>")
    rows = read_jsonl(cfg.data.manifest)
    if cfg.data.heldout_speakers:  # before any work
        check_no_heldout(rows, read_heldout(cfg.data.heldout_speakers))
    trainer = Trainer(cfg, resume=not args.no_resume)
    trainer.setup_data(rows)
    valid = []
    if trainer.rank == 0 and cfg.sample_every and cfg.data.num_samples and cfg.parallel != "fsdp":
        vrows = read_jsonl(cfg.data.valid_manifest) if cfg.data.valid_manifest else rows
        valid = validation_prompts(vrows, cfg.data.num_samples)
    if trainer.rank == 0:
        n = sum(p.numel() for p in trainer.lm.parameters())
        begun = trainer.step > trainer.start_step  # resumed from last.pt, not a new run
        where = f"{'resuming' if begun else 'starting'} at step {trainer.step}"
        if trainer.start_step:
            where += f" (the schedule of init_from continued from step {trainer.start_step})"
        print(
            f"tts: {n / 1e6:.2f}M params, {len(trainer.ds)} items, {len(trainer.sampler)} batches/epoch/rank, "
            f"world {trainer.world}, device {trainer.device}, {where}",
            flush=True,
        )
    trainer.fit(valid)
    if trainer.stop_requested:
        if trainer.rank == 0:
            print(
                f"interrupted at step {trainer.step}: state saved to {trainer.ckpt}; rerun to resume",
                flush=True,
            )
    elif not args.no_export:
        out = args.export or cfg.export_dir or str(trainer.out / "release")
        tts = trainer.ema_tts()  # collective under FSDP: every rank builds it, rank 0 writes
        if trainer.rank == 0:
            meta = release_meta(cfg, trainer.step)
            print(f"exported release to {tts.save_pretrained(out, meta=meta)}", flush=True)
    if dist.is_initialized():
        # FSDP2 modules hold their last collectives: free them while the process group lives, or gloo can
        # abort at interpreter exit ("terminate called without an active exception", ~1 run in 14 on CPU)
        del trainer
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
