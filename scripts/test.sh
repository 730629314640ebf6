#!/usr/bin/env bash
# Set up and run the whole test suite (lint included). This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test drives Debian's chromium; install it where apt works as root, else it is skipped.
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "test: installing chromium + chromium-driver for the browser test (apt, about a minute)..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
    >/dev/null 2>&1 || echo "test: chromium could not be installed; the browser test will be skipped"
fi
. .venv/bin/activate
export EGAIN_NO_PROGRESS=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
ruff check egain tests benchmarks
ruff format --check egain tests benchmarks
python -m pytest -n "${EGAIN_TEST_WORKERS:-2}" --durations=15 "$@"
