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

python - "$OUT" "$N" <<'PY'
import json, sys
from pathlib import Path

out, n = Path(sys.argv[1]), int(sys.argv[2])
runs = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/restoration.json"))}


def average_face(n):
    """The parsing baseline: the generator's average face G(w_avg) for every map (a map has no colours)."""
    import torch

    from egain.applications.restoration import parsing_consistency
    from egain.data.synthfaces import SynthFacesDataset
    from egain.faces import load_embedder
    from egain.generators import load_generator
    from egain.metrics import pixel_metrics
    from egain.metrics.identity import identity_similarity

    g = load_generator("zoo:gan-stylegan2-64")
    with torch.no_grad():
        face = g.synthesize(g.latent_avg.view(1, 1, -1).repeat(1, g.n_latent, 1)).clamp(-1, 1)
    ds = SynthFacesDataset.eval_set(size=64, return_parsing=True)
    items = [ds[i] for i in range(n)]
    clean, maps = torch.stack([it[0] for it in items]), torch.stack([it[-1] for it in items])
    faces = face.expand_as(clean)
    r = {k: float(v.mean()) for k, v in pixel_metrics(clean, faces, metrics=("psnr", "ssim", "mae")).items()}
    r["id"] = float(identity_similarity(load_embedder("synthfaces-arcface"), clean, faces).mean())
    r["miou"] = parsing_consistency("synthfaces-parsing", faces, maps)
    r["miou_clean"] = parsing_consistency("synthfaces-parsing", clean, maps)
    return r


def cell(r):
    if not r:
        return "-"
    text = f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['mae']:.4f} / " + (f"{r['id']:.3f}" if "id" in r else "-")
    if "miou" in r:  # parsing: the layout kept, and the parser's ceiling on the clean images
        text += f", mIoU {r['miou']:.3f} (clean images: {r['miou_clean']:.3f})"
    return text


print("| mode | model | n | restored | corrupted input | baseline: the inversion model on the input (parsing: G(w_avg)) |")
print("|---|---|---|---|---|---|")
for name, r in runs.items():
    stem, sep, tag = name.partition("-stylegan2-64-")  # METHOD-MODE-stylegan2-64-TAG
    if not sep:
        continue  # a baseline (METHOD-inversion-TAG) or another folder
    method = stem.rsplit("-", 1)[0]
    base = average_face(r["n"]) if tag == "parsing" else runs.get(f"{method}-inversion-{tag}", {}).get("restored")
    print(
        f"| {tag.replace('x', ' x')} | `{stem}-stylegan2-64` | {r['n']} | {cell(r['restored'])} "
        f"| {cell(r.get('corrupted_input'))} | {cell(base)} |"
    )
print("\n(PSNR dB / SSIM / MAE / ID cosine against the clean images; parsing: mIoU of the bundled parser's")
print("segmentation of the translated faces against the input maps)")
PY
