#!/usr/bin/env bash
# Run the test suite on CPU (the README's test command; .ci/run calls it).
#   bash scripts/test.sh [pytest args...]
# GPU tests run only where CUDA is present; browser tests only where Chromium is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when nothing was collected: that is a failure here, never a pass.
if [[ $rc == 5 ]]; then echo "[test] no tests collected: failing" >&2; exit 1; fi
exit $rc
