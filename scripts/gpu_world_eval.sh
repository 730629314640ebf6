#!/usr/bin/env bash
# Score what scripts/gpu_world.sh trained against the bundled (old) networks, on a CPU:
#   faces: EER, genuine / impostor mean cosine, sigma-2 blur and 16 px round-trip similarity,
#          on identities of the synthfaces test split (never trained on by either generation);
#   gans:  FID (egain gan fid --real-floor, features of the OLD bundled synthfaces-arcface, so old
#          and new are measured with one ruler) and the period-2 power ratio of samples vs reals.
# Prints one table and writes DIR/eval/summary.json.
#
#   bash scripts/gpu_world_eval.sh DIR     # DIR holds faces-*-64.pt and gan-*-64.pt from the GPU run
# Env: EVAL_N (FID images, default 5000 as in the zoo manifests), EGAIN_GPU_WORLD_SMOKE=1 (tiny).
set -euo pipefail
DIR=${1:?usage: gpu_world_eval.sh DIR_WITH_RESULTS}
SMOKE=${EGAIN_GPU_WORLD_SMOKE:-0}
N=${EVAL_N:-5000}
if [ "$SMOKE" = 1 ]; then N=${EVAL_N:-16}; fi
export PYTHONPATH=$PWD EGAIN_NO_PROGRESS=1
PY=(python3 -m egain.cli.main)
EV="$DIR/eval"
mkdir -p "$EV"

# held-out identities with several images each (verification needs genuine pairs)
if [ ! -f "$EV/faces-test/labels.jsonl" ]; then
    if [ "$SMOKE" = 1 ]; then ids=60; else ids=2000; fi
    "${PY[@]}" data synthfaces --out "$EV/faces-test" --identities "$ids" --per-identity 5 --split test --workers 2
fi
# reals for FID and the spectrum: 2N images (two disjoint sets for the real-vs-real floor)
if [ ! -f "$EV/reals/labels.jsonl" ]; then
    "${PY[@]}" data synthfaces --out "$EV/reals" --identities $(((2 * N + 3) / 4)) --per-identity 4 --workers 2
fi

declare -A EMB=([arcface-old]=synthfaces-arcface [magface-old]=synthfaces-magface
    [arcface-new]="$DIR/faces-arcface-64.pt" [cosface-new]="$DIR/faces-cosface-64.pt")
for name in arcface-old magface-old arcface-new cosface-new; do
    spec=${EMB[$name]}
    if [ "${spec%.pt}" != "$spec" ] && [ ! -f "$spec" ]; then
        echo "skip $name: $spec missing"
        continue
    fi
    "${PY[@]}" faces evaluate --embedder "$spec" --data "$EV/faces-test" --identities all \
        --device cpu --out "$EV/faces-$name" || echo "faces evaluate failed for $name"
done

declare -A GEN=([stylegan2-old]=zoo:gan-stylegan2-64 [swagan-old]=zoo:gan-swagan-64
    [stylegan2-new]="$DIR/gan-stylegan2-64.pt" [swagan-new]="$DIR/gan-swagan-64.pt")
for name in stylegan2-old swagan-old stylegan2-new swagan-new; do
    ckpt=${GEN[$name]}
    if [ "${ckpt#zoo:}" != "$ckpt" ]; then
        ckpt=$(python3 -c "import sys; from egain.zoo import bundled_path; print(bundled_path(sys.argv[1]))" "${ckpt#zoo:}")
    fi
    [ -f "$ckpt" ] || { echo "skip $name: $ckpt missing"; continue; }
    "${PY[@]}" gan fid --checkpoint "$ckpt" --data "$EV/reals" --n "$N" --real-floor \
        --features synthfaces-arcface --device cpu --json "$EV/fid-$name.json" || echo "fid failed for $name"
    python3 - "$ckpt" "$EV/reals" "$N" "$EV/spectral-$name.json" <<'EOF'
import json, sys
import torch
from egain.generators import load_generator
from egain.metrics.spectral import period2_power
from egain.utils.images import list_images, load_image

ckpt, reals, n, out = sys.argv[1], sys.argv[2], min(int(sys.argv[3]), 1000), sys.argv[4]
real = torch.stack([load_image(f, 64) for f in list_images(reals)[:n]])
G = load_generator(ckpt, device="cpu").eval()
z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    fake = torch.cat([G.synthesize(G.mapping(c), "random").clamp(-1, 1) for c in z.split(100)])
p_fake, p_real = float(period2_power(fake).mean()), float(period2_power(real).mean())
json.dump({"period2_fake": p_fake, "period2_real": p_real, "period2_ratio": p_fake / p_real, "n": n},
          open(out, "w"), indent=2)
EOF
done

python3 - "$EV" <<'EOF'
import json, sys
from pathlib import Path

ev = Path(sys.argv[1])
def load(p):
    return json.loads(p.read_text()) if p.exists() else {}
summary = {"faces": {}, "gans": {}}
print(f"{'face net':14s} {'EER':>7s} {'genuine':>8s} {'impostor':>9s} {'blur2':>7s} {'round16':>8s}   target: EER<=2%, imp<=0.4, gen>=0.85, distortions clearly < genuine")
for name in ("arcface-old", "magface-old", "arcface-new", "cosface-new"):
    r = load(ev / f"faces-{name}" / "report.json")
    if not r:
        continue
    summary["faces"][name] = r
    print(f"{name:14s} {r['eer']:7.2%} {r['genuine_mean']:8.3f} {r['impostor_mean']:9.3f} "
          f"{r.get('distortion_blur2', float('nan')):7.3f} {r.get('distortion_round16', float('nan')):8.3f}")
print()
print(f"{'generator':14s} {'FID':>7s} {'floor':>7s} {'p2 ratio':>9s}   target: FID <= half of old, p2 ratio <= 1.5")
for name in ("stylegan2-old", "stylegan2-new", "swagan-old", "swagan-new"):
    f, s = load(ev / f"fid-{name}.json"), load(ev / f"spectral-{name}.json")
    if not f and not s:
        continue
    summary["gans"][name] = {**f, **s}
    print(f"{name:14s} {f.get('fid', float('nan')):7.2f} {f.get('fid_real_floor', float('nan')):7.3f} "
          f"{s.get('period2_ratio', float('nan')):9.2f}")
(ev / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
print(f"\nwrote {ev / 'summary.json'}")
EOF
