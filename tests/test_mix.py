"""Mixing manifests for training (tts.mix): real rows beside another corpus, each clip once, no speaker id shared
between two corpora, held-out dev speakers refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tts.manifests import read_jsonl, write_jsonl
from tts.mix import main, mix
from tts.real_voices import Holdout, split

SUBSETS = ("librispeech_dev-clean-2", "speechocean762")
PLAN = (Holdout("librispeech_dev-clean-2", 1, min_utts=3), Holdout("speechocean762", 1, min_utts=3))


@pytest.fixture(scope="module")
def real(real_speech_dir):
    return split(real_speech_dir, SUBSETS, PLAN)  # (train rows, dev rows) of in-repo real clips


def _other_corpus(rows):
    """The same clips as another corpus would name them: new ids and speakers."""
    return [replace(r, id=f"syn-{r.id}", speaker=f"syn-{r.speaker}", source="synthetic") for r in rows]


def test_mix_keeps_order_and_drops_repeated_rows(real):
    train, _ = real
    other = _other_corpus(train[:3])
    out = mix([train, other + train[:2]], ["real", "other"])  # train[:2] again: the same rows, dropped
    assert [r.id for r in out] == [r.id for r in train] + [r.id for r in other]


def test_mix_refuses_one_id_for_two_clips_and_shared_speakers(real):
    train, _ = real
    clash = [replace(train[0], audio=train[1].audio)]
    with pytest.raises(ValueError, match="names another clip"):
        mix([train, clash])
    shared = [replace(_other_corpus(train[:1])[0], speaker=train[0].speaker)]
    with pytest.raises(ValueError, match=f"speaker {train[0].speaker!r} is in"):
        mix([train, shared], ["real", "synthetic"])


def test_cli_writes_the_mix_and_refuses_heldout_speakers(real, tmp_path, capsys):
    train, dev = real
    a, b, out = tmp_path / "real.jsonl", tmp_path / "other.jsonl", tmp_path / "mix" / "train.jsonl"
    write_jsonl(train, a)
    write_jsonl(_other_corpus(train), b)
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n".join(sorted({r.speaker for r in dev})) + "\n")
    main([str(a), str(b), "--heldout", str(heldout), "--out", str(out)])
    assert len(read_jsonl(out)) == 2 * len(train)
    assert f"wrote {2 * len(train)} utterances" in capsys.readouterr().out

    write_jsonl(_other_corpus(train) + dev, b)  # a dev speaker slipped into the other corpus
    with pytest.raises(SystemExit) as e:
        main([str(a), str(b), "--heldout", str(heldout), "--out", str(tmp_path / "bad.jsonl")])
    assert e.value.code == 2
    assert "held-out dev speakers" in capsys.readouterr().err
    assert not (tmp_path / "bad.jsonl").exists()
