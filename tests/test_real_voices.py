"""Real multi-utterance voices: the speaker-disjoint dev split, its evaluation jobs, the trainer's guard, and
cross-sentence training pairs built from real speakers (tts.real_voices, tts.data.PromptTargetDataset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from tts.data import LatentStore, PromptTargetDataset, extract_latents
from tts.frontend import Frontend
from tts.manifests import _tsv, by_speaker, write_jsonl
from tts.real_voices import Holdout, check_no_heldout, dev_jobs, heldout_speakers, main, read_heldout, split

REPO = Path(__file__).resolve().parents[1]
SUBSETS = ("librispeech_dev-clean-2", "speechocean762")
# the in-repo clips hold 3 speakers x 3 utterances per folder: hold out one native reader and two speechocean762
# speakers of that corpus's test split (one woman, one man)
PLAN = (
    Holdout("librispeech_dev-clean-2", 1, min_utts=3),
    Holdout("speechocean762", 2, min_utts=3, by_gender=True, corpus_split="test"),
)


@pytest.fixture(scope="module")
def parts(real_speech_dir):
    return split(real_speech_dir, SUBSETS, PLAN)


def test_split_holds_out_whole_speakers(real_speech_dir, parts):
    train, dev = parts
    train_spk, dev_spk = set(by_speaker(train)), set(by_speaker(dev))
    assert len(dev_spk) == 3 and not train_spk & dev_spk
    assert len(train) + len(dev) == 18  # every row lands on exactly one side
    # per folder as planned, and speechocean762's pick is one woman and one man
    assert sum(s.startswith("so762_") for s in dev_spk) == 2
    genders = {
        r["speaker_id"]: r["gender"] for r in _tsv(real_speech_dir / "speechocean762" / "speakers.tsv")
    }
    assert sorted(genders[s] for s in dev_spk if s.startswith("so762_")) == ["f", "m"]
    # stable: the same speakers on a second call (a hash of the id, not the order of the files)
    assert heldout_speakers(real_speech_dir, train + dev, PLAN) == heldout_speakers(
        real_speech_dir, list(reversed(train + dev)), PLAN
    )


def test_too_few_speakers_is_a_clear_error(real_speech_dir):
    with pytest.raises(ValueError, match="only 3 speakers qualify"):
        split(real_speech_dir, SUBSETS, (Holdout("librispeech_dev-clean-2", 4, min_utts=3),))


def test_dev_jobs_are_cross_sentence(parts):
    _, dev = parts
    jobs = dev_jobs(dev, targets_per_speaker=2)
    rows = {r.id: r for r in dev}
    assert len(jobs) == 6  # 3 speakers x 2 targets (each has 3 utterances: 1 prompt + 2)
    for j in jobs:
        target = rows[j["id"]]
        prompt = next(r for r in dev if r.audio == j["prompt_audio"])
        assert prompt.id != target.id and prompt.speaker == target.speaker == j["speaker"]
        assert j["text"] == target.text and j["prompt_text"] == prompt.text and j["ref_audio"] == target.audio
        assert sf.info(j["prompt_audio"]).duration > 2.0
    # one prompt per speaker
    assert len({j["prompt_audio"] for j in jobs}) == 3


def test_trainer_refuses_heldout_rows(tmp_path, parts):
    train, dev = parts
    held = tmp_path / "heldout.txt"
    held.write_text("# dev speakers\n" + "\n".join(sorted(by_speaker(dev))) + "\n\n")
    assert read_heldout(held) == set(by_speaker(dev))
    check_no_heldout(train, read_heldout(held))  # the split's train side passes
    with pytest.raises(ValueError, match="held-out dev speakers"):
        check_no_heldout(train + dev[:1], read_heldout(held))
    # the trainer's CLI applies it before any training work
    from tts.train import main as train_main

    manifest = tmp_path / "train.jsonl"
    write_jsonl(train + dev[:1], manifest)
    with pytest.raises(ValueError, match="held-out dev speakers"):
        train_main(
            [
                str(REPO / "recipes/demo/tts_small.yaml"),
                f"data.manifest={manifest}",
                f"data.latents={tmp_path / 'latents'}",
                f"data.heldout_speakers={held}",
                f"out_dir={tmp_path / 'run'}",
            ]
        )


def test_cli_writes_the_split(tmp_path, real_speech_dir):
    # the default plan reads four folders: the in-repo copy lacks Kathleen's, and says so
    with pytest.raises(ValueError, match="kathleen_arctic/manifest.tsv not found"):
        main([str(real_speech_dir), "--out", str(tmp_path / "x")])
    main([str(real_speech_dir), "--out", str(tmp_path / "rv"), "--targets-per-speaker", "1"], SUBSETS, PLAN)
    out = tmp_path / "rv"
    held = read_heldout(out / "heldout.txt")
    jobs = [json.loads(x) for x in (out / "dev_jobs.jsonl").read_text().splitlines()]
    assert len(held) == 3 and len(jobs) == 3 and {j["speaker"] for j in jobs} == held
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert train and not {r["speaker"] for r in train} & held


@pytest.mark.slow
def test_real_speakers_give_cross_sentence_pairs(tmp_path, parts):
    """Real training rows become prompt/target pairs of two different utterances of the same real person."""
    from vocoder_vae.model import AudioVAE

    train, dev = parts
    vae = AudioVAE.from_pretrained(REPO / "checkpoints/vae_small")
    assert extract_latents(train, vae, tmp_path / "lat", progress=False) == len(train)
    store = LatentStore(tmp_path / "lat")
    fe = Frontend("en-us")
    ids = dict(zip([r.id for r in train], fe.encode_batch([r.text for r in train])))
    ds = PromptTargetDataset(train, store, ids, p_prefix=0.0, max_prompt_frames=150)
    held = set(by_speaker(dev))
    speaker = {r.id: r.speaker for r in train}
    for i in range(len(ds)):
        item = ds[i]
        assert item["mode"] == "speaker"
        assert item["prompt_id"] != item["id"] and speaker[item["prompt_id"]] == speaker[item["id"]]
        assert speaker[item["id"]] not in held
        assert item["prompt_latents"].shape[0] == min(store.frames(item["prompt_id"]), 150)
        assert item["target_latents"].shape[0] == store.frames(item["id"])

