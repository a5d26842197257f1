#!/usr/bin/env bash
# Measure a TTS release on unseen voices: held-out speakers of the offline corpus and the real dev recordings.
#   REAL_SPEECH=DIR bash recipes/demo/evaluate.sh [RELEASE=checkpoints/tts_demo] [OUT=eval/demo] [N_PER_SET=24]
# Needs the corpus in data/corpus (recipes/demo/make_corpus.py). Writes per-set job lists, synthesized wavs,
# per-utterance JSONL + summary.json for the system, the ground-truth rows and the VAE-resynthesis rows
# (ground truth through the release's own VAE: the tokenizer + vocoder ceiling), and report.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
REL=${1:-checkpoints/tts_demo}
OUT=${2:-eval/demo}
N=${3:-24}
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
: "${REAL_SPEECH:?set REAL_SPEECH to the real speech folder (its dev/ holds the real dev recordings)}"
$PY recipes/demo/make_eval_jobs.py --corpus data/corpus --real-dev "$REAL_SPEECH/dev" --out "$OUT" --per-set "$N"
results=()
for set in corpus_test real_dev; do
  $PY -m tts.batch "$OUT/$set.jsonl" --checkpoint "$REL" --out-dir "$OUT/$set/audio" --batch-size 4 --no-progress
  $PY -m evaluation.run score --jobs "$OUT/$set.jsonl" --audio-dir "$OUT/$set/audio" --system "tts $set" --out "$OUT/$set/tts"
  $PY -m evaluation.run score --jobs "$OUT/$set.jsonl" --ground-truth --system "ground truth $set" --out "$OUT/$set/gt"
  if [[ -d "$REL/vae" ]]; then  # the tokenizer + vocoder ceiling: ground truth through the release's VAE
    $PY -m evaluation.resynth --jobs "$OUT/$set.jsonl" --vae "$REL/vae" --out-dir "$OUT/$set/vae_audio"
    $PY -m evaluation.run score --jobs "$OUT/$set.jsonl" --audio-dir "$OUT/$set/vae_audio" --system "vae resynthesis $set" --out "$OUT/$set/vae"
    results+=("$OUT/$set/vae")
  fi
  results+=("$OUT/$set/gt" "$OUT/$set/tts")
done
$PY -m evaluation.run report --out "$OUT/report" "${results[@]}"
cat "$OUT/report/"*.md 2>/dev/null || true
