#!/usr/bin/env bash
# A campaign run's release made into a candidate and measured the way every shipped release was: its one-step head
# distilled (teacher = the run's reference head recording at temperature 0.7, 400 cross-sentence jobs of training
# speakers, 8 draws, 4,000 steps; the candidate samples at its release temperature, 0.3 for the demo recipe), its
# step bridge fitted to its own decoding (tts.train_bridge: 550 jobs, 6,000 steps, ~15 CPU-minutes), then
# the real-voice dev set and the older real dev recordings over seeds 0-2, two scoring processes side by side.
#
#   bash recipes/demo/candidate.sh RUN NAME
#
# RUN: a tts.train run directory with RUN/release (real_voices.sh exports it at each stop); waits while that run is
# still training. Writes runs/NAME_cand (the candidate release), eval/real_voices/NAME and eval/old_dev/NAME (each
# with its table.md: per seed, mean, and on the real-voice set per corpus). The distillation resumes from its
# recorded states when rerun. Knobs: OLD_JOBS (data/old_dev/real_dev.jsonl; skipped when absent), PYTHON.
# Ship it only when it beats the shipped release on the real-voice set and is no worse on the older one
# (checkpoints/tts_demo/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${1:?usage: candidate.sh RUN NAME}
NAME=${2:?usage: candidate.sh RUN NAME}
PY=${PYTHON:-.venv/bin/python}
OLD_JOBS=${OLD_JOBS:-data/old_dev/real_dev.jsonl}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
while pgrep -f "tts.train .*out_dir=$RUN " >/dev/null; do sleep 20; done
[[ -f $RUN/release/model.safetensors ]] || { echo "no release in $RUN/release" >&2; exit 2; }
C=runs/${NAME}_cand
if [[ ! -f $C/one_step_head/model.safetensors || $C/one_step_head/model.safetensors -ot $RUN/release/model.safetensors ]]; then
  $PY -m tts.distill_head "$RUN/release" --manifest data/real_voices/train.jsonl --out "$C" --jobs 400 \
    --per-speaker 3 --draws 8 --train-steps 4000 --record-temperature 0.7 --threads 2 --default
fi
if [[ ! -f $C/step_bridge/model.safetensors || $C/step_bridge/model.safetensors -ot $C/one_step_head/model.safetensors ]]; then
  $PY -m tts.train_bridge "$C" --manifest data/real_voices/train.jsonl --out "$C" --jobs 1200 --per-speaker 8 \
    --train-steps 6000 --threads 2
fi
E=eval/real_voices/$NAME
O=eval/old_dev/$NAME
mkdir -p "$E" "$O"
table() { $PY recipes/demo/seeds_table.py "$@"; }
bash recipes/demo/evaluate_real_voices.sh "$C" "$E/a" "0 2" > "$E.a.log" 2>&1 &
first=$!
bash recipes/demo/evaluate_real_voices.sh "$C" "$E/b" "1" > "$E.b.log" 2>&1
[[ -f $OLD_JOBS ]] && JOBS=$OLD_JOBS bash recipes/demo/evaluate_real_voices.sh "$C" "$O/b" "1" > "$O.b.log" 2>&1
wait "$first"
table --by-source data/real_voices/dev_jobs.jsonl "$E/a/gt" "$E/a/seed0/tts" "$E/b/seed1/tts" "$E/a/seed2/tts" \
  | tee "$E/table.md"
if [[ -f $OLD_JOBS ]]; then
  JOBS=$OLD_JOBS bash recipes/demo/evaluate_real_voices.sh "$C" "$O/a" "0 2" > "$O.a.log" 2>&1
  table "$O/a/gt" "$O/a/seed0/tts" "$O/b/seed1/tts" "$O/a/seed2/tts" | tee "$O/table.md"
fi
