#!/usr/bin/env bash
# Does Whisper hear more of the same speech when it starts and ends with silence? (docs/experiments/real-voices.md,
# session 19: TTSConfig.edge_seconds.) Pads every wav of an evaluation's audio folder with P seconds of silence at
# both ends and scores the copies with the evaluation's own scorer (words only; SIM is not touched by silence).
#
#   bash recipes/lab/edge_study.sh AUDIO_DIR JOBS OUT "0.1 0.2 0.3"
#
# e.g. AUDIO_DIR=eval/real_voices/NAME/seed0/audio (recipes/demo/evaluate_real_voices.sh writes it with a release
# whose edge_seconds is 0), JOBS=data/real_voices/dev_jobs.jsonl. Writes OUT/P/{audio,tts} and prints words heard.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${1:?usage: edge_study.sh AUDIO_DIR JOBS OUT PADS}
JOBS=${2:?usage: edge_study.sh AUDIO_DIR JOBS OUT PADS}
OUT=${3:?usage: edge_study.sh AUDIO_DIR JOBS OUT PADS}
PADS=${4:-0.1 0.2 0.3}
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
for P in $PADS; do
  D=$OUT/$P
  mkdir -p "$D/audio"
  $PY - "$SRC" "$D/audio" "$P" <<'PY'
import glob, os, sys
import numpy as np
import soundfile as sf
src, dst, p = sys.argv[1], sys.argv[2], float(sys.argv[3])
for f in sorted(glob.glob(os.path.join(src, "*.wav"))):
    y, sr = sf.read(f, dtype="float32")
    z = np.zeros(int(p * sr), np.float32)
    sf.write(os.path.join(dst, os.path.basename(f)), np.concatenate([z, y, z]), sr)
PY
  $PY -m evaluation.run score --jobs "$JOBS" --audio-dir "$D/audio" --out "$D/tts" --threads "${THREADS:-1}" \
    --sim none > "$D.log" 2>&1
  $PY -c "import json,sys; s=json.load(open(sys.argv[1])); w=s['wer']; print('$P s: words heard', round(100*w['word_recall'],1), 'WER', round(100*w['corpus_wer'],1))" \
    "$D/tts/summary.json"
done
