#!/usr/bin/env bash
# Set up, then run the main job: invert the bundled examples with the bundled models and report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
egain demo --out outputs "$@"
