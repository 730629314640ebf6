#!/usr/bin/env bash
# Create .venv (if missing) and install egain with its test extras. Idempotent and offline-safe
# except for the package registry. torch is pinned to the CPU build so no CUDA wheels are pulled;
# set EGAIN_TORCH to choose another spec (e.g. EGAIN_TORCH="torch" on a GPU machine).
# EGAIN_EXTRAS chooses the extras (default "test,all": the app and face alignment too, about one
# minute more; "test" alone skips them and their tests are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" 2>/dev/null; then
  echo "setup: installing ${EGAIN_TORCH:-torch==2.13.0} (CPU build, a few hundred MB: a few minutes)..."
  pip install -q "${EGAIN_TORCH:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
echo "setup: installing egain with extras [${EGAIN_EXTRAS:-test,all}] (about a minute the first time)..."
pip install -q -e ".[${EGAIN_EXTRAS:-test,all}]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, egain; print(f'egain ready: torch {torch.__version__}')"
