"""Latent extraction (fake deterministic encoder on real clips), the store, prompt/target pairs, the bucket
sampler and collation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tts import data as TD
from tts import manifests as M
from tts.frontend import Vocab


class FakeEncoder:
    """Framewise log-magnitude spectrum -> fixed random projection to D dims (deterministic)."""

    def __init__(self, frame_rate: float = 25.0, dim: int = 8):
        self.frame_rate, self.dim = frame_rate, dim
        self.proj = torch.randn(257, dim, generator=torch.Generator().manual_seed(0)) / 16
        self.calls = 0

    def encode(self, wav, sample_rate: int) -> torch.Tensor:
        self.calls += 1
        wav = torch.as_tensor(wav, dtype=torch.float32)
        hop = int(sample_rate / self.frame_rate)
        spec = torch.stft(wav, 512, hop, window=torch.hann_window(512), return_complex=True).abs()  # [257, T]
        return torch.log(spec + 1e-5).T @ self.proj  # [T, D]


@pytest.fixture(scope="module")
def rows(real_speech_dir: Path) -> list[M.Utterance]:
    allrows = M.real_speech(real_speech_dir)
    short = sorted(allrows, key=lambda r: r.duration)[:10]  # the shortest real clips keep the test fast
    # two utterances per speaker: the clip and its second half as a segment (offset rows)
    seg = [
        M.Utterance(
            r.id + "-b",
            r.audio,
            r.text,
            r.speaker,
            r.duration / 2,
            r.sample_rate,
            r.source,
            offset=r.duration / 2,
        )
        for r in short[:6]
    ]
    return short + seg


def test_extract_resume_and_ranks(tmp_path: Path, rows) -> None:
    enc = FakeEncoder()
    n0 = TD.extract_latents(rows[:5], enc, tmp_path, shard_size=2, progress=False)
    assert n0 == 5 and len(list(tmp_path.glob("shard-r000-*.safetensors"))) == 3
    n1 = TD.extract_latents(rows, enc, tmp_path, shard_size=2, progress=False)  # resumes: only the new ones
    assert n1 == len(rows) - 5 and enc.calls == len(rows)
    assert TD.extract_latents(rows, enc, tmp_path, progress=False) == 0
    store = TD.LatentStore(tmp_path)
    assert len(store) == len(rows) and store.frame_rate == 25.0 and (tmp_path / "index.json").exists()
    for r in rows[:3]:
        z = store.get(r.id)
        assert z.shape == (store.frames(r.id), 8)
        assert abs(z.shape[0] - r.duration * 25) <= 2
        wav, sr = TD.load_audio(r)
        assert torch.allclose(z, enc.encode(wav, sr))
    # the offset segment equals the matching frames of the whole clip (up to STFT edge frames)
    full, half = store.get(rows[0].id), store.get(rows[0].id + "-b")
    k = full.shape[0] - half.shape[0]
    assert torch.allclose(full[k + 12 : -12], half[12:-12], atol=1e-4)
    # two ranks split the work disjointly and cover everything
    d2 = tmp_path / "ddp"
    a = TD.extract_latents(rows, FakeEncoder(), d2, rank=0, world_size=2, progress=False)
    b = TD.extract_latents(rows, FakeEncoder(), d2, rank=1, world_size=2, progress=False)
    assert a + b == len(rows) and abs(a - b) <= 1
    s2 = TD.LatentStore(d2)
    assert set(s2.index) == {r.id for r in rows}
    assert torch.equal(s2.get(rows[4].id), store.get(rows[4].id))
    with pytest.raises(ValueError, match="rank"):
        TD.extract_latents(rows, enc, d2, rank=2, world_size=2)
    with pytest.raises(KeyError, match="no latents"):
        store.get("nope")
    with pytest.raises(ValueError, match="no latent index"):
        TD.LatentStore(tmp_path / "empty")


@pytest.fixture()
def dataset(tmp_path: Path, rows):
    TD.extract_latents(rows, FakeEncoder(), tmp_path, progress=False)
    store = TD.LatentStore(tmp_path)
    v = Vocab()
    ph = {r.id: v.encode("".join(c for c in r.text.lower() if c in v._index)) for r in rows}
    return TD.PromptTargetDataset(rows, store, ph, p_prefix=0.3, seed=1), store, ph


def test_pairs(dataset) -> None:
    ds, store, ph = dataset
    speakers = {r.id: r.speaker for r in ds.rows}
    modes = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            x = ds[i]
            modes.add(x["mode"])
            z = store.get(x["id"])
            if x["mode"] == "prefix":
                assert x["prompt_id"] == x["id"]
                assert torch.equal(torch.cat([x["prompt_latents"], x["target_latents"]]), z)
                assert x["phonemes"].tolist() == ph[x["id"]]
            elif x["mode"] == "speaker":
                assert x["prompt_id"] != x["id"] and speakers[x["prompt_id"]] == speakers[x["id"]]
                assert torch.equal(x["target_latents"], z)
                assert x["phonemes"].tolist() == ph[x["prompt_id"]] + [1] + ph[x["id"]]
    assert modes == {"prefix", "speaker"}
    ds.set_epoch(7)
    a = [ds[i]["prompt_id"] for i in range(len(ds))]
    assert a == [ds[i]["prompt_id"] for i in range(len(ds))]  # deterministic for (seed, epoch, index)


def test_collate_masks(dataset) -> None:
    ds, _, _ = dataset
    items = [ds[i] for i in range(4)]
    b = TD.collate(items)
    assert b["phonemes"].shape == b["phoneme_mask"].shape and b["phonemes"].dtype == torch.long
    for k, x in enumerate(items):
        n, tp, tt = len(x["phonemes"]), x["prompt_latents"].shape[0], x["target_latents"].shape[0]
        assert (
            b["phoneme_mask"][k].sum() == n
            and b["prompt_mask"][k].sum() == tp
            and b["target_mask"][k].sum() == tt
        )
        assert torch.equal(b["target_latents"][k, :tt], x["target_latents"])
        assert (b["target_latents"][k, tt:] == 0).all() and (b["phonemes"][k, n:] == 0).all()
    assert b["target_latents"].shape[2] == 8


def test_bucket_sampler() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 400, size=503).tolist()
    s = TD.LengthBucketSampler(lengths, max_frames=1200, seed=3)
    batches = list(s)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(503))  # single rank: every item exactly once
    assert all(sum(lengths[i] for i in b) <= 1200 for b in batches)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches if len(b) > 1])
    assert spread < 100  # bucketing keeps similar lengths together (random batches would spread ~ 300)
    assert list(s) == batches  # deterministic for the epoch
    s.set_epoch(1)
    assert list(s) != batches
    # DDP: ranks get disjoint batches, the same count, and together (almost) everything
    parts = [list(TD.LengthBucketSampler(lengths, 1200, rank=r, world_size=3, seed=3)) for r in range(3)]
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == len(
        TD.LengthBucketSampler(lengths, 1200, 0, 3, 3)
    )
    seen = [i for p in parts for b in p for i in b]
    assert len(seen) == len(set(seen)) and len(seen) > 0.95 * 503
    with pytest.raises(ValueError, match="longer than max_frames"):
        TD.LengthBucketSampler([10, 5000], max_frames=1000)
    with pytest.raises(ValueError, match="rank"):
        TD.LengthBucketSampler(lengths, 1200, rank=3, world_size=3)


def test_dataloader_end_to_end(dataset) -> None:
    ds, _, _ = dataset
    sampler = TD.LengthBucketSampler(ds.lengths, max_frames=max(ds.lengths) * 3, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=TD.collate)
    n = sum(b["target_mask"].shape[0] for b in loader)
    assert n == len(ds)
