"""evaluation/: audio loading, text normalisation, WER counts, the Whisper base assembly, backend errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from evaluation.audio import AudioError, load_audio, resample
from evaluation.normalize import (
    WordErrors,
    aggregate_cer,
    aggregate_wer,
    char_errors,
    normalize_text,
    word_errors,
)
from evaluation.whisper_base import WHISPER_BASE_SHA256, assemble, ensure_whisper_base, package_files

LS = "librispeech_train-clean-100"


def test_load_audio_any_rate_stereo_int(real_speech_dir, tmp_path):
    src = real_speech_dir / "dev" / "whisper__jfk.flac"  # 44.1 kHz stereo 24-bit
    wav, sr = load_audio(src)
    assert sr == 44100 and wav.ndim == 1 and wav.dtype == np.float32
    raw, _ = sf.read(str(src), always_2d=True)
    assert raw.shape[1] == 2
    np.testing.assert_allclose(wav, raw.mean(axis=1), atol=1e-6)  # downmix = channel mean
    w16, sr16 = load_audio(src, 16000)
    assert sr16 == 16000 and abs(len(w16) - round(len(wav) * 16000 / 44100)) <= 1
    # int16 WAV at 22.05 kHz reads back as float in [-1, 1]
    lj = real_speech_dir / "dev" / "coqui__LJ001-0002.wav"
    wav, sr = load_audio(lj)
    assert sr == 22050 and 0.05 < np.abs(wav).max() <= 1.0


def test_load_audio_errors_name_the_file(real_speech_dir, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(16000, dtype=np.float32), 16000)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 16000)
    for path, words in [
        (corrupt, "cannot decode"),
        (silent, "silent"),
        (empty, "empty"),
        (tmp_path / "missing.wav", "not found"),
    ]:
        with pytest.raises(AudioError, match=words) as e:
            load_audio(path)
        assert path.name in str(e.value)


def test_resample_preserves_a_tone():
    sr, f = 24000, 440.0
    t = np.arange(sr) / sr
    y = resample(np.sin(2 * np.pi * f * t).astype(np.float32), sr, 16000)
    spec = np.abs(np.fft.rfft(y))
    assert len(y) == 16000 and abs(np.argmax(spec) * 16000 / len(y) - f) < 2


def test_normalizer_matches_whisper_conventions():
    assert normalize_text("Mr. Smith paid, colour isn't it?") == "mister smith paid color is not it"
    assert normalize_text("TWENTY DOLLARS") == normalize_text("$20")
    # LibriSpeech reference style and an ASR hypothesis agree after normalisation
    assert normalize_text("CHAPTER NINETY NINE THE LAW") == normalize_text("Chapter 99. The law")


def test_word_errors_and_both_aggregates():
    a = word_errors("the cat sat on the mat", "the cat sit on mat")  # 1 sub, 1 del
    assert a == WordErrors(1, 1, 0, 6)
    b = word_errors("hello world", "hello big world")  # 1 ins
    assert b == WordErrors(0, 0, 1, 2)
    c = word_errors("one two three", "")  # empty hypothesis: all deletions
    assert c == WordErrors(0, 3, 0, 3)
    agg = aggregate_wer([a, b, c])
    assert agg["corpus_wer"] == pytest.approx((2 + 1 + 3) / (6 + 2 + 3))
    assert agg["mean_utterance_wer"] == pytest.approx((2 / 6 + 1 / 2 + 1.0) / 3)
    assert "corpus_wer_definition" in agg and "mean_utterance_wer_definition" in agg
    assert agg["word_recall"] == pytest.approx((11 - 2 - 3) / 11)  # insertions do not count
    with pytest.raises(ValueError, match="reference text is empty"):
        word_errors("", "something")


def test_char_errors_grade_near_misses_that_wer_counts_as_wrong():
    assert char_errors("the cat sat", "the cat sit") == (1, 11)
    assert char_errors("abc", "") == (3, 3)  # empty hypothesis: every character deleted
    near, far = word_errors("the cat sat", "da kat sad"), word_errors("the cat sat", "ten dogs ran")
    assert near.wer == far.wer == 1.0  # WER cannot tell these apart; CER can
    agg = aggregate_cer([("the cat sat", "da kat sad")])
    assert agg["corpus_cer"] < aggregate_cer([("the cat sat", "ten dogs ran")])["corpus_cer"]
    assert aggregate_cer([("ab", "ab"), ("abcd", "")])["corpus_cer"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="CER is undefined"):
        char_errors("", "x")


def test_whisper_base_sha256_detects_corruption(tmp_path):
    parts, _ = package_files()
    # a corrupt part: same length, one byte flipped -> the joined hash differs, nothing is left behind
    bad = tmp_path / "model.bin.part1"
    shutil.copyfile(parts[0], bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    dest = tmp_path / "out" / "model.bin"
    with pytest.raises(ValueError, match="sha256"):
        assemble([bad, parts[1]], dest)
    assert not dest.exists() and not list(dest.parent.glob("*.tmp"))

    # a corrupted cached model.bin is detected (stale stamp -> re-hash) and rebuilt from the packages
    cache = tmp_path / "cache"
    model = ensure_whisper_base(cache) / "model.bin"
    with open(model, "r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02\x03")
    ensure_whisper_base(cache)
    from evaluation.whisper_base import sha256_file

    assert sha256_file(model) == WHISPER_BASE_SHA256
    assert {p.name for p in cache.iterdir()} >= {
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
        "model.bin",
    }


def test_missing_checkpoints_say_what_to_download(tmp_path):
    from evaluation.asr import HubertConfig, HubertCTC, build_asr
    from evaluation.speaker import EcapaConfig, EcapaSIM, WavLMTDNNConfig, WavLMTDNNSIM, build_sim

    with pytest.raises(ValueError, match="hubert-large-ls960-ft"):
        HubertCTC(HubertConfig(checkpoint=str(tmp_path / "nope")))
    (tmp_path / "hf").mkdir()
    with pytest.raises(ValueError, match="lacks config.json"):
        HubertCTC(HubertConfig(checkpoint=str(tmp_path / "hf")))
    with pytest.raises(ValueError, match="spkrec-ecapa-voxceleb"):
        EcapaSIM(EcapaConfig(checkpoint_dir=str(tmp_path / "nope")))
    with pytest.raises(ValueError, match="wavlm_large_finetune.pth"):
        WavLMTDNNSIM(WavLMTDNNConfig(checkpoint=str(tmp_path / "nope.pth")))
    with pytest.raises(ValueError, match="unknown ASR backend"):
        build_asr("wav2letter")
    with pytest.raises(ValueError, match="unknown SIM backend"):
        build_sim("xvector")
    with pytest.raises(ValueError, match="not a CTranslate2 Whisper directory"):
        build_asr(f"whisper:{tmp_path}")
