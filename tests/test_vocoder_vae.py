"""Audio VAE model: shapes, causality, streaming, input handling, releases, metrics (real speech, tiny configs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from latentlm.config import load_config
from latentlm.sigma_vae import BottleneckConfig
from vocoder_vae.audio import load_audio
from vocoder_vae.frame_nets import FrameNetConfig
from vocoder_vae.metrics import mel_distance, si_sdr, stoi
from vocoder_vae.model import AudioVAE, VAEConfig

REPO = Path(__file__).resolve().parents[1]


def tiny(strides=(2, 4, 5), head="waveform", dim=8, **kw) -> VAEConfig:
    """head: "waveform" / "istft" (conv encoder + conv decoder) or "frame" (mel encoder + ConvNeXt decoder)."""
    extra = {"istft_hop": 10, "decoder_upsample": [2, 2]} if head == "istft" else {}
    if head == "frame":
        head = "waveform"
        frame = FrameNetConfig(frame_hop=10, n_mels=8, dim=32, encoder_frame_blocks=2, decoder_frame_blocks=2)
        extra = {"encoder_kind": "mel", "decoder_kind": "convnext", "frame": frame}
    return VAEConfig(
        strides=list(strides),
        channels=4,
        max_channels=32,
        dilations=[1, 3],
        decoder_channels=32,
        decoder_head=head,
        bottleneck=BottleneckConfig(latent_dim=dim),
        **extra,
        **kw,
    )


@pytest.fixture(scope="module")
def speech(real_speech_dir) -> torch.Tensor:
    """2 s of a real LibriSpeech utterance at 16 kHz."""
    path = real_speech_dir / "librispeech_train-clean-100" / "103-1240-0000.flac"
    return load_audio(path, 16000)[16000:48000]


@pytest.mark.parametrize("strides", [(2, 4, 5), (4, 8, 5), (2, 4, 8, 10)])
def test_shapes_and_frame_rate(strides, speech):
    torch.manual_seed(0)
    vae = AudioVAE(tiny(strides)).eval()
    hop = int(np.prod(strides))
    assert vae.hop == hop and vae.frame_rate == 16000 / hop and vae.latent_dim == 8
    wav = speech[: 10 * hop + 7]  # not a multiple of hop: padded to 11 frames
    z = vae.encode(wav, 16000)
    assert z.shape == (11, 8)
    assert vae.decode(z).shape == (11 * hop,)


def test_paper_recipes_build():
    for name, hop, dim in [("sigma_vae_15hz_32d.yaml", 1600, 32), ("sigma_vae_7p5hz_64d.yaml", 3200, 64)]:
        from vocoder_vae.train import TrainConfig

        cfg = load_config(TrainConfig, REPO / "recipes" / "vae" / name)
        assert (
            cfg.model.sample_rate == 24000 and cfg.model.hop == hop and cfg.model.bottleneck.latent_dim == dim
        )
        assert cfg.model.frame_rate * dim == 480  # both carry 480 floats per second
    small = load_config(TrainConfig, REPO / "recipes" / "demo" / "vae_small.yaml")
    assert small.model.sample_rate == 16000


@pytest.mark.parametrize("head", ["waveform", "istft", "frame"])
def test_causality(head, speech):
    """Changing samples after frame k's span changes neither latents <= k nor decoded samples before it."""
    torch.manual_seed(0)
    vae = AudioVAE(tiny(head=head)).eval()
    hop = vae.hop
    x = speech[: 20 * hop][None, None].clone()
    y = x.clone()
    y[..., 12 * hop :] = torch.randn_like(y[..., 12 * hop :]) * 0.3
    with torch.no_grad():
        zx, zy = vae.encode_frames(x), vae.encode_frames(y)
        assert torch.allclose(zx[..., :12], zy[..., :12], atol=1e-6)
        assert not torch.allclose(zx[..., 12:], zy[..., 12:], atol=1e-3)
        wx, wy = vae.decode_frames(zx), vae.decode_frames(zy)
    assert torch.allclose(wx[..., : 12 * hop], wy[..., : 12 * hop], atol=1e-6)
    assert not torch.allclose(wx[..., 12 * hop :], wy[..., 12 * hop :], atol=1e-4)


@pytest.mark.parametrize("head", ["waveform", "istft", "frame"])
def test_stream_decode_matches_full(head, speech):
    torch.manual_seed(0)
    vae = AudioVAE(tiny(head=head)).eval()
    z = vae.encode(speech, 16000)
    z = z + 0.1 * torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    full = vae.decode(z)
    cuts = [0, 1, 4, 5, 17, 40, len(z)]
    chunks = [z[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    parts = list(vae.decode_stream(chunks))
    assert [len(p) for p in parts] == [len(c) * vae.hop for c in chunks]
    streamed = torch.cat(parts)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() < 1e-4 * max(1.0, full.abs().max().item())


def test_encode_input_handling(speech):
    torch.manual_seed(0)
    vae = AudioVAE(tiny()).eval()
    ref = vae.encode(speech, 16000)
    # int16, stereo in both layouts, numpy: same latents (up to int16 quantisation)
    i16 = (speech.numpy() * 32767).astype(np.int16)
    assert torch.allclose(vae.encode(i16, 16000), ref, atol=1e-3)
    stereo = np.stack([speech.numpy(), speech.numpy()], axis=1)  # [L, 2]
    assert torch.allclose(vae.encode(stereo, 16000), ref, atol=1e-5)
    assert torch.allclose(vae.encode(torch.from_numpy(stereo.T.copy()), 16000), ref, atol=1e-5)
    i32 = (speech.numpy().astype(np.float64) * 2**31 * 0.999).astype(np.int32)
    assert torch.allclose(vae.encode(i32, 16000), ref, atol=1e-3)
    # another sample rate: resampled to the model rate, same frame count, close latents
    import scipy.signal

    at44 = scipy.signal.resample_poly(speech.numpy(), 441, 160).astype(np.float32)
    z44 = vae.encode(at44, 44100)
    assert z44.shape == ref.shape
    assert (z44 - ref).abs().mean() < 0.1 * ref.abs().mean() + 1e-4


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros(16000, np.float32), "silent"),
        (np.full(16000, np.nan, np.float32), "NaN"),
        (np.zeros((3, 4, 5), np.float32), "shape"),
        ("not audio", "numpy array"),
    ],
)
def test_encode_rejects_bad_input(bad, match):
    vae = AudioVAE(tiny()).eval()
    with pytest.raises(ValueError, match=match):
        vae.encode(bad, 16000)


def test_decode_and_files_reject_bad_input(tmp_path):
    vae = AudioVAE(tiny()).eval()
    with pytest.raises(ValueError, match=r"\[T, 8\]"):
        vae.decode(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="no frames"):
        vae.decode(torch.zeros(0, 8))
    with pytest.raises(ValueError, match="NaN"):
        vae.decode(torch.full((4, 8), float("nan")))
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(ValueError, match="cannot read audio"):
        load_audio(bad, 16000)


def test_frame_config_validation():
    with pytest.raises(ValueError, match="frame_hop 30 must be a positive divisor of hop 40"):
        VAEConfig(strides=[2, 4, 5], encoder_kind="mel", frame=FrameNetConfig(frame_hop=30))
    cfg = tiny(head="frame")
    assert cfg.hop // cfg.frame.frame_hop == 4


@pytest.mark.parametrize("head", ["waveform", "frame"])
def test_release_round_trip(tmp_path, speech, head):
    torch.manual_seed(0)
    vae = AudioVAE(tiny(head=head)).eval()
    vae.set_latent_stats(torch.linspace(-1, 1, 8), torch.linspace(0.5, 2, 8))
    vae.save_pretrained(tmp_path / "rel", meta={"note": "test"})
    back = AudioVAE.from_pretrained(tmp_path / "rel")
    z = vae.encode(speech, 16000)
    assert torch.equal(back.encode(speech, 16000), z)
    assert torch.equal(back.decode(z), vae.decode(z))
    mean, std = back.latent_stats
    assert torch.equal(mean, torch.linspace(-1, 1, 8))
    assert torch.allclose(back.denormalize(back.normalize(z)), z, atol=1e-5)
    assert torch.allclose(back.normalize(z).mean(0) * std + mean, z.mean(0), atol=1e-5)
    # re-saving a loaded release (a TTS release's vae/ copy) keeps its training meta
    back.save_pretrained(tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / "config.json").read_text())["meta"]["note"] == "test"
    # a release whose weights do not match its config fails loudly (strict load)
    other = AudioVAE(tiny(dim=4, head=head))
    other.save_pretrained(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text((tmp_path / "rel" / "config.json").read_text())
    with pytest.raises(ValueError, match="does not match"):
        AudioVAE.from_pretrained(tmp_path / "bad")


def test_metrics_sanity(speech, tmp_path):
    ref = speech.numpy()
    rng = np.random.default_rng(0)
    noisy = ref + 0.05 * rng.standard_normal(ref.shape).astype(np.float32)
    noisier = ref + 0.2 * rng.standard_normal(ref.shape).astype(np.float32)
    assert stoi(ref, ref, 16000) > 0.99
    assert stoi(ref, noisier, 16000) < stoi(ref, noisy, 16000) < 0.99
    assert si_sdr(ref, 0.5 * ref) > 60  # scale-invariant
    assert si_sdr(ref, noisier) < si_sdr(ref, noisy) < 30
    assert (
        mel_distance(ref, ref, 16000)
        < 1e-6
        < mel_distance(ref, noisy, 16000)
        < mel_distance(ref, noisier, 16000)
    )
    # a written-and-read file scores like the array
    sf.write(tmp_path / "x.wav", noisy, 16000)
    assert abs(si_sdr(ref, load_audio(tmp_path / "x.wav", 16000)) - si_sdr(ref, noisy)) < 0.5
