#!/usr/bin/env bash
# Install everything the project needs into a cached virtual environment and link it as ./.venv.
#
#   bash scripts/setup.sh            # Python packages only (idempotent; seconds when cached)
#   bash scripts/setup.sh --system   # also Debian packages for the corpus generator and browser tests
#
# The venv lives in ~/.cache/latentlm/venv-<hash of requirements.txt>, so a clean clone (CI) reuses it
# and a change to requirements.txt builds a fresh one. Set LATENTLM_VENV to put it elsewhere.
# GPU users with another CUDA build: create .venv yourself with your torch installed, then run
#   .venv/bin/pip install -r requirements.txt --no-deps ... or set LATENTLM_KEEP_TORCH=1 (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM=0
for arg in "$@"; do
  case "$arg" in
    --system) SYSTEM=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if [[ "$SYSTEM" == 1 ]]; then
  PKGS=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox bible-kjv bible-kjv-text chromium ffmpeg)
  missing=()
  for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if (( ${#missing[@]} )); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      echo "[setup] apt-get install ${missing[*]}"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || echo "[setup] warning: some Debian packages failed to install; tests that need them will skip" >&2
    else
      echo "[setup] warning: missing Debian packages (${missing[*]}); install them with apt to run the corpus generator and browser tests" >&2
    fi
  fi
fi

PY=${PYTHON:-python3}
HASH=$(cat requirements.txt | sha256sum | cut -c1-12)
VENV=${LATENTLM_VENV:-$HOME/.cache/latentlm/venv-$HASH}

if [[ -L .venv || ! -e .venv ]]; then
  if [[ ! -f "$VENV/.installed" ]]; then
    echo "[setup] creating $VENV (first run takes a few minutes: torch is large)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r requirements.txt
    touch "$VENV/.installed"
  fi
  ln -sfn "$VENV" .venv
else
  # A real directory at .venv is the user's own (e.g. with a different CUDA torch): install into it, keep its torch.
  echo "[setup] using your own .venv; installing requirements except torch/torchaudio"
  grep -vE '^(torch|torchaudio)==' requirements.txt > .venv/.req-no-torch.txt
  .venv/bin/pip install -q -r .venv/.req-no-torch.txt
fi
.venv/bin/python -c "import torch, latentlm; print('[setup] ok: torch', torch.__version__)"
