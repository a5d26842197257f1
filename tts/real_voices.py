"""Real voices with several utterances each: the training rows and a held-out real-voice dev set.

    python -m tts.real_voices REAL_SPEECH_DIR --out data/real_voices

Zero-shot cloning is taught by cross-sentence pairs: the prompt is one utterance of a person, the target another
(tts.data.PromptTargetDataset pairs rows of the same speaker). The team's real speech folder holds real people
with several utterances (Mini LibriSpeech dev-clean-2, speechocean762, Kathleen) besides the one-clip
LibriSpeech train-clean-100 speakers. This module splits them by SPEAKER, never by utterance:

- held out (``HOLDOUT``): whole speakers from each multi-utterance folder, chosen by a stable hash of the speaker
  id (the same on every machine): 5 native LibriSpeech readers, 6 non-native speechocean762 adults from that
  corpus's own test split (3 women, 3 men) and Kathleen; 12 speakers, each with a prompt and targets. The one-clip
  train-clean-100 speakers cannot give a prompt and a different target, so none is held out from that folder;
  ``dev/`` (LJSpeech, CMU ARCTIC, JFK) stays the older held-out set and is never read here.
- train: every other row of ``TRAIN_SUBSETS``.

Writes ``OUT/train.jsonl`` (manifest rows to train on), ``OUT/dev.jsonl`` (the held-out speakers' rows),
``OUT/dev_jobs.jsonl`` (evaluation jobs: for each held-out speaker one prompt utterance and up to
``targets_per_speaker`` other utterances as targets, in evaluation/'s job format) and ``OUT/heldout.txt``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tts.manifests import Utterance, _tsv, by_speaker, real_speech, write_jsonl

TRAIN_SUBSETS = (
    "librispeech_train-clean-100",
    "librispeech_dev-clean-2",
    "speechocean762",
    "kathleen_arctic",
)


@dataclass(frozen=True)
class Holdout:
    """How many whole speakers one folder gives the dev set, from those with at least ``min_utts`` rows."""

    subset: str
    n: int
    min_utts: int = 4
    by_gender: bool = False  # half women, half men (speechocean762's speakers.tsv)
    corpus_split: str | None = None  # only speakers of this split of the corpus (speechocean762: "test")


HOLDOUT = (
    Holdout("librispeech_dev-clean-2", 5),
    Holdout("speechocean762", 6, min_utts=4, by_gender=True, corpus_split="test"),
    Holdout("kathleen_arctic", 1),
)


def _stable_key(speaker: str) -> str:
    return hashlib.sha1(speaker.encode()).hexdigest()


def _speaker_info(root: Path, subset: str) -> dict[str, dict]:
    path = root / subset / "speakers.tsv"
    if not path.exists():
        return {}
    return {r["speaker_id"]: r for r in _tsv(path)}


def heldout_speakers(
    root: str | Path, rows: Sequence[Utterance], plan: Sequence[Holdout] = HOLDOUT
) -> list[str]:
    """The held-out speakers of ``rows`` (real_speech rows of ``root``), in a stable order."""
    root = Path(root)
    chosen: list[str] = []
    for h in plan:
        spk = by_speaker(r for r in rows if r.source == f"real_speech/{h.subset}")
        info = _speaker_info(root, h.subset)
        cands = sorted((s for s, rs in spk.items() if len(rs) >= h.min_utts), key=_stable_key)
        if h.corpus_split is not None:
            cands = [s for s in cands if info.get(s, {}).get("split") == h.corpus_split]
        if h.by_gender:
            women = [s for s in cands if info.get(s, {}).get("gender") == "f"]
            men = [s for s in cands if info.get(s, {}).get("gender") == "m"]
            pick = women[: (h.n + 1) // 2] + men[: h.n // 2]
        else:
            pick = cands[: h.n]
        if len(pick) < h.n:
            raise ValueError(
                f"{h.subset}: only {len(pick)} speakers qualify for the dev set (wanted {h.n} with >= "
                f"{h.min_utts} utterances); is {root / h.subset} complete?"
            )
        chosen += pick
    return chosen


def split(
    root: str | Path, subsets: Sequence[str] = TRAIN_SUBSETS, plan: Sequence[Holdout] = HOLDOUT
) -> tuple[list[Utterance], list[Utterance]]:
    """(train rows, held-out rows) of the real speech folder ``root``: disjoint in speakers."""
    rows = real_speech(root, subsets)
    held = set(heldout_speakers(root, rows, [h for h in plan if h.subset in subsets]))
    return [r for r in rows if r.speaker not in held], [r for r in rows if r.speaker in held]


def read_heldout(path: str | Path) -> set[str]:
    """Speaker ids of a heldout.txt (one per line; blank lines and '#' comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"held-out speaker list {path} not found (python -m tts.real_voices writes heldout.txt)"
        )
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return {ln for ln in lines if ln}


def check_no_heldout(rows: Sequence[Utterance], heldout: set[str]) -> None:
    """Refuse training rows of held-out speakers, naming them."""
    def speakers(r: Utterance) -> set[str]:  # a perturbed copy (tts.perturb) also answers for its source speaker
        src = r.meta.get("perturbed_from") or {}
        return {r.speaker, src.get("speaker", r.speaker)}

    bad = sorted({s for r in rows for s in speakers(r) & heldout})
    if bad:
        n = sum(bool(speakers(r) & heldout) for r in rows)
        raise ValueError(
            f"{n} training rows belong to held-out dev speakers {bad[:8]}{' ...' if len(bad) > 8 else ''}: "
            "remove them from the manifest (python -m tts.real_voices writes a train.jsonl without them)"
        )


def dev_jobs(
    rows: Sequence[Utterance],
    targets_per_speaker: int = 3,
    prompt_seconds: tuple[float, float] = (3.0, 8.0),
    max_target_seconds: float = 12.0,
) -> list[dict]:
    """Cross-sentence evaluation jobs: per speaker one prompt (the first utterance, in id order, whose length is
    inside ``prompt_seconds``; else the one closest to it) and up to ``targets_per_speaker`` other utterances
    of at most ``max_target_seconds`` as targets. Job format of evaluation/ (recipes/demo/make_eval_jobs.py)."""
    lo, hi = prompt_seconds
    jobs = []
    for spk, utts in sorted(by_speaker(rows).items()):
        utts = sorted(utts, key=lambda u: u.id)
        inside = [u for u in utts if lo <= u.duration <= hi]
        prompt = (
            inside[0] if inside else min(utts, key=lambda u: min(abs(u.duration - lo), abs(u.duration - hi)))
        )
        targets = [u for u in utts if u.id != prompt.id and u.duration <= max_target_seconds]
        for t in targets[:targets_per_speaker]:
            jobs.append(
                {
                    "id": t.id,
                    "text": t.text,
                    "prompt_audio": prompt.audio,
                    "prompt_text": prompt.text,
                    "out": f"{t.id}.wav",
                    "ref_audio": t.audio,
                    "speaker": spk,
                    "source": t.source,
                }
            )
    return jobs


def main(
    argv: list[str] | None = None, subsets: Sequence[str] = TRAIN_SUBSETS, plan: Sequence[Holdout] = HOLDOUT
) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="the real speech folder (manifest.tsv per sub-folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--targets-per-speaker", type=int, default=3)
    a = p.parse_args(argv)
    if not Path(a.root).is_dir():
        raise SystemExit(f"error: {a.root} is not a folder")
    train, dev = split(a.root, subsets, plan)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(train, out / "train.jsonl")
    write_jsonl(dev, out / "dev.jsonl")
    jobs = dev_jobs(dev, a.targets_per_speaker)
    (out / "dev_jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))
    held = sorted(by_speaker(dev))
    (out / "heldout.txt").write_text("\n".join(held) + "\n")
    mins = sum(r.duration for r in train) / 60
    print(
        f"train: {len(train)} utterances, {len(by_speaker(train))} speakers, {mins:.1f} min; "
        f"dev: {len(dev)} utterances of {len(held)} held-out speakers, {len(jobs)} jobs -> {out}"
    )


if __name__ == "__main__":
    main()
