"""TTS training data: latent extraction to safetensors shards, prompt/target pairs, length buckets, collation,
the fixed validation prompts of a run's audio samples.

Dimension legend: B batch, T latent frames, N phoneme tokens, D latent dim.

    extract_latents(rows, encoder, "latents/", rank=r, world_size=w)   # resumable, one index per rank
    store = LatentStore("latents/")                                    # merges the rank indexes
    ds = PromptTargetDataset(rows, store, phoneme_ids, seed=0)
    sampler = LengthBucketSampler(ds.lengths, max_frames=4000, rank=r, world_size=w, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate)

The encoder is anything with ``encode(wav, sample_rate) -> Tensor[T, D]`` (mean latents) and ``frame_rate``:
vocoder_vae.model.AudioVAE in training, a tiny deterministic fake in tests.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tts.manifests import Utterance
from tts.patch import to_items
from tts.script import check_durations, item_durations, target_script


class LatentEncoder(Protocol):
    frame_rate: float

    def encode(self, wav: torch.Tensor | np.ndarray, sample_rate: int) -> torch.Tensor: ...  # [T, D]


def load_audio(u: Utterance) -> tuple[np.ndarray, int]:
    """Mono float32 samples of one manifest row (honours offset/duration for segments of long recordings)."""
    info = sf.info(u.audio)
    start = int(round(u.offset * info.samplerate))
    frames = int(round(u.duration * info.samplerate)) if u.offset else -1
    wav, sr = sf.read(u.audio, start=start, frames=frames, dtype="float32", always_2d=True)
    return wav.mean(axis=1), sr


# --- extraction


def _index_path(out: Path, rank: int) -> Path:
    return out / f"index-r{rank:03d}.json"


def _atomic_json(obj, path: Path) -> None:
    # A per-process temp name: several ranks may write the same merged index at once (last writer wins; the
    # contents are identical), and a shared temp name would let one rank move the other's file away.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


@torch.no_grad()
def extract_latents(
    rows: Sequence[Utterance],
    encoder: LatentEncoder,
    out_dir: str | Path,
    shard_size: int = 256,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> int:
    """Encode this rank's share of rows (sorted by id, then every world_size-th) into safetensors shards
    ``shard-r{rank}-{k}.safetensors`` (one tensor [T, D] per utterance id) and an index ``index-r{rank}.json``
    {id: {"shard", "frames"}} updated after each shard, so a rerun skips finished utterances.
    Rows whose audio cannot be read or encoded (corrupt, silent, missing) are skipped with a warning and listed
    in ``failures-r{rank}.json``; the others go on. Returns the number of utterances encoded by this call."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("manifest rows have duplicate ids")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    idx_path = _index_path(out, rank)
    index = json.loads(idx_path.read_text()) if idx_path.exists() else {}
    mine = sorted(rows, key=lambda r: r.id)[rank::world_size]
    todo = [r for r in mine if r.id not in index]
    n_shards = len({v["shard"] for v in index.values()})
    it = todo
    if progress:
        from tqdm import tqdm

        it = tqdm(todo, desc=f"latents r{rank}", unit="utt")
    buf: dict[str, torch.Tensor] = {}
    done = 0

    def flush() -> None:
        nonlocal n_shards, buf
        if not buf:
            return
        name = f"shard-r{rank:03d}-{n_shards:05d}.safetensors"
        tmp = out / (name + ".tmp")
        save_file(buf, str(tmp), metadata={"frame_rate": str(encoder.frame_rate)})
        os.replace(tmp, out / name)
        for k, v in buf.items():
            index[k] = {"shard": name, "frames": int(v.shape[0])}
        _atomic_json(index, idx_path)
        n_shards, buf = n_shards + 1, {}

    failures: dict[str, str] = {}
    for r in it:
        try:
            wav, sr = load_audio(r)
            z = encoder.encode(torch.from_numpy(wav), sr)
        except (ValueError, RuntimeError, OSError) as e:  # corrupt / silent / unreadable audio: skip, report
            failures[r.id] = f"{r.audio}: {e}"
            warnings.warn(f"latents: skipping {r.id}: {failures[r.id]}", stacklevel=2)
            continue
        if z.ndim != 2:
            raise ValueError(f"encoder returned shape {tuple(z.shape)} for {r.id}; expected [T, D]")
        buf[r.id] = z.detach().to("cpu", torch.float32).contiguous()
        done += 1
        if len(buf) >= shard_size:
            flush()
    flush()
    # This call's unreadable rows (a rerun retries them): out/failures-r{rank}.json, {id: reason}.
    _atomic_json(failures, out / f"failures-r{rank:03d}.json")
    meta = {"frame_rate": float(encoder.frame_rate), "world_size": world_size}
    _atomic_json(meta, out / "meta.json")
    return done


class LatentStore:
    """Read latents by utterance id from the shards of every rank (merged index.json written on first use).
    ``patch`` > 1 reads them in items of that many frames (tts/patch.py): ``get`` -> [T // patch, patch * D],
    ``frames`` -> T // patch."""

    def __init__(self, root: str | Path, patch: int = 1):
        if patch < 1:
            raise ValueError(f"patch must be >= 1, got {patch}")
        self.root, self.patch = Path(root), patch
        parts = sorted(self.root.glob("index-r*.json"))
        if not parts:
            raise ValueError(f"no latent index under {self.root}; run extract_latents first")
        self.index: dict[str, dict] = {}
        for p in parts:
            self.index.update(json.loads(p.read_text()))
        _atomic_json(self.index, self.root / "index.json")
        meta = json.loads((self.root / "meta.json").read_text()) if (self.root / "meta.json").exists() else {}
        self.frame_rate = meta.get("frame_rate")
        self._open: dict[str, object] = {}

    def __contains__(self, uid: str) -> bool:
        return uid in self.index

    def __len__(self) -> int:
        return len(self.index)

    def frames(self, uid: str) -> int:
        return self.index[uid]["frames"] // self.patch

    def get(self, uid: str) -> torch.Tensor:
        """[T, D] float32 latents of one utterance ([T // patch, patch * D] items with ``patch`` > 1)."""
        if uid not in self.index:
            raise KeyError(f"no latents for {uid!r} in {self.root}")
        shard = self.index[uid]["shard"]
        if shard not in self._open:
            self._open[shard] = safe_open(str(self.root / shard), framework="pt")
        return to_items(self._open[shard].get_tensor(uid), self.patch)

    def __getstate__(self) -> dict:  # open handles stay in their process
        return {**self.__dict__, "_open": {}}


# --- pairs


class PromptTargetDataset(torch.utils.data.Dataset):
    """Items pair a prompt and a target of the same speaker. With probability ``p_prefix`` (or when the
    speaker has one utterance) the prompt is a prefix of the target utterance (3 s continuation: phonemes are
    the whole text, target latents the rest); otherwise another utterance of the same speaker (cross-sentence:
    phonemes are prompt text + target text). The choice is deterministic in (seed, epoch, index).
    ``durations`` ({id: frames per phoneme symbol}, tts.durations) adds each item's target ``script``
    (tts/script.py: the symbols the target says and their items) for the interleaved layout; rows without
    durations are left out."""

    def __init__(
        self,
        rows: Sequence[Utterance],
        store: LatentStore,
        phoneme_ids: dict[str, list[int]],
        p_prefix: float = 0.3,
        prefix_frames: tuple[int, int] = (20, 60),
        max_prompt_frames: int = 150,
        seed: int = 0,
        durations: dict[str, list[int]] | None = None,
    ):
        self.rows = [r for r in rows if r.id in store and r.id in phoneme_ids]
        if durations is not None:
            self.rows = [r for r in self.rows if r.id in durations]
            for r in self.rows:  # durations count VAE frames: the store's index holds those
                check_durations(r.id, phoneme_ids[r.id], durations[r.id], store.index[r.id]["frames"])
            self.durations = {r.id: item_durations(durations[r.id], store.patch) for r in self.rows}
        else:
            self.durations = None
        if not self.rows:
            raise ValueError("no manifest row has latents and phoneme ids (and durations, when given)")
        self.store, self.phonemes = store, phoneme_ids
        self.p_prefix, self.prefix_frames, self.max_prompt_frames = p_prefix, prefix_frames, max_prompt_frames
        self.seed, self.epoch = seed, 0
        self.by_speaker: dict[str, list[int]] = {}
        for i, r in enumerate(self.rows):
            self.by_speaker.setdefault(r.speaker, []).append(i)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def lengths(self) -> list[int]:
        """Per item: target frames + phoneme tokens, twice with durations (the interleaved layout repeats them
        inside the audio): what the bucket sampler balances."""
        k = 1 if self.durations is None else 2
        return [self.store.frames(r.id) + k * len(self.phonemes[r.id]) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        rng = random.Random(f"{self.seed}-{self.epoch}-{i}")  # str seeds are stable across processes
        r = self.rows[i]
        z = self.store.get(r.id)  # [T, D]
        others = [j for j in self.by_speaker[r.speaker] if j != i]
        lo, hi = self.prefix_frames
        if (not others or rng.random() < self.p_prefix) and z.shape[0] > lo + 1:
            k = rng.randint(lo, min(hi, z.shape[0] - 1))  # prompt = first k frames
            return self._scripted(
                r.id,
                k,
                {
                    "id": r.id,
                    "prompt_id": r.id,
                    "mode": "prefix",
                    "phonemes": torch.tensor(self.phonemes[r.id]),
                    "prompt_latents": z[:k],
                    "target_latents": z[k:],
                },
            )
        if not others:  # too short for a prefix and nobody else: the target is its own prompt-free item
            return self._scripted(
                r.id,
                0,
                {
                    "id": r.id,
                    "prompt_id": None,
                    "mode": "none",
                    "phonemes": torch.tensor(self.phonemes[r.id]),
                    "prompt_latents": z[:0],
                    "target_latents": z,
                },
            )
        # Prompts that fit whole: a cut prompt would pair its full transcript with part of its audio.
        fitting = [j for j in others if self.store.frames(self.rows[j].id) <= self.max_prompt_frames]
        p = self.rows[rng.choice(fitting or others)]
        zp = self.store.get(p.id)[: self.max_prompt_frames]
        ph = self.phonemes[p.id] + [_SPACE] + self.phonemes[r.id]
        return self._scripted(
            r.id,
            0,
            {
                "id": r.id,
                "prompt_id": p.id,
                "mode": "speaker",
                "phonemes": torch.tensor(ph),
                "prompt_latents": zp,
                "target_latents": z,
                # text/audio anchor for the alignment loss: prompt text (+ joining space) <-> prompt audio
                "align_split": (len(self.phonemes[p.id]) + 1, zp.shape[0]) if fitting else None,
            },
        )

    def _scripted(self, uid: str, start: int, item: dict) -> dict:
        """Add the target's script (the utterance's symbols from item ``start`` on) when durations are known."""
        if self.durations is not None:
            item["script"] = target_script(self.phonemes[uid], self.durations[uid], start)
        return item


_SPACE = 1  # id of " " in the front end's vocabulary (tts.frontend.Vocab: symbols[1] == " ")


def collate(items: list[dict]) -> dict:
    """Pad to the longest item. Masks are True on real positions.
    phonemes [B, N] long, phoneme_mask [B, N]; prompt_latents [B, Tp, D], prompt_mask [B, Tp];
    target_latents [B, Tt, D], target_mask [B, Tt]."""
    B = len(items)
    D = items[0]["target_latents"].shape[1]
    out: dict = {
        "ids": [x["id"] for x in items],
        "prompt_ids": [x["prompt_id"] for x in items],
        "mode": [x["mode"] for x in items],
    }
    N = max(len(x["phonemes"]) for x in items)
    ph = torch.zeros(B, N, dtype=torch.long)
    pm = torch.zeros(B, N, dtype=torch.bool)
    for b, x in enumerate(items):
        ph[b, : len(x["phonemes"])] = x["phonemes"]
        pm[b, : len(x["phonemes"])] = True
    out["phonemes"], out["phoneme_mask"] = ph, pm
    out["align_split"] = [x.get("align_split") for x in items]  # (text, audio) anchor or None per row
    out["script"] = [x.get("script") for x in items]  # (ids [S], items [S]) of the target, or None per row
    for key in ("prompt", "target"):
        T = max(x[f"{key}_latents"].shape[0] for x in items)
        z = torch.zeros(B, T, D)
        m = torch.zeros(B, T, dtype=torch.bool)
        for b, x in enumerate(items):
            t = x[f"{key}_latents"].shape[0]
            z[b, :t] = x[f"{key}_latents"]
            m[b, :t] = True
        out[f"{key}_latents"], out[f"{key}_mask"] = z, m
    return out


# --- sampler


class LengthBucketSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar length, at most ``max_frames`` summed length (and ``max_batch`` items) per batch.
    DDP-aware: each rank gets every world_size-th batch and all ranks get the same number of batches.
    Deterministic for (seed, epoch): call set_epoch(e) each epoch, like DistributedSampler."""

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        max_batch: int = 10_000,
        bucket_mult: int = 50,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        too_long = [i for i, n in enumerate(lengths) if n > max_frames]
        if too_long:
            raise ValueError(
                f"{len(too_long)} items are longer than max_frames={max_frames} (e.g. index {too_long[0]})"
            )
        self.lengths, self.max_frames, self.max_batch = list(lengths), max_frames, max_batch
        self.rank, self.world_size, self.seed, self.shuffle, self.bucket_mult = (
            rank,
            world_size,
            seed,
            shuffle,
            bucket_mult,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = (
            torch.randperm(len(self.lengths), generator=g).tolist()
            if self.shuffle
            else list(range(len(self.lengths)))
        )
        mean = max(1, int(np.mean(self.lengths)))
        window = max(
            1, self.bucket_mult * max(1, self.max_frames // mean)
        )  # sort inside windows of this many
        batches = []
        for a in range(0, len(order), window):
            chunk = sorted(order[a : a + window], key=lambda i: self.lengths[i])
            cur, tot = [], 0
            for i in chunk:
                if cur and (tot + self.lengths[i] > self.max_frames or len(cur) >= self.max_batch):
                    batches.append(cur)
                    cur, tot = [], 0
                cur.append(i)
                tot += self.lengths[i]
            if cur:
                batches.append(cur)
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[p] for p in perm]
        usable = (
            len(batches) - len(batches) % self.world_size if len(batches) >= self.world_size else len(batches)
        )
        return batches[:usable]

    def __iter__(self) -> Iterator[list[int]]:
        b = self._batches()
        if len(b) < self.world_size:  # fewer batches than ranks: every rank repeats them (tiny debug sets)
            return iter(b)
        return iter(b[self.rank :: self.world_size])

    def __len__(self) -> int:
        b = self._batches()
        return len(b) if len(b) < self.world_size else len(b) // self.world_size


def validation_prompts(rows: list[Utterance], n: int) -> list[tuple]:
    """n fixed (text, (sr, prompt wav), prompt text) triples: target and prompt from one speaker."""
    by_spk: dict[str, list[Utterance]] = {}
    for r in sorted(rows, key=lambda r: r.id):
        by_spk.setdefault(r.speaker, []).append(r)
    out = []
    for utts in by_spk.values():
        if len(out) >= n:
            break
        if len(utts) >= 2:
            wav, sr = load_audio(utts[0])
            out.append((utts[1].text, (sr, wav[: sr * 6]), utts[0].text if len(wav) <= sr * 6 else None))
    return [x for x in out if x[2] is not None]
