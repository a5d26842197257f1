"""Sigma-VAE vs gaussian-VAE ablation code path on tiny sizes, and evaluate's WER / SIM option on real audio."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from latentlm.config import load_config
from latentlm.sigma_vae import expected_sigma
from vocoder_vae.ablation import (
    DEFAULT_RECIPE,
    POSTERIOR_COLUMNS,
    ROBUSTNESS_COLUMNS,
    markdown_table,
    run_ablation,
    spread,
)
from vocoder_vae.data import list_audio
from vocoder_vae.train import TrainConfig

TINY = [
    "model.strides=[2,4,5]",
    "model.channels=4",
    "model.max_channels=16",
    "model.dilations=[1]",
    "model.decoder_channels=16",
    "model.bottleneck.latent_dim=4",
    "model.frame.frame_hop=10",
    "model.frame.n_mels=8",
    "model.frame.dim=16",
    "model.frame.encoder_frame_blocks=1",
    "model.frame.encoder_latent_blocks=1",
    "model.frame.decoder_latent_blocks=1",
    "model.frame.decoder_frame_blocks=1",
    "loss.mel_windows=[128,256]",
    "loss.mel_bands=[20,40]",
    "loss.stft_windows=[256]",
    "data.batch_size=2",
    "data.segment_seconds=0.1",
    "data.stats_files=1",
    "threads=1",
]
NOISE = (0.0, 0.5, 1.0)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def ablation(real_speech_dir, tmp_path_factory):
    cfg = load_config(TrainConfig, DEFAULT_RECIPE, TINY)
    train = list_audio(str(real_speech_dir / "librispeech_train-clean-100" / "manifest.tsv"))[:1]
    dev = list_audio(str(real_speech_dir / "dev" / "manifest.tsv"))
    evals = [
        f for f in dev if f.name in ("coqui__LJ001-0002.wav", "pyroomacoustics__cmu_arctic_us_aew_a0001.wav")
    ]
    out = tmp_path_factory.mktemp("ablation")
    return cfg, train, evals, out, run_ablation(cfg, 3, out, train, evals, NOISE)


def test_table_has_the_right_rows_and_finite_numbers(ablation):
    _, _, _, out, results = ablation
    table = (out / "table.md").read_text()
    assert table == markdown_table(results)
    post, rob = table.strip().split("\n\n")
    post_lines, rob_lines = post.splitlines(), rob.splitlines()
    assert _cells(post_lines[0]) == POSTERIOR_COLUMNS
    assert _cells(rob_lines[0]) == ROBUSTNESS_COLUMNS
    assert [_cells(x)[0] for x in post_lines[2:]] == ["sigma", "gaussian"]
    rows = [_cells(x) for x in rob_lines[2:]]
    assert [(r[0], float(r[1])) for r in rows] == [(k, n) for k in ("sigma", "gaussian") for n in NOISE]
    for r in rows:
        assert all(math.isfinite(float(c)) for c in r[2:]), r
        assert 0.0 <= float(r[3]) <= 1.0  # STOI
    for line in post_lines[2:]:
        c = _cells(line)
        assert c[1] == "3"  # same step budget for both
        lo, hi = (float(x) for x in c[5].split(" / "))
        assert all(math.isfinite(float(x)) for x in (c[2], c[3], c[4], c[6], c[7]))
        assert 0.0 <= lo <= hi


def test_posterior_statistics_follow_each_bottleneck(ablation):
    cfg, _, _, _, results = ablation
    s = cfg.model.bottleneck.sigma_scale
    sig, gau = results["models"]["sigma"]["posterior"], results["models"]["gaussian"]["posterior"]
    # sigma ~ |N(0, (s/0.8)^2)|: E[sigma^2] = (s/0.8)^2, sampled 100k times
    assert sig["posterior_var"] == pytest.approx((s / 0.8) ** 2, rel=0.03)
    assert expected_sigma(s) ** 2 < sig["posterior_var"]  # Var(sigma) > 0
    assert gau["posterior_var"] > 0 and gau["posterior_var_p10"] <= gau["posterior_var_p90"]
    for p in (sig, gau):
        assert p["var_mu"] > 0 and p["frames"] > 0
        assert p["posterior_to_mu_var"] == pytest.approx(p["posterior_var"] / p["var_mu"])
    # every noise level is measured on the same clips; the noise-free row is the baseline of the increase
    for kind in ("sigma", "gaussian"):
        rob = results["models"][kind]["robustness"]
        assert rob[0]["mel_increase"] == 0.0
        assert [r["noise"] for r in rob] == list(NOISE)


def test_rerun_resumes_without_training_again(ablation):
    cfg, train, evals, out, results = ablation
    again = run_ablation(cfg, 3, out, train, evals, NOISE)
    for kind in ("sigma", "gaussian"):
        assert again["models"][kind]["train"]["steps_this_run"] == 0
        assert again["models"][kind]["train"]["steps"] == 3
        assert again["models"][kind]["posterior"]["var_mu"] == pytest.approx(
            results["models"][kind]["posterior"]["var_mu"]
        )
    assert json.loads((out / "results.json").read_text())["steps"] == 3


def test_bad_arguments_are_clear_errors(ablation):
    cfg, train, evals, out, _ = ablation
    with pytest.raises(ValueError, match="steps"):
        run_ablation(cfg, 0, out, train, evals)
    with pytest.raises(ValueError, match="kind"):
        run_ablation(cfg, 3, out, train, evals, kinds=("sigma", "vq"))
    with pytest.raises(ValueError, match="evaluation clip"):
        run_ablation(cfg, 3, out, train, [])
    assert spread([Path(str(i)) for i in range(10)], 3) == [Path("0"), Path("3"), Path("6")]


@pytest.mark.slow
def test_evaluate_reports_wer_and_sim_of_reconstructions(ablation, real_speech_dir):
    """Whisper base + resemblyzer through vocoder_vae.evaluate on one real dev clip (tiny, untrained VAE)."""
    from evaluation.asr import build_asr
    from evaluation.speaker import build_sim
    from vocoder_vae.evaluate import evaluate, read_transcripts, summarize
    from vocoder_vae.model import AudioVAE

    _, _, evals, out, _ = ablation
    manifest = str(real_speech_dir / "dev" / "manifest.tsv")
    texts = read_transcripts(manifest)
    clip = evals[0]  # LJ001-0002: "in being comparatively modern."
    assert texts[clip] == "in being comparatively modern."
    vae = AudioVAE.from_pretrained(out / "sigma" / "release")
    rows = evaluate(
        vae, [clip], [0.0], asr=build_asr("whisper-base"), sim=build_sim("resemblyzer"), transcripts=texts
    )
    (row,) = rows
    assert row["orig_wer"] == 0.0  # Whisper gets the real recording right
    assert row["wer"] > row["orig_wer"] or "error" in row  # a 3-step VAE's output is not intelligible
    s = summarize(rows)["0.0"]
    assert s["wer_original"]["corpus_wer"] == 0.0 and s["wer_original"]["ref_words"] == 4
    assert s["targets_met"]["stoi >= 0.85"] is False
    if "error" not in row:
        assert -1.0 <= row["sim"] <= 1.0
        assert s["wer_gap"] == pytest.approx(row["wer"])
    with pytest.raises(ValueError, match="transcript"):
        evaluate(vae, [clip], [0.0], asr=object(), transcripts={})
