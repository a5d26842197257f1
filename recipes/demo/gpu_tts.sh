#!/usr/bin/env bash
# The TTS stage alone on one GPU, from latents made on another machine: the way to use a GPU lent for minutes
# (this project's H100/H200 hands back only files <= 16 MB, takes a <= 64 MiB tree, and has no espeak-ng).
#
#   recipes/demo/gpu_tts.sh --pack PACK [LATENTS] [MANIFEST]   # here: everything the GPU needs, ~58 MB, in PACK
#   recipes/demo/gpu_tts.sh PACK OUT [key=value ...]           # on the GPU machine: train, EMA parts -> OUT/ema
#   python -m tts.export OUT/ema RELEASE --vae checkpoints/vae_small --duration data/latents/duration_model
#                                                                  # back here: the release (needs espeak-ng)
#
# The pack: the latents (default data/latents, made with checkpoints/vae_small as the README's CPU steps do) and
# the VAE as float16 (recipes/demo/transit_dtype.py; latent statistics stay float32), the manifest (default
# data/corpus/train.jsonl), the release to continue from (INIT, default checkpoints/tts_demo, float16, without
# its vae/; INIT=none trains from scratch) and the wheels the GPU image lacks (for its Python 3.12).
# Env knobs: TTS_MINUTES (7), DEVICE (cuda), PYTHON (.venv/bin/python if there, else python3), INIT, VAE
# (checkpoints/vae_small) at --pack time.
# Training: recipes/demo/tts_small.yaml with batches of up to 64 rows laid out by 6 worker processes, lr 1e-3
# (5e-4 when continuing), the cosine horizon fitted to TTS_MINUTES (schedule_to_time_limit), fp32 (bf16=false:
# two H200 runs under bf16 turned NaN after ~1,550 steps; a model this small is bound by launches, not FLOPs).
# Extra key=value overrides are passed on (e.g. ctc_weight=0.1 ctc_blind=0.3).
# Status: its pieces ran on an H200 (tts.train's steps, 2 x 1,700 steps side by side, from scratch: in 7.5
# minutes they reached about the training loss tts_demo has, hence INIT); the script as a whole has run here
# on the CPU only (DEVICE=cpu), not yet on a GPU. Session 9 (DEVICE=cpu, TTS_MINUTES=0.3, the pack's wheels set
# aside since they are for the GPU's Python 3.12): the pack of tts_demo (timed by its predictor, so its duration/
# now travels too: without it init_from failed) + the split manifest is 57 MiB, trains, and exports back here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
[[ -z "${PYTHON:-}" && -x "$REPO/.venv/bin/python" ]] && PY="$REPO/.venv/bin/python"  # here (scripts/setup.sh)
cd "$REPO"

if [[ "${1:-}" == "--pack" ]]; then
  PACK="${2:?usage: gpu_tts.sh --pack PACK [LATENTS] [MANIFEST]}"
  LAT="${3:-data/latents}" MAN="${4:-data/corpus/train.jsonl}" INIT="${INIT:-checkpoints/tts_demo}"
  mkdir -p "$PACK/wheels"
  # frames per phoneme symbol for the recipe's interleaved layout (travels with the latents)
  [[ -f "$LAT/durations.json" ]] || "$PY" -m tts.durations --latents "$LAT" --manifest "$MAN"
  # the recipe's duration predictor (tts.timing: predictor; the run checks it is there), inside the latents
  [[ -f "$LAT/duration_model/model.safetensors" ]] ||
    "$PY" -m tts.duration_train --latents "$LAT" --manifest "$MAN" --out "$LAT/duration_model"
  "$PY" recipes/demo/transit_dtype.py "$LAT" "$PACK/latents" float16 --keep "$MAN"  # the manifest's utterances
  "$PY" recipes/demo/transit_dtype.py "${VAE:-checkpoints/vae_small}" "$PACK/vae" float16
  if [[ "$INIT" != "none" ]]; then
    mkdir -p "$PACK/init.src" && cp "$INIT/config.json" "$INIT/model.safetensors" "$PACK/init.src/"
    [[ -d "$INIT/duration" ]] && cp -r "$INIT/duration" "$PACK/init.src/"  # a predictor-timed release needs it
    "$PY" recipes/demo/transit_dtype.py "$PACK/init.src" "$PACK/init" float16 && rm -r "$PACK/init.src"
  fi
  cp "$MAN" "$PACK/train.jsonl"
  # what tts.train imports beyond the GPU image's torch/numpy/yaml/safetensors/tensorboard (Python 3.12 there)
  for p in soundfile cffi pycparser num2words jiwer rapidfuzz whisper-normalizer more-itertools indic-numtowords; do
    v=$("$PY" -c "import importlib.metadata as m; print(m.version('$p'))")
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$PACK/wheels" "$p==$v"
  done
  echo "pack ready: $PACK ($(du -sh "$PACK" | cut -f1))"
  exit 0
fi

PACK="${1:?usage: gpu_tts.sh PACK OUT [key=value ...] | --pack PACK}"
OUT="${2:?usage: gpu_tts.sh PACK OUT [key=value ...]}"
shift 2
mkdir -p "$OUT"
if ls "$PACK"/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_tts_site "$PACK"/wheels/*.whl
  export PYTHONPATH="/tmp/gpu_tts_site:$REPO"
else
  export PYTHONPATH="$REPO"
fi
export PYTHONUNBUFFERED=1
RUN="${RUN_DIR:-/tmp/gpu_tts_run}" T=/tmp/gpu_tts
rm -rf "$T" && mkdir -p "$T"
"$PY" recipes/demo/transit_dtype.py "$PACK/latents" "$T/latents" float32
"$PY" recipes/demo/transit_dtype.py "$PACK/vae" "$T/vae" float32
START=(optim.lr=0.001)
if [[ -d "$PACK/init" ]]; then  # a release needs its vae/: the one in the pack
  "$PY" recipes/demo/transit_dtype.py "$PACK/init" "$T/init" float32 && cp -r "$T/vae" "$T/init/vae"
  START=(init_from="$T/init" optim.lr=0.0005)
fi
rc=0
"$PY" -m tts.train recipes/demo/tts_small.yaml data.manifest="$PACK/train.jsonl" data.latents="$T/latents" \
  vae="$T/vae" "${START[@]}" device="${DEVICE:-cuda}" bf16=false threads=4 data.num_workers=6 \
  data.max_frames=16000 data.max_batch=64 optim.warmup_steps=200 max_steps=100000 \
  time_limit_minutes="${TTS_MINUTES:-7}" schedule_to_time_limit=true save_every=250 sample_every=0 \
  progress=false log_every=100 out_dir="$RUN" "$@" --no-export 2>&1 | tee "$OUT/train.log" || rc=$?
# whatever the run reached (a crash keeps the last save): the EMA weights in parts, for python -m tts.export
"$PY" -m tts.export "$RUN" --ema-parts "$OUT/ema"
exit $rc
