#!/usr/bin/env bash
# The real-voice campaign on a CPU: fine-tune a TTS release on real people with several utterances each
# (cross-sentence pairs; tts.real_voices holds 12 of them out as the dev set), resuming where it stopped.
#
#   [SPEEDS="0.9 1.1"] bash recipes/demo/real_voices.sh REAL_SPEECH_DIR [MINUTES=115] [RUN=runs/real_ft]
#
# Steps (each skipped when its output exists): the speaker split and dev jobs (data/real_voices), latents with
# the release's VAE (data/latents_real), durations timed with the release's own aligner (so the new data is
# timed as its duration predictor was trained), then tts.train from INIT (default checkpoints/tts_demo), with
# held-out speakers refused. Rerunning the same command resumes RUN/last.pt exactly; when RUN is gone the run
# starts again from INIT (with START_STEP=release: at the step INIT records, on the same cosine). The release goes
# to RUN/release; measure it with
#   bash recipes/demo/evaluate_real_voices.sh RUN/release eval/real_voices/NAME
# and ship it only when it beats the shipped release over three seeds (checkpoints/tts_demo/README.md).
# Knobs (environment): INIT, LR (1e-4), WARMUP (30), THREADS (2), PYTHON, and SPEEDS="0.9 1.1": train on the rows
# plus their speed-perturbed copies (tts.perturb: each copy a new speaker; data/real_voices_sp, data/latents_real_sp),
# ARGS="key=value ...": more tts.train overrides (e.g. ARGS="p_uncond=0.15 p_drop_prompt=0.5 tts.guidance=text+voice"),
# STEPS=N: a campaign over several working periods: the cosine runs to step N whatever each period's MINUTES
# (without it each rerun refits the cosine to its own time limit: a warm restart per rerun); a rerun with a larger
# STEPS resumes at its step on the cosine refitted to the new end (a campaign extended, lr raised a little),
# START_STEP=N|release: a campaign whose RUN is gone goes on from its release (INIT) at step N of the same cosine
# ("release": the step INIT records, its config.json meta.steps), lr warmed up again from there,
# MIX=MANIFEST: that manifest's rows (e.g. the synthetic demo corpus, data/corpus/train.jsonl of
# recipes/demo/make_corpus.py) train beside the real ones (tts.mix: data/real_voices_mix, data/latents_mix).
set -euo pipefail
cd "$(dirname "$0")/../.."
REAL=${1:?usage: real_voices.sh REAL_SPEECH_DIR [MINUTES] [RUN]}
MINUTES=${2:-115}
RUN=${3:-runs/real_ft}
INIT=${INIT:-checkpoints/tts_demo}
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATA=data/real_voices
LAT=data/latents_real

[[ -f $DATA/train.jsonl ]] || $PY -m tts.real_voices "$REAL" --out $DATA
TRAIN=$DATA/train.jsonl
if [[ -n "${SPEEDS:-}" ]]; then
  read -r -a speeds <<< "$SPEEDS"
  [[ -f data/real_voices_sp/train.jsonl ]] || $PY -m tts.perturb $TRAIN --out data/real_voices_sp --speeds "${speeds[@]}" \
    --heldout $DATA/heldout.txt --no-progress
  TRAIN=data/real_voices_sp/train.jsonl
  LAT=data/latents_real_sp
fi
if [[ -n "${MIX:-}" ]]; then
  $PY -m tts.mix $TRAIN "$MIX" --heldout $DATA/heldout.txt --out data/real_voices_mix/train.jsonl
  TRAIN=data/real_voices_mix/train.jsonl
  LAT=data/latents_mix
fi
$PY -m tts.extract --manifest $TRAIN --manifest $DATA/dev.jsonl --vae "$INIT/vae" --out $LAT \
  --threads "${THREADS:-2}"
[[ -f $LAT/durations.json ]] || $PY -m tts.durations --latents $LAT --manifest $TRAIN --aligner "$INIT/duration"
if [[ -n "${STEPS:-}" ]]; then SCHEDULE="schedule_to_time_limit=false max_steps=$STEPS"
else SCHEDULE="schedule_to_time_limit=true max_steps=100000"; fi
START=${START_STEP:-0}
if [[ $START == release ]]; then
  START=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["meta"]["steps"])' "$INIT/config.json")
fi
$PY -m tts.train recipes/demo/tts_small.yaml data.manifest=$TRAIN data.latents=$LAT \
  data.heldout_speakers=$DATA/heldout.txt data.duration_model="$INIT/duration" init_from="$INIT" \
  out_dir="$RUN" time_limit_minutes="$MINUTES" $SCHEDULE sample_every=0 \
  progress=false optim.lr="${LR:-0.0001}" optim.warmup_steps="${WARMUP:-30}" threads="${THREADS:-2}" \
  start_step="$START" ${ARGS:-} --export "$RUN/release"
