#!/usr/bin/env bash
# Make a measured candidate (recipes/demo/candidate.sh) the shipped checkpoints/tts_demo: its LatentLM weights, its
# config, its one-step head and its step bridge (when it has one) replace the shipped ones; the VAE, the duration
# predictor and the model card stay.
#
#   bash recipes/demo/ship.sh runs/NAME_cand
#
# Refuses a candidate whose VAE or duration predictor differs from the shipped ones (the latents, timing and the
# learning curve would stop being comparable: ship such a change by hand, with its own measurement). Then rewrites
# the pinned outputs of tests/test_shipped_release.py, which are the release's. Ship only a candidate that beat the
# shipped release over seeds 0-2 on the real-voice dev set and is no worse on the older dev recordings; then add
# its point to docs/experiments/learning_curve.csv and update the model card and the README status.
set -euo pipefail
cd "$(dirname "$0")/../.."
CAND=${1:?usage: ship.sh CANDIDATE_RELEASE}
PY=${PYTHON:-.venv/bin/python}
DEST=checkpoints/tts_demo
for f in model.safetensors config.json one_step_head/model.safetensors one_step_head/config.json; do
  [[ -f $CAND/$f ]] || { echo "ship: $CAND has no $f (not a candidate.sh release)" >&2; exit 2; }
done
for f in vae/model.safetensors vae/config.json duration/model.safetensors duration/config.json duration/aligner.json; do
  if ! cmp -s "$CAND/$f" "$DEST/$f"; then
    echo "ship: $CAND/$f differs from the shipped $DEST/$f; refusing (see the header)" >&2
    exit 2
  fi
done
cp "$CAND/model.safetensors" "$CAND/config.json" "$DEST/"
mkdir -p "$DEST/one_step_head"
cp "$CAND/one_step_head/model.safetensors" "$CAND/one_step_head/config.json" "$DEST/one_step_head/"
rm -rf "$DEST/step_bridge"  # a bridge belongs to the weights it was fitted on: the candidate's, or none
if [[ -f $CAND/step_bridge/model.safetensors ]]; then
  mkdir -p "$DEST/step_bridge"
  cp "$CAND/step_bridge/model.safetensors" "$CAND/step_bridge/config.json" "$DEST/step_bridge/"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY - "$DEST" <<'PY'
import sys

from tts.model import TTS

tts = TTS.from_pretrained(sys.argv[1])
if tts.one_step is None or not tts.one_step[1].default:
    sys.exit(f"ship: {sys.argv[1]} loads without a default one-step head")
n = sum(p.numel() for p in tts.lm.parameters())
print(f"ship: {sys.argv[1]} loads: {n / 1e6:.2f}M parameters, {tts.cfg.model.trunk.n_layers} trunk blocks")
PY
$PY tests/test_shipped_release.py --write
echo "ship: $CAND -> $DEST; pinned outputs rewritten. Next: learning_curve.csv, model card, README status."
