#!/usr/bin/env bash
# Carry unfinished zoo training runs across sessions (see docs/zoo.md).
#   bash scripts/zoo_state.sh save     # stop running trainers (SIGTERM -> checkpoint), copy state into zoo-state/
#   bash scripts/zoo_state.sh restore  # copy zoo-state/ back into $ZOO_RUNS so the stages resume
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${ZOO_RUNS:-/work/runs}
STATE=zoo-state
case "${1:-}" in
  save)
    pids=$(pgrep -f "egain (gan train|faces train|train) " || true)
    if [ -n "$pids" ]; then
      kill -TERM $pids
      for _ in $(seq 1 120); do pgrep -f "egain (gan train|faces train|train) " >/dev/null || break; sleep 2; done
    fi
    for run in "$RUNS"/*/; do
      name=$(basename "$run")
      [ -f "$run/checkpoint.pt" ] || continue
      mkdir -p "$STATE/$name"
      for f in checkpoint.pt log.jsonl run.json config.json losses.png; do
        [ -f "$run/$f" ] && cp "$run/$f" "$STATE/$name/$f"
      done
      last=$(ls "$run"/samples/*.png 2>/dev/null | sort | tail -n 1 || true)
      [ -n "$last" ] && cp "$last" "$STATE/$name/latest_samples.png"
      echo "saved $name"
    done
    ;;
  restore)
    for dir in "$STATE"/*/; do
      [ -d "$dir" ] || continue
      name=$(basename "$dir")
      mkdir -p "$RUNS/$name/samples"
      for f in checkpoint.pt log.jsonl run.json config.json losses.png; do
        [ -f "$dir/$f" ] && cp "$dir/$f" "$RUNS/$name/$f"
      done
      echo "restored $name"
    done
    ;;
  *) echo "usage: $0 save|restore" >&2; exit 2 ;;
esac
