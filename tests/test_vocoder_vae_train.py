"""Audio VAE training: loss goes down on real speech, kill + resume == uninterrupted, CLI writes a release."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from latentlm.config import load_config
from vocoder_vae.data import CropDataset, list_audio
from vocoder_vae.model import AudioVAE
from vocoder_vae.train import TrainConfig, Trainer, main

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model.strides=[2,4,5]",
    "model.channels=4",
    "model.max_channels=16",
    "model.dilations=[1,3]",
    "model.decoder_channels=32",
    "model.bottleneck.latent_dim=8",
    "model.frame.frame_hop=10",
    "model.frame.n_mels=8",
    "model.frame.dim=32",
    "model.frame.encoder_frame_blocks=1",
    "model.frame.encoder_latent_blocks=1",
    "model.frame.decoder_latent_blocks=1",
    "model.frame.decoder_frame_blocks=2",
    "disc.periods=[2,3]",
    "disc.mpd_channels=2",
    "disc.resolutions=[256]",
    "disc.mrd_channels=4",
    "loss.mel_windows=[128,256]",
    "loss.mel_bands=[20,40]",
    "loss.stft_windows=[256]",
    "data.batch_size=2",
    "data.segment_seconds=0.2",
    "progress=false",
    "threads=1",
]


def tiny_cfg(tmp: Path, *extra: str) -> TrainConfig:
    return load_config(
        TrainConfig, REPO / "recipes" / "demo" / "vae_small.yaml", [*TINY, f"out_dir={tmp}", *extra]
    )


@pytest.fixture(scope="module")
def files(real_speech_dir) -> list[Path]:
    return list_audio(str(real_speech_dir / "librispeech_train-clean-100" / "manifest.tsv"))[:3]


@pytest.mark.parametrize("design", ["frame", "conv"])
def test_training_reduces_reconstruction_loss(tmp_path, files, design):
    kinds = ["model.encoder_kind=conv", "model.decoder_kind=conv"] if design == "conv" else []
    cfg = tiny_cfg(tmp_path, "loss.adv_start_step=100000", "optim.lr=0.003", "optim.warmup_steps=1", *kinds)
    tr = Trainer(cfg)
    data = CropDataset(files[:1], 16000, 3200, seed=0)
    fixed = data.batch(10_000, 4)

    def mel_loss() -> float:
        tr.model.eval()
        with torch.no_grad():
            z = tr.model.encode_frames(fixed)
            return tr.recon_loss(tr.model.decode_frames(z).squeeze(1), fixed.squeeze(1))["mel"].item()

    before = mel_loss()
    for step in range(40):
        tr.model.train()
        tr.train_step(data.batch(step, 2))
    after = mel_loss()
    assert after < 0.8 * before, (before, after)


def _flat(tr: Trainer) -> dict[str, torch.Tensor]:
    s = {f"model.{k}": v for k, v in tr.model.state_dict().items()}
    s.update({f"ema.{k}": v for k, v in tr.ema.items()})
    s.update({f"disc.{k}": v for k, v in tr.disc.state_dict().items()})
    for i, st in tr.opt_g.state_dict()["state"].items():
        s.update({f"opt_g.{i}.{k}": v for k, v in st.items() if torch.is_tensor(v)})
    return s


class KillAt:
    """Wraps a dataset; sends this process SIGTERM while drawing the batch of ``step``."""

    def __init__(self, data: CropDataset, step: int):
        self.data, self.step = data, step

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.data.batch(step, batch_size)


def test_kill_and_resume_equals_uninterrupted(tmp_path, files):
    n = 6
    extra = ("loss.adv_start_step=2", f"max_steps={n}", "save_every=100")
    data = CropDataset(files, 16000, 3200, seed=0)

    straight = Trainer(tiny_cfg(tmp_path / "a", *extra))
    straight.fit(data)
    assert straight.step == n

    first = Trainer(tiny_cfg(tmp_path / "b", *extra))
    first.fit(KillAt(data, 3))  # SIGTERM during step 3: finishes it, saves, stops
    assert first.stop_requested and first.step == 4
    torch.manual_seed(1234)  # a fresh process would have other global RNG state: resume must restore it
    resumed = Trainer(tiny_cfg(tmp_path / "b", *extra))
    assert resumed.step == 4
    resumed.fit(data)
    assert resumed.step == n

    a, b = _flat(straight), _flat(resumed)
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, diff[:5]
    assert resumed.sched_g.state_dict() == straight.sched_g.state_dict()


def test_cli_end_to_end_writes_release(tmp_path, real_speech_dir, capsys):
    manifest = real_speech_dir / "librispeech_train-clean-100" / "manifest.tsv"
    args = [
        str(REPO / "recipes" / "demo" / "vae_small.yaml"),
        *TINY,
        f"data.train={manifest}",
        "data.max_files=3",
        "data.stats_files=2",
        "max_steps=3",
        "loss.adv_start_step=1",
        "sample_every=2",
        "device=cpu",
        f"out_dir={tmp_path / 'run'}",
    ]
    main(args)
    assert "release written" in capsys.readouterr().out
    vae = AudioVAE.from_pretrained(tmp_path / "run" / "release")
    mean, std = vae.latent_stats
    assert not torch.equal(std, torch.ones_like(std))  # measured on training clips
    assert (tmp_path / "run" / "last.pt").is_file() and any((tmp_path / "run" / "tb").iterdir())
    # running again with a higher max_steps resumes from step 3
    main([*args, "max_steps=4", "--export", str(tmp_path / "rel2")])
    out = capsys.readouterr().out
    assert "resuming at step 3" in out and "step 4: release written" in out
    assert AudioVAE.from_pretrained(tmp_path / "rel2").latent_dim == 8


def test_reconstruction_run_continues_with_fresh_discriminators(tmp_path, files, capsys):
    """Two-stage training: a run without adversarial terms resumes with them switched on."""
    data = CropDataset(files, 16000, 3200, seed=0)
    stage1 = Trainer(tiny_cfg(tmp_path, "loss.weights.adv=0", "loss.weights.feat=0", "max_steps=2"))
    assert stage1.disc is None
    stage1.fit(data)
    stage1.save()
    stage2 = Trainer(tiny_cfg(tmp_path, "loss.adv_start_step=0", "max_steps=4"))
    assert "starting fresh discriminators" in capsys.readouterr().out
    assert stage2.step == 2 and stage2.disc is not None
    assert torch.equal(stage2.model.state_dict()["latent_std"], stage1.model.state_dict()["latent_std"])
    for k, v in stage1.model.state_dict().items():
        assert torch.equal(stage2.model.state_dict()[k], v), k
    stage2.fit(data)
    assert stage2.step == 4
    assert "disc" in torch.load(tmp_path / "last.pt", weights_only=True)


def test_ema_warms_up(tmp_path, files):
    """Early EMA weights follow the trained weights, not the random initialisation (decay ramps up)."""
    tr = Trainer(tiny_cfg(tmp_path, "loss.adv_start_step=100000", "ema_decay=0.999", "optim.warmup_steps=1"))
    init = {k: v.clone() for k, v in tr.model.state_dict().items()}
    data = CropDataset(files[:1], 16000, 3200, seed=0)
    for step in range(3):
        tr.train_step(data.batch(step, 2))
    now = tr.model.state_dict()
    moved = [k for k in now if now[k].is_floating_point() and not torch.equal(now[k], init[k])]
    assert moved
    for k in moved:  # decays 0.1, 0.18, 0.25: the EMA holds < 5% of the initial weights
        to_init = (tr.ema[k] - init[k]).norm()
        to_now = (tr.ema[k] - now[k]).norm()
        assert to_now < to_init, k


def test_decoder_fine_tune_from_release_keeps_the_latent_space(tmp_path, files):
    """init_from + freeze_encoder: the encoder (hence every latent an LM was trained on) stays bit-identical,
    the decoder trains on; a release with another architecture is refused."""
    data = CropDataset(files, 16000, 3200, seed=0)
    base = Trainer(tiny_cfg(tmp_path / "base", "loss.adv_start_step=100000", "max_steps=3"))
    base.fit(data)
    release = base.export(tmp_path / "rel", data)
    src = AudioVAE.from_pretrained(release)
    ft = Trainer(
        tiny_cfg(
            tmp_path / "ft",
            "loss.adv_start_step=100000",
            "max_steps=4",
            f"init_from={release}",
            "freeze_encoder=true",
        )
    )
    for k, v in src.state_dict().items():
        assert torch.equal(ft.model.state_dict()[k], v), k
    ft.fit(data)
    other = CropDataset(files[1:], 16000, 3200, seed=1)  # other clips: the stats must not be re-measured on them
    out = AudioVAE.from_pretrained(ft.export(tmp_path / "rel_ft", other))
    wav = data.batch(99, 1)
    assert torch.equal(out.encode_frames(wav), src.encode_frames(wav))
    meta = json.loads((tmp_path / "rel_ft" / "config.json").read_text())["meta"]
    assert meta["init_from"] == str(release) and meta["freeze_encoder"] is True and "kept" in meta["stats"]
    assert torch.equal(out.latent_mean, src.latent_mean) and torch.equal(out.latent_std, src.latent_std)
    dec_src, dec_out = src.decoder.state_dict(), out.decoder.state_dict()
    assert any(not torch.equal(dec_src[k], dec_out[k]) for k in dec_src)
    with pytest.raises(ValueError, match="model config differs"):
        Trainer(tiny_cfg(tmp_path / "bad", f"init_from={release}", "model.frame.dim=16"))
