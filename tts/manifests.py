"""Speech manifests: one JSONL row per utterance, built from corpora in their official layouts.

Row schema (every manifest in the project, read and written only through this module):

    {"id": str, "audio": path, "text": str, "speaker": str, "duration": float (s), "sample_rate": int,
     "source": str (corpus/subset), "transcript_source": "official" | "whisper-base" | "generated" | ...,
     "offset": float (s, optional: segment start inside a long recording, Libriheavy),
     "meta": dict (optional: how the row was made, e.g. the synthetic voice recipe)}

Builders (local directories in the official layouts):
    librispeech(root)   SPK/CHAP/SPK-CHAP-UTT.flac + SPK/CHAP/SPK-CHAP.trans.txt
    libritts(root)      SPK/CHAP/SPK_CHAP_xxxxxx_yyyyyy.wav + .normalized.txt / .original.txt (+ LibriTTS-R)
    libriheavy(cuts)    Libriheavy lhotse cuts (*.jsonl.gz): supervision text + recording path + offset
    real_speech(root)   the team's real clips (manifest.tsv, tab-separated, no quoting)

CLI:  python -m tts.manifests librispeech ROOT OUT.jsonl [--min-duration 4 --max-duration 10]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf

TRANSCRIPT_SOURCES = ("official", "whisper-base", "generated")


@dataclass
class Utterance:
    id: str
    audio: str
    text: str
    speaker: str
    duration: float
    sample_rate: int
    source: str
    transcript_source: str = "official"
    offset: float = 0.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise ValueError(f"{self.id}: duration must be > 0, got {self.duration}")
        if self.sample_rate <= 0:
            raise ValueError(f"{self.id}: sample_rate must be > 0, got {self.sample_rate}")
        if not self.speaker:
            raise ValueError(f"{self.id}: empty speaker")

    def to_json(self) -> dict:
        d = asdict(self)
        if not d["offset"]:
            d.pop("offset")
        if not d["meta"]:
            d.pop("meta")
        return d

    @classmethod
    def from_json(cls, d: dict) -> Utterance:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"manifest row {d.get('id')!r}: unknown key(s) {unknown}; valid keys: {sorted(known)}"
            )
        return cls(**d)


# --- JSONL I/O


def write_jsonl(rows: Iterable[Utterance], path: str | Path) -> int:
    """Atomic write (tmp file + rename). Returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_jsonl(path: str | Path, resolve: bool = True) -> list[Utterance]:
    """Read a manifest. Relative audio paths are resolved against the manifest's folder when resolve=True."""
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise TypeError(f"a row must be a JSON object, got a {type(d).__name__}")
                u = Utterance.from_json(d)
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"{path}:{i}: bad manifest row: {e}") from None
            if resolve and not os.path.isabs(u.audio):
                u.audio = str((path.parent / u.audio).resolve())
            rows.append(u)
    return rows


# --- filters


def filter_duration(
    rows: Iterable[Utterance], min_s: float = 0.0, max_s: float = float("inf")
) -> list[Utterance]:
    if min_s > max_s:
        raise ValueError(f"min duration {min_s} > max duration {max_s}")
    return [r for r in rows if min_s <= r.duration <= max_s]


def speaker_map(rows: Iterable[Utterance]) -> dict[str, int]:
    """Speaker name -> contiguous index, in sorted order (stable across runs)."""
    return {s: i for i, s in enumerate(sorted({r.speaker for r in rows}))}


def by_speaker(rows: Iterable[Utterance]) -> dict[str, list[Utterance]]:
    out: dict[str, list[Utterance]] = {}
    for r in rows:
        out.setdefault(r.speaker, []).append(r)
    return out


def _require_dir(root: str | Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{what} root {root} is not a directory")
    return root


# --- LibriSpeech

_LS_UTT = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def librispeech(root: str | Path, source: str | None = None) -> list[Utterance]:
    """A LibriSpeech subset folder (e.g. LibriSpeech/test-clean): SPK/CHAP/SPK-CHAP.trans.txt lists
    'SPK-CHAP-UTT TEXT' lines, audio at SPK/CHAP/SPK-CHAP-UTT.flac."""
    root = _require_dir(root, "LibriSpeech")
    source = source or f"librispeech/{root.name}"
    rows = []
    trans = sorted(root.glob("*/*/*.trans.txt"))
    if not trans:
        raise ValueError(f"no SPK/CHAP/*.trans.txt under {root}: not a LibriSpeech subset folder")
    for t in trans:
        for line in t.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            m = _LS_UTT.match(uid)
            if not m:
                raise ValueError(f"{t}: bad utterance id {uid!r}")
            audio = t.parent / f"{uid}.flac"
            if not audio.exists():
                raise ValueError(f"{t}: transcript for missing audio {audio}")
            info = sf.info(str(audio))
            rows.append(
                Utterance(uid, str(audio), text.strip(), m.group(1), info.duration, info.samplerate, source)
            )
    return rows


def librispeech_test_clean_4_10(root: str | Path) -> list[Utterance]:
    """The VALL-E / LatentLM evaluation subset: test-clean utterances between 4 and 10 seconds."""
    return filter_duration(librispeech(root, source="librispeech/test-clean"), 4.0, 10.0)


# --- LibriTTS(-R)

_LTTS_UTT = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)$")


def libritts(root: str | Path, text: str = "normalized", source: str | None = None) -> list[Utterance]:
    """A LibriTTS or LibriTTS-R subset folder: SPK/CHAP/SPK_CHAP_xxxxxx_yyyyyy.wav with a sibling
    .normalized.txt (text='normalized') or .original.txt (text='original'). Wavs without text are skipped."""
    if text not in ("normalized", "original"):
        raise ValueError(f"text must be 'normalized' or 'original', got {text!r}")
    root = _require_dir(root, "LibriTTS")
    source = source or f"libritts/{root.name}"
    wavs = sorted(root.glob("*/*/*.wav"))
    if not wavs:
        raise ValueError(f"no SPK/CHAP/*.wav under {root}: not a LibriTTS subset folder")
    rows = []
    for w in wavs:
        m = _LTTS_UTT.match(w.stem)
        if not m:
            raise ValueError(f"{w}: not a LibriTTS utterance name (SPK_CHAP_xxxxxx_yyyyyy)")
        tfile = w.with_name(f"{w.stem}.{text}.txt")
        if not tfile.exists():
            continue
        info = sf.info(str(w))
        body = tfile.read_text(encoding="utf-8").strip()
        rows.append(Utterance(w.stem, str(w), body, m.group(1), info.duration, info.samplerate, source))
    return rows


# --- Libriheavy


def libriheavy(
    cuts: str | Path, audio_root: str | Path, text: str = "original", source: str | None = None
) -> list[Utterance]:
    """Libriheavy cuts (lhotse MonoCut JSON lines, optionally gzipped). Each cut's first supervision gives the
    speaker and text (``text`` field, or ``custom.texts[0]`` original / ``[1]`` normalized); the recording's
    first file source is resolved against audio_root; offset = cut start."""
    if text not in ("normalized", "original"):
        raise ValueError(f"text must be 'normalized' or 'original', got {text!r}")
    cuts = Path(cuts)
    audio_root = _require_dir(audio_root, "Libriheavy audio")
    source = source or f"libriheavy/{cuts.name.split('.')[0]}"
    opener = gzip.open if cuts.suffix == ".gz" else open
    rows = []
    with opener(cuts, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            c = json.loads(line)
            try:
                sup, rec = c["supervisions"][0], c["recording"]
                file_src = next(s["source"] for s in rec["sources"] if s.get("type", "file") == "file")
            except (KeyError, IndexError, StopIteration) as e:
                raise ValueError(f"{cuts}:{i}: not a Libriheavy cut ({e!r} missing)") from None
            custom = sup.get("custom") or {}
            if "texts" in custom:
                body = custom["texts"][0 if text == "original" else 1]
            elif "text" in sup:
                body = sup["text"]
            else:
                raise ValueError(f"{cuts}:{i}: supervision has no text")
            audio = Path(file_src)
            audio = audio if audio.is_absolute() else audio_root / audio
            rows.append(
                Utterance(
                    c["id"],
                    str(audio),
                    body.strip(),
                    str(sup.get("speaker") or rec["id"].split("/")[0]),
                    float(c["duration"]),
                    int(rec["sampling_rate"]),
                    source,
                    offset=float(c.get("start", 0.0)),
                )
            )
    return rows


# --- real clips


def _tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def real_speech(
    root: str | Path, subsets: Iterable[str] = ("librispeech_train-clean-100",)
) -> list[Utterance]:
    """The team's real clips (a real speech folder: manifest.tsv per sub-folder). Default: the LibriSpeech training clips only; pass
    subsets=("dev",) for the held-out real dev set (never train on it)."""
    root = _require_dir(root, "real_speech")
    rows = []
    for sub in subsets:
        m = root / sub / "manifest.tsv"
        if not m.exists():
            raise ValueError(
                f"{m} not found (subsets available: {[p.name for p in root.iterdir() if p.is_dir()]})"
            )
        for r in _tsv(m):
            text = r["transcript"].strip()
            rows.append(
                Utterance(
                    r["utterance_id"],
                    str((root / sub / r["file"]).resolve()),
                    text,
                    str(r["speaker_id"]),
                    float(r["duration_s"]),
                    int(r["sample_rate"]),
                    f"real_speech/{sub}",
                    "official" if text else "missing",
                )
            )
    return rows


# --- CLI


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", choices=["librispeech", "libritts", "libriheavy", "real_speech"])
    p.add_argument("root", help="subset folder (librispeech/libritts/real_speech) or cuts file (libriheavy)")
    p.add_argument("out", help="output JSONL")
    p.add_argument("--audio-root", help="libriheavy: folder that the cuts' audio paths are relative to")
    p.add_argument(
        "--text", default=None, help="libritts: normalized|original; libriheavy: original|normalized"
    )
    p.add_argument("--min-duration", type=float, default=0.0)
    p.add_argument("--max-duration", type=float, default=float("inf"))
    p.add_argument("--source", default=None)
    a = p.parse_args(argv)
    if a.corpus == "librispeech":
        rows = librispeech(a.root, a.source)
    elif a.corpus == "libritts":
        rows = libritts(a.root, a.text or "normalized", a.source)
    elif a.corpus == "libriheavy":
        if not a.audio_root:
            p.error("libriheavy needs --audio-root")
        rows = libriheavy(a.root, a.audio_root, a.text or "original", a.source)
    else:
        rows = real_speech(a.root)
    rows = filter_duration(rows, a.min_duration, a.max_duration)
    n = write_jsonl(rows, a.out)
    hours = sum(r.duration for r in rows) / 3600
    print(f"wrote {n} utterances ({hours:.2f} h, {len(speaker_map(rows))} speakers) to {a.out}")


if __name__ == "__main__":
    main()
