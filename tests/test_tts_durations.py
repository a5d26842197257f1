"""Phoneme durations by flat-start Viterbi (tts/phone_hmm.py, tts/durations.py): the units, the Viterbi search against brute force,
the output's invariants and bad inputs, and a real check: an aligner fitted on real speech (the shipped VAE's
latents) must find the splice of two clean utterances joined end to end, which a proportional split misses."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tts.durations import main
from tts.frontend import Frontend, Vocab
from tts.phone_hmm import SYMBOLS, PhoneAligner, features, units, viterbi

REPO = Path(__file__).resolve().parents[1]
VAE = REPO / "checkpoints" / "vae_small"
V = Vocab()
HOP = 640  # samples per latent frame of the shipped VAE (16 kHz, 25 Hz)


def test_units_group_stress_base_and_modifiers():
    ids = V.encode("ˈiːzi ɡˈoʊɪŋ, tʰe.")
    got = [
        (V.decode(ids[u.first : u.last + 1]), u.pause, V.symbols[u.cls] if not u.pause else "")
        for u in units(ids)
    ]
    assert got == [
        ("ˈiː", False, "i"),
        ("z", False, "z"),
        ("i", False, "i"),
        (" ", True, ""),
        ("ɡ", False, "ɡ"),
        ("ˈo", False, "o"),
        ("ʊ", False, "ʊ"),
        ("ɪ", False, "ɪ"),
        ("ŋ", False, "ŋ"),
        (", ", True, ""),  # a run of pause symbols is one unit
        ("tʰ", False, "t"),
        ("e", False, "e"),
        (".", True, ""),
    ]
    assert units(ids)[-1].cls == len(SYMBOLS)  # the pause class
    # marks with nothing to attach to join a neighbour; the units always cover every symbol in order
    for text in ["ˈ,ːa", "ab ˈ", "ˈ", "ːa", "<unk>"]:
        ids = V.encode(text) if text != "<unk>" else [0]
        us = units(ids)
        assert us[0].first == 0 and us[-1].last == len(ids) - 1
        assert all(b.first == a.last + 1 for a, b in zip(us, us[1:]))
    assert [u.pause for u in units([0, 0])] == [False, False]  # <unk> is a phone


def _brute_force(ll: np.ndarray, skip: np.ndarray) -> float:
    """Best score over every non-decreasing state sequence that visits all non-skippable states."""
    T, S = ll.shape
    hard = set(np.nonzero(~skip)[0].tolist())
    best = -np.inf
    for path in itertools.combinations_with_replacement(range(S), T):
        if hard <= set(path):
            best = max(best, float(ll[np.arange(T), list(path)].sum()))
    return best


def test_viterbi_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(40):
        T, S = int(rng.integers(1, 7)), int(rng.integers(1, 6))
        skip = rng.random(S) < 0.5
        if (~skip).sum() > T:
            skip[:] = True
        ll = rng.normal(size=(T, S))
        path, score = viterbi(ll, skip)
        assert score == pytest.approx(_brute_force(ll, skip))
        assert score == pytest.approx(ll[np.arange(T), path].sum())
        assert np.all(np.diff(path) >= 0) and set(np.nonzero(~skip)[0]) <= set(path.tolist())


def test_features_normalise_per_utterance():
    z = torch.randn(50, 32) * 3 + 5
    x = features(z)
    assert x.shape == (50, 32) and np.allclose(x.mean(0), 0) and np.allclose(x.std(0), 1)
    assert features(z, deltas=True).shape == (50, 64)


# --- real speech: the shipped VAE's latents of LibriSpeech clips


def _levels(wav: np.ndarray) -> np.ndarray:
    """Energy of each latent frame's samples, dB below the loudest frame."""
    n = len(wav) // HOP
    db = 10 * np.log10((wav[: n * HOP].reshape(n, HOP) ** 2).mean(1) + 1e-12)
    return db - db.max()


@pytest.fixture(scope="module")
def real(real_speech_dir):
    """Latents and phoneme ids of 40 short LibriSpeech clips (training) and of 12 more held-out clips with a low
        noise floor, trimmed to the first and last two frames in a row above -25 dB (so each starts and ends with
    speech)."""
    if not (VAE / "model.safetensors").is_file():
        pytest.skip("shipped VAE release missing")
    from tts.data import load_audio
    from tts.manifests import real_speech
    from vocoder_vae.model import AudioVAE

    vae, fe = AudioVAE.from_pretrained(VAE), Frontend("en-us")
    rows = sorted((r for r in real_speech(real_speech_dir) if r.duration >= 3.0), key=lambda r: r.duration)
    train, held = [], []
    with torch.inference_mode():
        for r in rows:
            wav, sr = load_audio(r)
            assert sr == 16000
            if len(train) < 40:
                train.append((vae.encode(torch.from_numpy(wav), sr), fe.encode(r.text)))
                continue
            db = _levels(wav)
            if np.percentile(db, 10) > -40:  # a noisy recording: its edges are not silent
                continue
            on = np.nonzero((db[:-1] > -25) & (db[1:] > -25))[0]  # 2 loud frames in a row: not a click
            wav = wav[on[0] * HOP : (on[-1] + 2) * HOP]
            held.append((vae.encode(torch.from_numpy(wav), sr), fe.encode(r.text)))
            if len(held) == 12:
                break
    return {"train": train, "held": held, "vae": vae, "rows": rows}


@pytest.fixture(scope="module")
def aligner(real):
    a = PhoneAligner()
    a.fit(real["train"], iterations=8, progress=False)
    return a


def test_training_raises_the_likelihood_also_on_held_out_speech(real, aligner):
    h = aligner.history
    assert len(h) == 9 and all(b >= a - 1e-9 for a, b in zip(h, h[1:]))  # Viterbi training never falls
    assert h[-1] > h[0] + 5  # nats per frame over the flat start (measured: -45.1 -> -34.7)
    flat = PhoneAligner()
    flat.fit(real["train"], iterations=0, progress=False)
    gain = [aligner.loglik(z, ids) - flat.loglik(z, ids) for z, ids in real["held"]]
    assert min(gain) > 1, gain  # nats per frame on each held-out clip (measured: 2.7 to 6.5)


def test_the_splice_of_two_utterances_is_found(real, aligner):
    """A's latents + B's latents with phonemes A + space + B: the space's pause unit must sit at the splice.
    Tolerance 4 frames (160 ms, about 2 phones at the ~1.9 frames per phone unit of our data): the VAE frame
    (40 ms) and its encoder context smear an abrupt splice over a frame or so. Measured: every error within 1
    frame (within 4 when fitted on 30 to 50 clips); a proportional split (what the flat start assumes) misses most
    of these splices by 7-55 frames."""
    held, errors, proportional = real["held"], [], []
    for i in range(0, len(held), 2):
        for (za, ia), (zb, ib) in [(held[i], held[i + 1]), (held[i + 1], held[i])]:
            ids = ia + [1] + ib
            d = aligner.align(torch.cat([za, zb]), ids)
            assert d.sum() == len(za) + len(zb)
            junction = next(u for u in units(ids) if u.first <= len(ia) <= u.last)
            a_end, b_start = int(d[: junction.first].sum()), int(d[: junction.last + 1].sum())
            errors.append((a_end - len(za), b_start - len(za)))
            phones_a = sum(not u.pause for u in units(ia))
            phones = sum(not u.pause for u in units(ids))
            proportional.append(round((len(za) + len(zb)) * phones_a / phones) - len(za))
    assert all(abs(e) <= 4 for pair in errors for e in pair), errors
    assert sum(abs(p) > 4 for p in proportional) >= len(proportional) // 2, proportional


def test_durations_per_symbol(real, aligner):
    for z, ids in real["held"][:4]:
        d = aligner.align(z, ids)
        assert d.dtype == np.int64 and d.shape == (len(ids),) and d.sum() == len(z)
        us = units(ids)
        last = {u.last for u in us}
        assert all(
            d[i] == 0 for i in range(len(ids)) if i not in last
        )  # a unit's frames go to its last symbol
        assert all(d[u.last] >= 1 for u in us if not u.pause)  # every phone unit gets a frame
        assert all(d[i] == 0 for i, s in enumerate(ids) if V.symbols[s] in "ˈˌ")
    z = real["held"][0][0][:40]
    ids = V.encode("ˈiːzi ɡˈoʊɪŋ")
    d = aligner.align(z, ids)
    assert d[0] == 0 and d[1] == 0 and d[2] >= 1  # stress and vowel 0; the length mark gets the unit's frames


def test_too_few_frames_fall_back_and_bad_input_raises(real, aligner):
    z, ids = real["held"][0]
    for T in (1, 3, 10):  # fewer frames than phone units: units may take no frame, no crash
        d = aligner.align(z[:T], ids)
        assert d.shape == (len(ids),) and d.sum() == T and d.min() >= 0
    with pytest.raises(ValueError, match="empty phoneme ids"):
        aligner.align(z, [])
    with pytest.raises(ValueError, match="out of range"):
        aligner.align(z, [12, len(SYMBOLS)])
    with pytest.raises(ValueError, match="out of range"):
        aligner.align(z, [-1, 12])
    with pytest.raises(ValueError, match=r"must be \[T, D\]"):
        aligner.align(z[0], ids)
    with pytest.raises(ValueError, match=r"must be \[T, D\]"):
        aligner.align(z[None], ids)
    with pytest.raises(ValueError, match="NaN"):
        aligner.align(torch.full((5, 32), float("nan")), ids)
    with pytest.raises(ValueError, match="not fitted"):
        PhoneAligner().align(z, ids)


def test_saved_model_and_worker_processes_give_the_same_alignments(real, aligner, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(aligner.to_dict()))
    again = PhoneAligner.from_dict(json.loads((tmp_path / "a.json").read_text()))
    pairs = real["held"][:4]
    expect = [aligner.align(z, ids) for z, ids in pairs]
    assert all(np.array_equal(a, b) for a, b in zip(expect, [again.align(z, ids) for z, ids in pairs]))
    assert all(np.array_equal(a, b) for a, b in zip(expect, aligner.align_many(pairs, workers=2)))
    one, two = PhoneAligner(), PhoneAligner()
    h1 = one.fit(real["train"][:10], iterations=2, progress=False)
    h2 = two.fit(real["train"][:10], iterations=2, progress=False, workers=2)
    assert np.allclose(h1, h2) and np.allclose(one.means, two.means)


def test_cli_writes_durations_for_a_latent_store(real, tmp_path, capsys):
    from tts.data import LatentStore, extract_latents

    rows = real["rows"][:6]
    extract_latents(rows, real["vae"], tmp_path / "lat", progress=False)
    fe = Frontend("en-us")
    phonemes = {r.id: fe.encode(r.text) for r in rows}
    phonemes["no-latents"] = [12, 13]
    (tmp_path / "lat" / "phonemes.json").write_text(json.dumps(phonemes))
    main(["--latents", str(tmp_path / "lat"), "--iterations", "3", "--workers", "1"])
    out = capsys.readouterr().out
    assert "6 utterances (1 without latents skipped)" in out and "log-likelihood per frame" in out
    durations = json.loads((tmp_path / "lat" / "durations.json").read_text())
    store = LatentStore(tmp_path / "lat")
    assert sorted(durations) == sorted(r.id for r in rows)
    assert all(
        len(durations[u]) == len(phonemes[u]) and sum(durations[u]) == store.frames(u) for u in durations
    )
    model = PhoneAligner.from_dict(json.loads((tmp_path / "lat" / "aligner.json").read_text()))
    assert len(model.history) == 4
    # --manifest phonemizes the texts into the store's phonemes.json first (the cache tts.train reads)
    from tts.manifests import write_jsonl

    (tmp_path / "lat" / "phonemes.json").unlink()
    write_jsonl(rows, tmp_path / "m.jsonl")
    main(["--latents", str(tmp_path / "lat"), "--manifest", str(tmp_path / "m.jsonl"), "--iterations", "2"])
    assert "6 utterances (0 without latents skipped)" in capsys.readouterr().out
    cached = json.loads((tmp_path / "lat" / "phonemes.json").read_text())
    assert cached == {u: v for u, v in phonemes.items() if u != "no-latents"}
    with pytest.raises(SystemExit, match="--manifest"):
        (tmp_path / "lat" / "phonemes.json").unlink()
        main(["--latents", str(tmp_path / "lat")])


def test_cli_aligns_with_a_given_aligner(real, aligner, tmp_path, capsys):
    """--aligner DIR times a new store with an aligner already fitted (a release's), without fitting one."""
    from tts.data import LatentStore, extract_latents

    rows = real["rows"][:4]
    extract_latents(rows, real["vae"], tmp_path / "lat", progress=False)
    fe = Frontend("en-us")
    phonemes = {r.id: fe.encode(r.text) for r in rows}
    (tmp_path / "lat" / "phonemes.json").write_text(json.dumps(phonemes))
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / "aligner.json").write_text(json.dumps(aligner.to_dict()))
    main(["--latents", str(tmp_path / "lat"), "--aligner", str(tmp_path / "given"), "--workers", "1"])
    assert "4 utterances" in capsys.readouterr().out
    durations = json.loads((tmp_path / "lat" / "durations.json").read_text())
    store = LatentStore(tmp_path / "lat")
    for r in rows:  # exactly the given aligner's alignments
        assert durations[r.id] == aligner.align(store.get(r.id), phonemes[r.id]).tolist()
    saved = json.loads((tmp_path / "lat" / "aligner.json").read_text())
    assert saved == json.loads(json.dumps(aligner.to_dict()))  # written back unchanged: nothing was fitted
    with pytest.raises(SystemExit, match="no aligner.json"):
        main(["--latents", str(tmp_path / "lat"), "--aligner", str(tmp_path)])


def test_the_end_of_a_prefix_is_found(real, aligner):
    """A's latents alone, with the phonemes of A + space + B (a continuation prompt and its whole text): the
    open-ended alignment must end in A's last units, and put A's symbol boundaries where aligning A alone does,
    within the splice test's tolerance."""
    held, misses = real["held"], []
    for i in range(0, len(held), 2):
        (za, ia), (_, ib) = held[i], held[i + 1]
        ids = ia + [1] + ib
        d, k = aligner.align_prefix(za, ids)
        assert d.sum() == len(za) and d[len(ia) + 1 :].sum() == 0
        us = units(ids)
        last_a = max(j for j, u in enumerate(us) if u.last < len(ia))
        misses.append(k - last_a)
        # the boundaries before the path's last 3 units: an open end has no reason to visit A's final phones
        # (the path ends 0-2 units early, those phones absorbed by the one before; measured: -1, -1, 0, -1, -6,
        # -2; the -6 is a clip cut right after its last word, "individual", whose phones the whole-clip
        # alignment squeezes into a frame each)
        whole = aligner.align(za, ia)
        n = us[min(k, last_a) - 2].first
        ends = np.cumsum(d[:n]) - np.cumsum(whole[:n])
        assert np.abs(ends).max() <= 4, ends
    assert sum(-2 <= m <= 1 for m in misses) >= len(misses) - 1, misses  # A's last three units or the pause
    assert min(misses) >= -8 and max(misses) <= 1, misses
    with pytest.raises(ValueError, match="not fitted"):
        PhoneAligner().align_prefix(held[0][0], held[0][1])


def test_one_clip_speakers_are_cut_into_utterances_at_word_gaps(real, aligner, tmp_path, capsys):
    """python -m tts.split_speakers: the longest real clips (one per speaker) become pieces of at most 5 s cut in
    word gaps; each piece's text is its span of the written words (together, the clip's words in order), its
    audio the matching span of the clip (together, the whole clip), its speaker the clip's."""
    from tts.data import extract_latents, load_audio
    from tts.manifests import read_jsonl, write_jsonl
    from tts.split_speakers import main as split_main

    rows = real["rows"][-3:]  # the longest clips (> 10 s), three speakers with one clip each
    assert all(r.duration > 10 for r in rows) and len({r.speaker for r in rows}) == 3
    lat = tmp_path / "lat"
    extract_latents(rows, real["vae"], lat, progress=False)
    (lat / "aligner.json").write_text(json.dumps(aligner.to_dict()))
    write_jsonl(rows, tmp_path / "m.jsonl")
    split_main(
        ["--manifest", str(tmp_path / "m.jsonl"), "--latents", str(lat), "--out", str(tmp_path / "out")]
    )
    assert "'cut': 3" in capsys.readouterr().out
    pieces = read_jsonl(tmp_path / "out" / "train.jsonl")
    for r in rows:
        mine = [p for p in pieces if p.meta.get("piece_of") == r.id]
        assert len(mine) >= 3 and [p.id for p in mine] == [f"{r.id}-p{k}" for k in range(len(mine))]
        assert all(p.speaker == r.speaker and p.duration <= 5.0 + 1.5 for p in mine)
        assert " ".join(p.text for p in mine).split() == r.text.split()
        wav, sr = load_audio(r)
        audio = np.concatenate([sf.read(p.audio, dtype="float32")[0] for p in mine])
        assert len(audio) == len(wav) and np.abs(audio - wav).max() < 1e-4  # 16-bit pieces of the clip
    assert (lat / "phonemes.json").is_file()  # the phonemes training will read
