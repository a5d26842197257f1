#!/usr/bin/env bash
# A TTS release on the real-voice dev set (tts.real_voices: 12 real speakers never trained on, cross-sentence
# prompts), over several seeds, plus the recordings themselves.
#   bash recipes/demo/evaluate_real_voices.sh [RELEASE=checkpoints/tts_demo] [OUT=eval/real_voices] [SEEDS="0 1 2"]
# Needs the dev jobs: python -m tts.real_voices REAL_SPEECH_DIR --out data/real_voices (JOBS= to point elsewhere).
# Writes OUT/seedS/{audio,tts} per seed, OUT/gt, and prints the per-seed and mean table (seeds_table.py).
# BATCH_ARGS="--temperature 0.7" (any tts.batch option) measures a decoding setting; THREADS (1) per process.
set -euo pipefail
cd "$(dirname "$0")/../.."
REL=${1:-checkpoints/tts_demo}
OUT=${2:-eval/real_voices}
SEEDS=${3:-0 1 2}
JOBS=${JOBS:-data/real_voices/dev_jobs.jsonl}
PY=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-1}  # one thread: two spin and stall on a shared 2-core machine
read -r -a EXTRA <<< "${BATCH_ARGS:-}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[[ -f "$JOBS" ]] || { echo "no $JOBS: run python -m tts.real_voices REAL_SPEECH_DIR --out $(dirname "$JOBS")" >&2; exit 2; }
dirs=()
for s in $SEEDS; do
  $PY -m tts.batch "$JOBS" --checkpoint "$REL" --out-dir "$OUT/seed$s/audio" --batch-size 4 --seed "$s" \
    --threads "$THREADS" --no-progress "${EXTRA[@]}"
  $PY -m evaluation.run score --jobs "$JOBS" --audio-dir "$OUT/seed$s/audio" --system "$(basename "$REL") seed $s" \
    --out "$OUT/seed$s/tts" --threads "$THREADS"
  dirs+=("$OUT/seed$s/tts")
done
if [[ ! -f "$OUT/gt/summary.json" ]]; then
  $PY -m evaluation.run score --jobs "$JOBS" --ground-truth --system "recordings" --out "$OUT/gt" --threads "$THREADS"
fi
$PY recipes/demo/seeds_table.py "$OUT/gt" "${dirs[@]}" | tee "$OUT/table.md"
