#!/usr/bin/env bash
# Set up and run the whole test suite (lint included). This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export EGAIN_NO_PROGRESS=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
ruff check egain tests benchmarks
ruff format --check egain tests benchmarks
python -m pytest -n "${EGAIN_TEST_WORKERS:-2}" --durations=15 "$@"
