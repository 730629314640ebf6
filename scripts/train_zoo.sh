#!/usr/bin/env bash
# Train the bundled weights (the "zoo") with the project's own commands. Every stage resumes:
# run it again (in the same ZOO_RUNS folder) and it continues where it stopped.
#
#   bash scripts/train_zoo.sh data        # render the synthfaces training folder
#   bash scripts/train_zoo.sh gan-swagan  # one stage (see the case below)
#
# Stages write into $ZOO_RUNS/<name>/ (default /work/runs); `egain zoo add` copies a finished
# export into egain/zoo/weights/ with a manifest made from the run's own run.json.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
DATA=${ZOO_DATA:-/work/data}
RUNS=${ZOO_RUNS:-/work/runs}
THREADS=${ZOO_THREADS:-1}
mkdir -p "$DATA" "$RUNS"

gan() {  # gan ARCH
  egain gan train --arch "$1" --size 64 --style-dim 256 --n-mlp 8 --channel-base 1024 --channel-max 256 \
    --data "$DATA/sf-train-64" --mirror --augment none --r1 auto --batch 16 --iters 30000 \
    --ckpt-every 100 --sample-every 250 --n-sample 64 --log-every 10 --seed 0 \
    --threads "$THREADS" --out "$RUNS/gan-$1-64" --resume auto
}

case "${1:-}" in
  data)
    [ -f "$DATA/sf-train-64/labels.jsonl" ] || egain data synthfaces --out "$DATA/sf-train-64" \
      --identities 2500 --per-identity 8 --size 64 --seed 0 --split train --workers 2
    ;;
  gan-swagan) gan swagan ;;
  gan-stylegan2) gan stylegan2 ;;
  *) echo "usage: $0 data|gan-swagan|gan-stylegan2" >&2; exit 2 ;;
esac
