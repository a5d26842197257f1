"""Ground-truth-aligned latents (tts/gta.py) and the decoder fine-tuning that reads them (vocoder_vae data.gta):
every training row gets one predicted latent per target frame with the audio of exactly those frames, crops keep
latents and audio aligned, and the fine-tune moves the decoder only. Real clips, tiny untrained models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tests.helpers import make_tiny_corpus, make_tiny_release
from tts.data import LatentStore, load_audio
from tts.frontend import Frontend
from tts.gta import main as gta_main
from tts.manifests import read_jsonl
from tts.store_files import phoneme_cache
from vocoder_vae.audio import prepare
from vocoder_vae.data import CropDataset, GTAPairs, list_audio
from vocoder_vae.model import AudioVAE
from vocoder_vae.train import Trainer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(real_speech_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("gta_corpus")
    c = make_tiny_corpus(real_speech_dir, d, n=4)
    rows = read_jsonl(c["manifest"])
    phonemes = phoneme_cache(rows, c["latents"], Frontend("en-us"), 0)
    store = LatentStore(c["latents"])
    durations = {}
    for uid, ids in phonemes.items():  # frames spread evenly over the symbols (plumbing only)
        T, S = store.frames(uid), len(ids)
        ends = [round((i + 1) * T / S) for i in range(S)]
        durations[uid] = [e - s for s, e in zip([0] + ends[:-1], ends)]
    (c["latents"] / "durations.json").write_text(json.dumps(durations))
    c["release"] = make_tiny_release(d / "release", interleave=True)
    return c


def test_gta_pairs_every_target_frame_with_its_audio(corpus, tmp_path):
    out = tmp_path / "gta.safetensors"
    args = [str(corpus["release"]), "--manifest", str(corpus["manifest"]), "--latents", str(corpus["latents"])]
    assert gta_main([*args, "--out", str(out), "--head", "reference", "--temperature", "0.5"]) == 0
    rows = {r.id: r for r in read_jsonl(corpus["manifest"])}
    store = LatentStore(corpus["latents"])
    vae = AudioVAE.from_pretrained(corpus["release"] / "vae")
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        ids = sorted(k[2:] for k in f.keys() if k.startswith("z/"))
        assert ids == sorted(rows) and meta["head"] == "reference" and float(meta["temperature"]) == 0.5
        for uid in ids:
            z, wav = f.get_tensor(f"z/{uid}"), f.get_tensor(f"wav/{uid}")
            T = z.shape[0]
            assert 0 < T <= store.frames(uid) and z.shape[1] == store.get(uid).shape[1]
            assert torch.isfinite(z).all() and len(wav) == T * vae.hop
            # the audio of the target frames: the utterance's tail of T frames (a prefix prompt takes the start)
            x, sr = load_audio(rows[uid])
            full = prepare(x, sr, vae.sample_rate).numpy()
            start = (store.frames(uid) - T) * vae.hop
            n = min(len(full) - start, len(wav))
            np.testing.assert_allclose(wav[:n].numpy(), full[start : start + n], atol=1e-6)
    # the same seed gives the same latents; another seed other samples
    again, other = tmp_path / "again.safetensors", tmp_path / "other.safetensors"
    gta_main([*args, "--out", str(again), "--head", "reference", "--temperature", "0.5"])
    gta_main([*args, "--out", str(other), "--head", "reference", "--temperature", "0.5", "--seed", "1"])
    with safe_open(str(out), framework="pt") as a, safe_open(str(again), framework="pt") as b:
        with safe_open(str(other), framework="pt") as c:
            k = f"z/{ids[0]}"
            assert torch.equal(a.get_tensor(k), b.get_tensor(k))
            assert not torch.equal(a.get_tensor(k), c.get_tensor(k))


def test_gta_refuses_what_it_cannot_do(corpus, tmp_path, capsys):
    args = [str(corpus["release"]), "--manifest", str(corpus["manifest"]), "--latents", str(corpus["latents"])]
    assert gta_main([*args, "--out", str(tmp_path / "x.npz")]) == 2  # not .safetensors
    assert gta_main([*args, "--out", str(tmp_path / "x.safetensors")]) == 2  # no one-step head in this release
    bare = tmp_path / "latents"  # the store without its durations: an interleaved release needs them
    shutil.copytree(corpus["latents"], bare)
    (bare / "durations.json").unlink()
    args[4] = str(bare)
    assert gta_main([*args, "--out", str(tmp_path / "y.safetensors"), "--head", "reference"]) == 2
    assert "tts.durations" in capsys.readouterr().err


def _pairs_file(path: Path, hop: int, lengths=(7, 12), d: int = 8) -> Path:
    """z[t] = t in every dim and audio samples of frame t = t / 100: alignment is visible in the numbers."""
    tensors = {}
    for i, n in enumerate(lengths):
        tensors[f"z/u{i}"] = torch.arange(n, dtype=torch.float32)[:, None].expand(n, d).contiguous()
        tensors[f"wav/u{i}"] = torch.arange(n, dtype=torch.float32).repeat_interleave(hop) / 100
    save_file(tensors, str(path), metadata={"hop": str(hop)})
    return path


def test_gta_crops_keep_latents_and_audio_aligned(tmp_path):
    pairs = GTAPairs(_pairs_file(tmp_path / "p.safetensors", hop=4), hop=4, segment_frames=5, seed=3)
    wav, z = pairs.batch(11, 6)
    assert wav.shape == (6, 1, 20) and z.shape == (6, 8, 5)
    for b in range(6):  # both utterances are longer than the crop: no padding
        frames = z[b, 0]  # [5] the frame indices of the crop
        assert torch.equal(frames[1:] - frames[:-1], torch.ones(4))  # consecutive frames
        assert torch.allclose(wav[b, 0].view(5, 4), (frames / 100)[:, None].expand(5, 4))  # their audio
    assert torch.equal(pairs.batch(11, 6)[1], z)  # a pure function of the step
    with pytest.raises(ValueError, match="hop"):
        GTAPairs(tmp_path / "p.safetensors", hop=8, segment_frames=5)


def test_decoder_fine_tunes_on_gta_pairs_with_the_encoder_frozen(tmp_path, real_speech_dir):
    from tests.test_vocoder_vae_train import tiny_cfg

    files = list_audio(str(real_speech_dir / "librispeech_train-clean-100" / "manifest.tsv"))[:2]
    base = Trainer(tiny_cfg(tmp_path / "base", "loss.adv_start_step=100000", "max_steps=1"))
    data = CropDataset(files, 16000, 3200, seed=0)
    base.fit(data)
    release = base.export(tmp_path / "rel", data)
    hop, d = base.cfg.model.hop, base.cfg.model.bottleneck.latent_dim
    pairs_path = _pairs_file(tmp_path / "p.safetensors", hop=hop, lengths=(9, 14), d=d)
    over = ["loss.adv_start_step=100000", "max_steps=3", f"init_from={release}", f"data.gta={pairs_path}"]
    with pytest.raises(ValueError, match="freeze_encoder"):
        Trainer(tiny_cfg(tmp_path / "bad", *over))
    ft = Trainer(tiny_cfg(tmp_path / "ft", *over, "freeze_encoder=true", "data.gta_fraction=0.5"))
    before = {k: v.clone() for k, v in ft.model.state_dict().items()}
    seen = []
    real_step = ft.train_step

    def spy(wav, gta=None):
        seen.append((wav.shape[0], None if gta is None else gta[1].shape))
        return real_step(wav, gta)

    ft.train_step = spy
    gta = GTAPairs(pairs_path, hop, 3200 // hop)
    ft.fit(data, None, gta)
    bs = ft.cfg.data.batch_size
    assert seen and all(n + g[0] == bs and g[0] == round(bs / 2) for n, g in seen)
    after = ft.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("encoder."))
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("decoder."))
