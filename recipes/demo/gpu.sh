#!/usr/bin/env bash
# The whole demo pipeline on ONE H100-class GPU in about 10 minutes, offline:
#   synthetic corpus (+ the real LibriSpeech clips) -> audio VAE -> latents -> TTS LatentLM -> release in OUTPUT_DIR.
#
#   recipes/demo/gpu.sh --prepare          # on a NETWORKED machine: fills recipes/demo/offline/ (wheels + .debs)
#   recipes/demo/gpu.sh OUTPUT_DIR         # on the GPU machine (no network needed): installs from offline/, runs
#
# offline/ layout: offline/wheels/*.whl (pip download -r requirements.txt, for the GPU machine's Python),
#                  offline/debs/*.deb    (apt-get download of the speech engines make_corpus.py uses + their deps).
# Env knobs: PYTHON (default python3), VAE_MINUTES (3), VAE_ADV_START (2000: step the GAN terms start),
#            TTS_MINUTES (4), CORPUS_HOURS (2), SPEAKERS (120), REAL_SPEECH (folder), DEVICE (cuda; cpu runs the
#            same stages here, e.g. a wiring check with tiny budgets: see recipes/demo/README.md).
# Status: NOT yet run on a GPU as a whole; with DEVICE=cpu and tiny budgets (recipes/demo/README.md) every stage
# runs here and the release loads and speaks. Its TTS stage's trainer ran on an H200 (tts.train, 1,700 steps at
# ~4 it/s with the per-row alignment loss since batched; bf16 turned NaN after ~1,550 steps, hence bf16=false);
# recipes/demo/gpu_tts.sh runs that stage alone from latents made elsewhere.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OFF="$HERE/offline"
PY="${PYTHON:-python3}"
DEBS="espeak-ng espeak-ng-data libespeak-ng1 flite festival festvox-kallpc16k sox libsox-fmt-all"

if [[ "${1:-}" == "--prepare" ]]; then
  mkdir -p "$OFF/wheels" "$OFF/debs"
  "$PY" -m pip download -d "$OFF/wheels" -r "$REPO/requirements.txt"
  (cd "$OFF/debs" && apt-get download $(apt-cache depends --recurse --no-recommends --no-suggests \
      --no-conflicts --no-breaks --no-replaces --no-enhances $DEBS | grep '^\w' | sort -u)) || true
  echo "offline bundle ready in $OFF ($(du -sh "$OFF" | cut -f1)); copy the repo with it to the GPU machine"
  exit 0
fi

OUT="${1:?usage: recipes/demo/gpu.sh OUTPUT_DIR | --prepare}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$OUT/work"
mkdir -p "$WORK"
cd "$REPO"
export PYTHONPATH="$REPO" OMP_NUM_THREADS=8

if [[ -d "$OFF/debs" ]] && ls "$OFF/debs"/*.deb >/dev/null 2>&1 && ! command -v flite >/dev/null; then
  dpkg -i "$OFF/debs"/*.deb || true
fi
if [[ -d "$OFF/wheels" ]]; then
  "$PY" -m venv "$WORK/venv" && PY="$WORK/venv/bin/python"
  "$PY" -m pip install --no-index --find-links "$OFF/wheels" -r requirements.txt
fi
DEV="${DEVICE:-cuda}"
if [[ "$DEV" == cuda ]]; then
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
fi

T0=$(date +%s)
REAL="${REAL_SPEECH:-}"  # the real speech folder; its LibriSpeech clips join the corpus when set
REAL_ARG=(); [[ -d "$REAL" ]] && REAL_ARG=(--real-speech "$REAL")
echo "== 1/4 corpus"
"$PY" recipes/demo/make_corpus.py "$WORK/corpus" --hours "${CORPUS_HOURS:-2}" --speakers "${SPEAKERS:-120}" \
  --sample-rate 16000 --workers "$(nproc)" "${REAL_ARG[@]}"

echo "== 2/4 audio VAE"
"$PY" -m vocoder_vae.train recipes/demo/vae_small.yaml data.train="$WORK/corpus/train.jsonl" device="$DEV" \
  out_dir="$WORK/vae" time_limit_minutes="${VAE_MINUTES:-3}" data.batch_size=64 progress=false \
  loss.adv_start_step="${VAE_ADV_START:-2000}" \
  --export "$OUT/vae_release"

echo "== 3/4 latents"
"$PY" - "$WORK" "$OUT/vae_release" "$DEV" <<'PYEOF'
import sys, torch
from tts.data import extract_latents
from tts.manifests import read_jsonl
from vocoder_vae.model import AudioVAE
work, vae_dir, device = sys.argv[1:4]
vae = AudioVAE.from_pretrained(vae_dir, device=device)
extract_latents(read_jsonl(f"{work}/corpus/train.jsonl"), vae, f"{work}/latents", progress=False)
PYEOF

"$PY" -m tts.durations --latents "$WORK/latents" --manifest "$WORK/corpus/train.jsonl" --workers 8  # interleave
"$PY" -m tts.duration_train --latents "$WORK/latents" --manifest "$WORK/corpus/train.jsonl" \
  --out "$WORK/latents/duration_model" --threads 4  # tts.timing: predictor (shipped in the release)

echo "== 4/4 TTS"
"$PY" -m tts.train recipes/demo/tts_small.yaml data.manifest="$WORK/corpus/train.jsonl" \
  data.latents="$WORK/latents" data.valid_manifest="$WORK/corpus/valid.jsonl" vae="$OUT/vae_release" \
  device="$DEV" bf16=false threads=4 data.num_workers=6 data.max_frames=16000 data.max_batch=64 optim.lr=0.001 \
  optim.warmup_steps=200 max_steps=100000 time_limit_minutes="${TTS_MINUTES:-4}" schedule_to_time_limit=true \
  out_dir="$WORK/tts" progress=false --export "$OUT/release"
echo "done in $(( $(date +%s) - T0 )) s: release in $OUT/release (load with TTS.from_pretrained)"
