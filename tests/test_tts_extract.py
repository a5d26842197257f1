"""The latent extraction CLI with the shipped audio VAE on real clips: writes a store, resumes without redoing."""

import csv
from pathlib import Path

import pytest
import soundfile as sf

from tts.data import LatentStore
from tts.extract import main
from tts.manifests import Utterance, write_jsonl

REPO = Path(__file__).resolve().parents[1]
VAE = REPO / "checkpoints" / "vae_small"


@pytest.mark.skipif(not (VAE / "model.safetensors").is_file(), reason="shipped VAE release missing")
def test_extract_cli_writes_store_and_resumes(real_speech_dir, tmp_path, capsys):
    root = real_speech_dir / "librispeech_train-clean-100"
    with open(root / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = sorted(rows, key=lambda r: float(r["duration_s"]))[:3]
    utts = [
        Utterance(
            id=r["utterance_id"],
            audio=str(root / r["file"]),
            text=r["transcript"],
            speaker=r["speaker_id"],
            duration=float(r["duration_s"]),
            sample_rate=int(r["sample_rate"]),
            source="librispeech",
        )
        for r in rows
    ]
    bad = tmp_path / "corrupt.flac"
    bad.write_bytes(b"fLaC this is not audio")
    broken = Utterance(
        id="broken", audio=str(bad), text="x", speaker="s", duration=1.0, sample_rate=16000, source="test"
    )
    write_jsonl([*utts, broken], tmp_path / "m.jsonl")
    args = ["--manifest", str(tmp_path / "m.jsonl"), "--vae", str(VAE), "--out", str(tmp_path / "lat")]
    with pytest.warns(UserWarning, match="skipping broken"), pytest.raises(SystemExit, match="1 utterances"):
        main(args)  # the corrupt file is reported; the good ones are encoded anyway
    assert "corrupt.flac" in capsys.readouterr().err
    store = LatentStore(tmp_path / "lat")
    assert len(store) == 3
    for u in utts:
        z = store.get(u.id)
        n = sf.info(u.audio).frames
        assert z.shape[1] == 32 and abs(z.shape[0] - n / 640) <= 1  # 25 Hz frames at 16 kHz
    with pytest.warns(UserWarning), pytest.raises(SystemExit):
        main(args)  # a rerun retries only the failed one
    assert "encoded 0 new utterances" in capsys.readouterr().out
