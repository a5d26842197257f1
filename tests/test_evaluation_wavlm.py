"""evaluation/wavlm_tdnn.py + wavlm_encoder.py: the paper's WavLM-TDNN SIM model, without its checkpoint.

No real ``wavlm_large_finetune.pth`` is available offline, so the tests check what can be checked without it:
- the WavLM encoder against an independent implementation (torchaudio's WavLM, weights mapped key by key),
- the state-dict layout: a random model saved as {"model": state_dict} (plus the training-only AAM-softmax key
  the published file carries) loads strictly through WavLMTDNNSIM, and every weight arrives (outputs equal the
  in-memory model's on real speech),
- clear errors for missing / unexpected / mis-shaped keys, non-tensor pickles, unreadable files,
- the full-size parameter count (WavLM-Large + the ECAPA_TDNN_SMALL head, counted from the reference code).
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.audio import load_audio
from evaluation.speaker import WavLMTDNNConfig, WavLMTDNNSIM, build_sim, cosine
from evaluation.wavlm_encoder import WavLM, WavLMConfig, relative_position_buckets
from evaluation.wavlm_tdnn import EcapaHeadConfig, WavLMTDNN

LS = "librispeech_train-clean-100"
CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2  # the real strides/kernels, narrow channels
TINY_WAVLM = WavLMConfig(conv_layers=CONV, dim=64, ffn_dim=128, num_layers=3, num_heads=4, conv_pos=16, conv_pos_groups=4)  # fmt: skip
TINY_HEAD = EcapaHeadConfig(
    channels=64, pool_channels=192, attention_channels=16, se_bottleneck=16, emb_dim=32
)
AAM_KEY = "loss_calculator.projection.weight"  # present in the published checkpoint, training-only


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every parameter and BN statistic off its init value, so a weight that fails to load shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = _perturb(WavLMTDNN(TINY_WAVLM, TINY_HEAD), seed=1)
    path = tmp_path_factory.mktemp("wavlm") / "wavlm_large_finetune.pth"
    state = dict(model.state_dict())
    state[AAM_KEY] = torch.randn(1211, TINY_HEAD.emb_dim)  # VoxCeleb1-dev speakers x embedding
    torch.save({"model": state}, path)
    return path, model, state


def test_checkpoint_loads_strictly_and_embeds_real_speech(tiny, real_speech_dir):
    path, model, _ = tiny
    sim = build_sim(f"wavlm-tdnn:{path}", wavlm=TINY_WAVLM, head=TINY_HEAD)
    assert sim.ignored_keys == [AAM_KEY] and "ECAPA_TDNN_SMALL" in sim.model_id
    loaded = sim.model.state_dict()
    assert set(loaded) == set(model.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())

    a, b = real_speech_dir / LS / "1034-121119-0000.flac", real_speech_dir / LS / "1088-129236-0000.flac"
    emb = sim.embed([a, b, a])
    assert emb.shape == (3, TINY_HEAD.emb_dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(emb[0], emb[2])  # deterministic
    assert cosine(emb[0], emb[2]) == pytest.approx(1.0, abs=1e-6)
    assert np.abs(emb[0] - emb[1]).max() > 1e-2  # the embedding depends on the input (random weights)
    np.testing.assert_array_equal(sim.embed([a])[0], emb[0])  # and again in a later call

    # the same numbers from the in-memory model: every weight and BN statistic made it through the file
    wav, _ = load_audio(a, 16000)
    with torch.inference_mode():
        ref = model(torch.from_numpy(wav)[None])[0].numpy()
    np.testing.assert_allclose(emb[0], ref / np.linalg.norm(ref), atol=1e-5)

    # an array at another rate goes through the same resampling as the file
    lj = real_speech_dir / "dev" / "coqui__LJ001-0001.wav"  # 22.05 kHz
    arr, sr = load_audio(lj)
    np.testing.assert_allclose(sim.embed([arr], sample_rate=sr), sim.embed([lj]), atol=1e-6)
    with pytest.raises(ValueError, match="too short for WavLM"):
        sim.embed([arr[:400]], sample_rate=16000)


def _to_torchaudio(s: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """fairseq WavLM names -> torchaudio's wavlm_model names (q/k/v fused into in_proj)."""
    m, tr = {}, "encoder.transformer"
    for i in range(len(CONV)):
        m[f"feature_extractor.conv_layers.{i}.conv.weight"] = s[f"feature_extractor.conv_layers.{i}.0.weight"]
    m[f"{tr}.pos_conv_embed.conv.bias"] = s["encoder.pos_conv.0.bias"]
    m[f"{tr}.pos_conv_embed.conv.parametrizations.weight.original0"] = s["encoder.pos_conv.0.weight_g"]
    m[f"{tr}.pos_conv_embed.conv.parametrizations.weight.original1"] = s["encoder.pos_conv.0.weight_v"]
    m[f"{tr}.layers.0.attention.rel_attn_embed.weight"] = s["encoder.layers.0.self_attn.relative_attention_bias.weight"]  # fmt: skip
    for x in ("weight", "bias"):
        for i in range(len(CONV)):
            m[f"feature_extractor.conv_layers.{i}.layer_norm.{x}"] = s[
                f"feature_extractor.conv_layers.{i}.2.1.{x}"
            ]
        m[f"encoder.feature_projection.layer_norm.{x}"] = s[f"layer_norm.{x}"]
        m[f"encoder.feature_projection.projection.{x}"] = s[f"post_extract_proj.{x}"]
        m[f"{tr}.layer_norm.{x}"] = s[f"encoder.layer_norm.{x}"]
    for layer in range(n_layers):
        a, b = f"encoder.layers.{layer}.", f"{tr}.layers.{layer}."
        m[b + "attention.gru_rel_pos_const"] = s[a + "self_attn.grep_a"]
        for x in ("weight", "bias"):
            m[b + f"attention.attention.in_proj_{x}"] = torch.cat(
                [s[a + f"self_attn.{q}_proj.{x}"] for q in "qkv"]
            )
            for ours, theirs in [
                ("self_attn.out_proj", "attention.attention.out_proj"),
                ("self_attn.grep_linear", "attention.gru_rel_pos_linear"),
                ("self_attn_layer_norm", "layer_norm"),
                ("fc1", "feed_forward.intermediate_dense"),
                ("fc2", "feed_forward.output_dense"),
                ("final_layer_norm", "final_layer_norm"),
            ]:
                m[b + f"{theirs}.{x}"] = s[a + f"{ours}.{x}"]
    return m


def test_encoder_matches_torchaudio_wavlm(real_speech_dir):
    from torchaudio.models import wavlm_model

    torch.manual_seed(2)
    ours = _perturb(WavLM(TINY_WAVLM), seed=3)
    ta = wavlm_model(
        extractor_mode="layer_norm", extractor_conv_layer_config=list(CONV), extractor_conv_bias=False,
        encoder_embed_dim=64, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4, encoder_num_layers=3, encoder_num_heads=4, encoder_num_buckets=320,
        encoder_max_distance=800, encoder_attention_dropout=0.0, encoder_ff_interm_features=128,
        encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=True,
        encoder_layer_drop=0.0, aux_num_out=None,
    ).eval()  # fmt: skip
    state = ours.state_dict()
    ta.load_state_dict(_to_torchaudio(state, 3), strict=True)
    # strict load covers torchaudio's side; the count covers ours (all but the 64-d mask_emb)
    assert sum(v.numel() for v in state.values()) - 64 == sum(p.numel() for p in ta.parameters())

    wav, _ = load_audio(real_speech_dir / LS / "1034-121119-0000.flac", 16000)
    x = F.layer_norm(torch.from_numpy(wav[: 4 * 16000])[None], (4 * 16000,))  # (1, S)
    with torch.inference_mode():
        states = ours.hidden_states(x)  # 4 x (1, T, C): inputs of layers 0..2, then LN(output)
        layer_outputs, _ = ta.extract_features(x)
        final, _ = ta(x)
    assert len(states) == 4 and states[0].shape == (1, 199, 64)  # 199 frames > the 80 exact buckets
    for i in range(2):
        torch.testing.assert_close(states[i + 1], layer_outputs[i], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(states[3], final, atol=1e-5, rtol=1e-5)
    assert ours.num_frames(x.shape[1]) == 199

    # the bucket function, out past max_distance (800 frames)
    rel = torch.arange(1200)[None, :] - torch.arange(1200)[:, None]
    theirs = ta.encoder.transformer.layers[0].attention._relative_positions_bucket(rel, bidirectional=True)
    assert torch.equal(relative_position_buckets(1200, 320, 800), theirs)


def test_bad_checkpoints_say_what_is_wrong(tiny, tmp_path):
    path, _, state = tiny
    cfg = {"wavlm": TINY_WAVLM, "head": TINY_HEAD}

    def load(obj, name="bad.pth"):
        p = tmp_path / name
        torch.save(obj, p)
        return WavLMTDNNSIM(WavLMTDNNConfig(checkpoint=str(p), **cfg))

    missing = {k: v for k, v in state.items() if k != "layer1.conv.weight"}
    with pytest.raises(ValueError, match=r"missing keys 1: layer1\.conv\.weight$"):
        load({"model": missing})
    with pytest.raises(ValueError, match=r"unexpected keys 1: projector\.weight$"):
        load({"model": {**state, "projector.weight": torch.zeros(3)}})
    with pytest.raises(ValueError, match=r"linear\.weight \(32, 10\) \(expected \(32, 384\)\)"):
        load({"model": {**state, "linear.weight": torch.zeros(32, 10)}})
    with pytest.raises(ValueError, match="not tensors: 1: feature_weight"):
        load({"model": {**state, "feature_weight": 3}})
    with pytest.raises(ValueError, match="expected a dict with a 'model' state dict"):
        load({"state_dict": state})
    with pytest.raises(ValueError, match="objects other than tensors .*argparse.Namespace"):
        load({"model": state, "args": argparse.Namespace(lr=1.0)})  # a pickled object is refused, not run
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="cannot read as a torch checkpoint"):
        WavLMTDNNSIM(WavLMTDNNConfig(checkpoint=str(tmp_path / "junk.pth"), **cfg))
    # the full-size architecture on the small file: many missing keys (layers 3..23) and shape errors
    with pytest.raises(ValueError, match=r"missing keys \d+: .*encoder\.layers\.10\."):
        WavLMTDNNSIM(WavLMTDNNConfig(checkpoint=str(path)))
    with pytest.raises(ValueError, match="wavlm_large_finetune.pth"):
        build_sim(f"wavlm-tdnn:{tmp_path / 'nope.pth'}")
    with pytest.raises(ValueError, match="must divide by res2_scale"):
        EcapaHeadConfig(channels=60)


def test_full_size_parameter_count():
    """WavLM-Large as in torchaudio (+ the 1024-d mask_emb it omits) and the ECAPA_TDNN_SMALL head."""
    from torchaudio.models import wavlm_large

    with torch.device("meta"):  # shapes only: no 1.3 GB allocation
        model = WavLMTDNN()
        ta = wavlm_large()
    n_wavlm = sum(p.numel() for p in model.feature_extract.parameters())
    n_head = sum(p.numel() for p in model.parameters()) - n_wavlm

    def conv_bn(n_in, n_out, k):  # Conv1dReluBn: conv weight + bias, BN weight + bias
        return n_in * n_out * k + n_out + 2 * n_out

    res2 = 7 * (64 * 64 * 3 + 64 + 2 * 64)  # scale 8 -> 7 convs of width 64, kernel 3, with BN
    se = (512 * 128 + 128) + (128 * 512 + 512)
    block = 2 * conv_bn(512, 512, 1) + res2 + se
    head = (
        25  # feature_weight: 24 layer inputs + the final output
        + conv_bn(1024, 512, 5)
        + 3 * block
        + (1536 * 1536 + 1536)  # conv 1x1 over the concatenated blocks
        + (1536 * 128 + 128) + (128 * 1536 + 1536)  # attentive stats pooling
        + 2 * 3072  # bn
        + (3072 * 256 + 256)  # linear -> 256
    )  # fmt: skip
    print(f"\nWavLM-Large {n_wavlm:,} + ECAPA_TDNN_SMALL head {n_head:,} = {n_wavlm + n_head:,} parameters")
    assert n_wavlm == sum(p.numel() for p in ta.parameters()) + 1024 == 315_453_120
    assert n_head == head == 8_410_841
    assert len(model.state_dict()) == 710  # parameters + BatchNorm buffers


@pytest.mark.slow
def test_full_size_round_trip(real_speech_dir, tmp_path):
    """The published shapes end to end: save a random full-size model, load it through the SIM, embed 4 s."""
    import time

    torch.manual_seed(0)
    model = WavLMTDNN().eval()
    path = tmp_path / "wavlm_large_finetune.pth"
    torch.save({"model": model.state_dict()}, path)
    t0 = time.perf_counter()
    sim = WavLMTDNNSIM(WavLMTDNNConfig(checkpoint=str(path)))
    t1 = time.perf_counter()
    wav, _ = load_audio(real_speech_dir / LS / "1034-121119-0000.flac", 16000)
    emb = sim.embed([wav[: 4 * 16000]], sample_rate=16000)
    t2 = time.perf_counter()
    with torch.inference_mode():
        ref = model(torch.from_numpy(wav[: 4 * 16000])[None])[0].numpy()
    print(
        f"\nfull size: load {t1 - t0:.1f} s, embed 4 s of audio {t2 - t1:.1f} s ({torch.get_num_threads()} thread)"
    )
    assert emb.shape == (1, 256)
    np.testing.assert_allclose(emb[0], ref / np.linalg.norm(ref), atol=1e-5)
