"""Data-layer speed: phonemization throughput, corpus generation, latent extraction (fake encoder).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_data.py [--skip-corpus] [--real-speech DIR]
Prints one line per measurement. CPU only, one thread. Sentences and clips: the LibriSpeech train-clean-100 rows of
a real speech folder (default $LATENTLM_REAL_SPEECH, else the repo's tests/data/real_speech: 61 of the full 251).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "recipes" / "demo"))

from tts import data as TD  # noqa: E402
from tts import manifests as M  # noqa: E402
from tts.frontend import Frontend  # noqa: E402

REAL = Path(os.environ.get("LATENTLM_REAL_SPEECH") or REPO / "tests" / "data" / "real_speech")


class FakeEncoder:
    frame_rate = 15.0

    def __init__(self):
        self.proj = torch.randn(513, 32, generator=torch.Generator().manual_seed(0))

    def encode(self, wav, sample_rate):
        wav = torch.as_tensor(wav, dtype=torch.float32)
        spec = torch.stft(
            wav, 1024, int(sample_rate / self.frame_rate), window=torch.hann_window(1024), return_complex=True
        ).abs()
        return torch.log(spec + 1e-5).T @ self.proj  # [T, 32]


def bench_phonemize(rows) -> None:
    fe = Frontend()
    texts = [r.text for r in rows] * 4
    fe.phonemize(texts[:8])
    t = time.perf_counter()
    fe.phonemize(texts)
    dt = time.perf_counter() - t
    t = time.perf_counter()
    for x in texts[:200]:
        fe.phonemize(x)
    dt1 = time.perf_counter() - t
    print(
        f"phonemize batch: {len(texts) / dt:.0f} sentences/s ({len(texts)} LibriSpeech sentences); "
        f"one at a time: {200 / dt1:.0f} sentences/s"
    )


def bench_corpus() -> None:
    import make_corpus as MC

    out = Path(tempfile.mkdtemp(prefix="bench_corpus_"))
    try:
        cfg = MC.CorpusConfig(out=str(out), hours=0.02, speakers=32, workers=2, real_speech=None)
        t = time.perf_counter()
        MC.build(cfg, progress=False)
        dt = time.perf_counter() - t
        secs = sum(r.duration for s in ("train", "valid", "test") for r in M.read_jsonl(out / f"{s}.jsonl"))
        print(
            f"corpus generation: {secs / 60:.1f} min of audio in {dt:.1f} s = {secs / dt:.1f}x real time "
            f"(2 workers, 24 kHz, espeak/flite/festival + sox)"
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


def bench_extract(rows) -> None:
    out = Path(tempfile.mkdtemp(prefix="bench_latents_"))
    try:
        sub = rows[:60]
        t = time.perf_counter()
        TD.extract_latents(sub, FakeEncoder(), out, shard_size=32, progress=False)
        dt = time.perf_counter() - t
        secs = sum(r.duration for r in sub)
        print(
            f"latent extraction (fake STFT encoder, FLAC decode + shard writes): {secs / dt:.0f}x real time "
            f"({secs / 60:.1f} min of audio in {dt:.1f} s)"
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--skip-corpus", action="store_true")
    p.add_argument("--real-speech", default=str(REAL), help="real speech folder (default: %(default)s)")
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = M.real_speech(a.real_speech)
    bench_phonemize(rows)
    bench_extract(rows)
    if not a.skip_corpus and shutil.which("espeak-ng"):
        bench_corpus()


if __name__ == "__main__":
    main()
