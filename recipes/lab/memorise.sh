#!/usr/bin/env bash
# Can the TTS model say sentences it was trained on? Train on a few speakers' utterances for many epochs, then
# score it on those very sentences (cross-sentence prompts of the same speakers) next to the starting release.
#   bash recipes/lab/memorise.sh [OUT=runs/memorise] [MINUTES=45] [key=value ... for tts.train]
# Env: INIT (release to continue, default checkpoints/tts_demo; INIT=none trains from scratch),
#      SPEAKERS (default: one espeak, one flite and one festival voice of data/corpus, 12 utterances each).
# Writes OUT/release (the trained subset model), OUT/eval/{init,model,gt}/summary.json and OUT/eval/report/.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/memorise}
MINUTES=${2:-45}
shift $(( $# > 2 ? 2 : $# ))
PY=${PYTHON:-.venv/bin/python}
INIT=${INIT:-checkpoints/tts_demo}
SPEAKERS=${SPEAKERS:-espeak_0001 flite_slt_0024 festival_ked_0136}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086
$PY recipes/lab/memorise.py --corpus data/corpus --speakers $SPEAKERS --out "$OUT"
[[ -f data/latents/durations.json ]] || $PY -m tts.durations --latents data/latents --manifest data/corpus/train.jsonl
[[ -f data/latents/duration_model/model.safetensors ]] ||
  $PY -m tts.duration_train --latents data/latents --manifest data/corpus/train.jsonl --out data/latents/duration_model
init=()
[[ "$INIT" != none ]] && init=("init_from=$INIT")
$PY -m tts.train recipes/demo/tts_small.yaml data.manifest="$OUT/train.jsonl" data.latents=data/latents \
  "${init[@]}" out_dir="$OUT/run" export_dir="$OUT/release" time_limit_minutes="$MINUTES" \
  schedule_to_time_limit=true max_steps=100000 optim.warmup_steps=50 sample_every=0 progress=false "$@"
systems=("$OUT/release:model")
[[ "$INIT" != none ]] && systems+=("$INIT:init")
results=()
for s in "${systems[@]}"; do
  rel=${s%%:*} name=${s##*:}
  $PY -m tts.batch "$OUT/jobs.jsonl" --checkpoint "$rel" --out-dir "$OUT/eval/$name/audio" --batch-size 4 --no-progress
  $PY -m evaluation.run score --jobs "$OUT/jobs.jsonl" --audio-dir "$OUT/eval/$name/audio" --system "$name" --out "$OUT/eval/$name"
  results+=("$OUT/eval/$name")
done
$PY -m evaluation.run score --jobs "$OUT/jobs.jsonl" --ground-truth --system "ground truth" --out "$OUT/eval/gt"
$PY -m evaluation.run report --out "$OUT/eval/report" "$OUT/eval/gt" "${results[@]}"
cat "$OUT/eval/report/"*.md 2>/dev/null || true
