#!/usr/bin/env bash
# Score every bundled restoration/translation encoder (zoo METHOD-MODE-stylegan2-64, seeds/004 Alg. 5
# and 6) against the clean synthfaces truth, beside two baselines: the corrupted input itself and the
# bundled inversion model of the same method fed the corrupted input. Prints the markdown table of
# docs/applications.md; each run folder keeps restoration.json and restoration.png (clean | input |
# restored). Runs that already have their restoration.json are not redone.
#
#   bash scripts/restoration_eval.sh [OUT]     # default runs/restoration; RESTORE_N images (500)
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
OUT=${1:-runs/restoration}
N=${RESTORE_N:-500}
mkdir -p "$OUT"

score() {  # score RUN_NAME egain-apply-restore-args...
  local run=$1
  shift
  [ -f "$OUT/$run/restoration.json" ] || egain apply restore --n "$N" --seed 0 --out "$OUT/$run" "$@"
}

for manifest in egain/zoo/weights/*-stylegan2-64.json; do
  name=$(basename "$manifest" .json)
  stem=${name%-stylegan2-64}
  mode=${stem##*-}
  method=${stem%-*}
  case "$mode" in colorize | inpaint | superres | sketch | parsing) ;; *) continue ;; esac
  corruptions=("$mode")
  [ "$mode" = superres ] && corruptions=(superres:4 superres:8)  # fixed factors (training draws 1-16)
  for c in "${corruptions[@]}"; do
    tag=${c/:/x}
    score "$name-$tag" --corrupt "$c" --method "$method" --checkpoint "zoo:$name"
    # the inversion model has 3 input channels: no baseline for parsing maps
    [ "$mode" = parsing ] || score "$method-inversion-$tag" --corrupt "$c" --method "$method"
  done
done

python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
runs = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/restoration.json"))}

def cell(r):
    if not r:
        return "-"
    text = f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['mae']:.4f} / " + (f"{r['id']:.3f}" if "id" in r else "-")
    if "miou" in r:  # parsing: the layout kept, and the parser's ceiling on the clean images
        text += f", mIoU {r['miou']:.3f} (clean images: {r['miou_clean']:.3f})"
    return text


print("| mode | model | n | restored | corrupted input | inversion model on the input |")
print("|---|---|---|---|---|---|")
for name, r in runs.items():
    stem, sep, tag = name.partition("-stylegan2-64-")  # METHOD-MODE-stylegan2-64-TAG
    if not sep:
        continue  # a baseline (METHOD-inversion-TAG) or another folder
    method = stem.rsplit("-", 1)[0]
    base = runs.get(f"{method}-inversion-{tag}", {}).get("restored")
    print(
        f"| {tag.replace('x', ' x')} | `{stem}-stylegan2-64` | {r['n']} | {cell(r['restored'])} "
        f"| {cell(r.get('corrupted_input'))} | {cell(base)} |"
    )
print("\n(PSNR dB / SSIM / MAE / ID cosine against the clean images; parsing: mIoU of the bundled parser's")
print("segmentation of the translated faces against the input maps)")
PY
