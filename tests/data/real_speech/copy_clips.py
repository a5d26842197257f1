"""Rebuild tests/data/real_speech/ from the team's full real speech folder (a copy, never a re-encoding).

    python tests/data/real_speech/copy_clips.py PATH/TO/shared/data/real_speech

Copies the clips named below byte for byte, writes each sub-folder's manifest.tsv with only their rows (header and
row order kept), the matching rows of SPEAKERS.TXT / speakers.tsv, LibriSpeech's LICENSE.TXT, and
``transcripts.tsv``: the transcripts (text only) of every row of the full train-clean-100 and dev manifests, so
the front-end test still reads all 297 of them. README.md says why each clip is here.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent

# test_tts_durations: its 40 training clips (the shortest >= 3 s) and the 12 held-out clips with a low noise floor
DURATIONS_TRAIN = """
1624-142933-0000 8797-294123-0000 2764-36616-0000 118-121721-0000 7367-86737-0000 839-130898-0000
6385-220959-0000 5514-19192-0000 7312-92432-0000 4441-76250-0000 6081-41997-0000 5456-24741-0000
211-122425-0000 3699-175950-0000 254-12312-0000 201-122255-0000 481-123719-0000 1363-135842-0000
6415-100596-0000 6880-216547-0000 1183-124566-0000 7511-102419-0000 1963-142393-0000 2518-154825-0000
3607-135982-0000 730-358-0000 4214-7146-0000 8629-261139-0000 1455-134435-0000 1034-121119-0000
3259-158083-0000 4640-19187-0000 7278-104730-0000 4340-15220-0000 8088-284756-0000 4014-186175-0000
7148-59157-0000 2989-138028-0000 5049-25947-0000 26-495-0000
""".split()
DURATIONS_HELD = """
6181-216552-0000 1088-129236-0000 5867-48852-0000 5463-39173-0000 1553-140047-0000 6209-34599-0000
4137-11701-0000 7635-105409-0000 1355-39947-0000 3486-166424-0000 4267-287369-0000 831-130739-0000
""".split()
SHORTEST = 10  # test_tts_data / test_tts_extract: the shortest clips of the folder (all under 3 s)
LONG = ["103-1240-0000"]  # 14.1 s: test_vocoder_vae, test_evaluation_protocol (outside 4-10 s)

DEV = [f"coqui__LJ001-000{i}.wav" for i in range(1, 7)] + [
    "coqui__LJ001-0011.wav",  # examples/lj_LJ001-0011.wav (test_app checks the examples' transcripts)
    "lhotse__LJ002-0020.wav",  # tests.helpers.make_tiny_corpus: the two shortest clips of each speaker
    "lhotse__LJ002-0035.wav",
    *[f"pyroomacoustics__cmu_arctic_us_aew_a000{i}.wav" for i in range(1, 4)],
    *[f"pyroomacoustics__cmu_arctic_us_axb_a000{i}.wav" for i in range(4, 7)],
    "whisper__jfk.flac",  # 44.1 kHz stereo 24-bit: test_evaluation_core
]
# several utterances per real person (tts.real_voices): 3 speakers x their 3 shortest utterances, each speaker
# with one clip of >= 3 s to serve as a prompt
MULTI = {
    "librispeech_dev-clean-2": ["1272", "2428", "5338"],  # M, M, F
    "speechocean762": ["so762_2488", "so762_2438", "so762_2892"],  # f, f, m; all of the corpus's test split
}


def _read(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return list(r.fieldnames or []), list(r)


def _write(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Tab-joined lines, no quoting (the fields hold no tabs or newlines; some LJSpeech text holds '"')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(fields)] + ["\t".join(r[k] for k in fields) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _copy(src: Path, sub: str, keep: list[dict], out: Path) -> None:
    fields, _ = _read(src / sub / "manifest.tsv")
    for r in keep:
        (out / sub / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / sub / r["file"], out / sub / r["file"])
    _write(out / sub / "manifest.tsv", fields, keep)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, help="the full real speech folder (shared/data/real_speech)")
    p.add_argument("--out", type=Path, default=HERE)
    a = p.parse_args(argv)
    src, out = a.source, a.out

    sub = "librispeech_train-clean-100"
    _, ls = _read(src / sub / "manifest.tsv")
    want = set(DURATIONS_TRAIN + DURATIONS_HELD + LONG)
    want |= {r["utterance_id"] for r in sorted(ls, key=lambda r: float(r["duration_s"]))[:SHORTEST]}
    keep = [r for r in ls if r["utterance_id"] in want]
    assert len(keep) == len(want), sorted(want - {r["utterance_id"] for r in keep})
    _copy(src, sub, keep, out)
    shutil.copyfile(src / sub / "LICENSE.TXT", out / sub / "LICENSE.TXT")
    speakers = {r["speaker_id"] for r in keep}
    lines = (src / sub / "SPEAKERS.TXT").read_text(encoding="utf-8").splitlines()
    lines = [ln for ln in lines if ln.startswith(";") or ln.split("|")[0].strip() in speakers]
    (out / sub / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n", encoding="utf-8")

    _, dev = _read(src / "dev" / "manifest.tsv")
    keep = [r for r in dev if r["file"] in DEV]
    assert len(keep) == len(DEV)
    _copy(src, "dev", keep, out)

    for sub, spk in MULTI.items():
        _, rows = _read(src / sub / "manifest.tsv")
        pick = set()
        for s in spk:
            mine = sorted((r for r in rows if r["speaker_id"] == s), key=lambda r: float(r["duration_s"]))
            pick |= {r["file"] for r in mine[:3]}
        _copy(src, sub, [r for r in rows if r["file"] in pick], out)
        if (src / sub / "speakers.tsv").exists():
            fields, info = _read(src / sub / "speakers.tsv")
            _write(out / sub / "speakers.tsv", fields, [r for r in info if r["speaker_id"] in spk])

    texts = [
        {"subset": s, "utterance_id": r["utterance_id"], "transcript": r["transcript"]}
        for s in ("librispeech_train-clean-100", "dev")
        for r in _read(src / s / "manifest.tsv")[1]
    ]
    _write(out / "transcripts.tsv", ["subset", "utterance_id", "transcript"], texts)


if __name__ == "__main__":
    main()
