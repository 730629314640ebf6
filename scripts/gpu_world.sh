#!/usr/bin/env bash
# Issue 13 items 4-5 in one GPU slot: a stronger synthfaces world, trained concurrently on one GPU.
#
#   data    egain data synthfaces, train split only (never the eval/hard identities), 16 workers
#   faces   ArcFace ID-loss network (what methods train against)          -> faces-arcface-64.pt
#           CosFace scorer: other loss, widths, embedding size and seed   -> faces-cosface-64.pt
#   gans    StyleGAN2-64 and SWAGAN-64, bundled widths, batch 64           -> gan-stylegan2-64.pt,
#                                                                            gan-swagan-64.pt
# All four jobs run at once (background jobs, `wait`), each with a wall-time budget
# (--max-minutes: the trainers end at the step in progress and export), so the whole script ends
# within about 8.5 minutes. Results: the four weight files, gpu_world.log and logs.tar.gz (run.json,
# log.jsonl, curves, sample grids, ROC plots) directly under $OUT -- six files.
#
# Device machine, from the repo root:   bash scripts/gpu_world.sh
# CPU proof of the script (seconds):    EGAIN_GPU_WORLD_SMOKE=1 OUT=/tmp/gw bash scripts/gpu_world.sh
# Afterwards, on a CPU:                 bash scripts/gpu_world_eval.sh DIR_WITH_THE_FILES
set -euo pipefail

SMOKE=${EGAIN_GPU_WORLD_SMOKE:-0}
OUT=${OUT:-/tmp/gpu_world_out}
WORK=${EGAIN_GPU_WORLD_WORK:-/tmp/gpu_world_work}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 EGAIN_NO_PROGRESS=1
PY=(python3 -m egain.cli.main)
mkdir -p "$OUT" "$WORK/logs"
exec > >(tee "$OUT/gpu_world.log") 2>&1
START=$SECONDS
stamp() { echo "[gpu_world +$((SECONDS - START))s] $*"; }

if [ "$SMOKE" = 1 ]; then
    DEVICE=cpu WORKERS=2 THREADS=1
    IDS=24 PER=4                      # ~20 train identities x 4
    FACE_MIN=0.25 GAN_MIN=0.25 HARD_CAP=120
    FACE_BATCH=16 FACE_EVAL_EVERY=0 FACE_WARMUP=2
    ARC_NET=(--widths 8,16,16,32 --units 1,1,1,1 --stem 8 --embedding-dim 32)
    COS_NET=(--widths 8,16,32,32 --units 1,1,1,1 --stem 8 --embedding-dim 16)
    GAN_NET=(--style-dim 32 --n-mlp 2 --channel-base 128 --channel-max 32)
    GAN_BATCH=4 GAN_SAMPLE_EVERY=1000 GAN_CKPT_EVERY=1000
else
    DEVICE=cuda WORKERS=16 THREADS=4
    # ~4000 train identities x 8 (the split keeps ~80 % of 5000), ~32k images, ~400 MB uint8:
    # several times the identities of the bundled networks' data (~800), rendered here in ~15-30 s.
    IDS=5000 PER=8
    # Budgets count from each trainer's start (data loading included); rendering ~30 s before,
    # final evaluation/export ~30 s after: ~8 min in all. HARD_CAP stops a job that overruns.
    FACE_MIN=6.5 GAN_MIN=6.5 HARD_CAP=460
    FACE_BATCH=512 FACE_EVAL_EVERY=4000 FACE_WARMUP=500
    # ID-loss net: 1.9x the parameters of the bundled one (1.24x its CPU time per image), ArcFace.
    ARC_NET=(--widths 32,64,128,256 --units 1,2,3,1 --stem 32 --embedding-dim 256)
    # Scorer: another architecture (wider, shallower stage 3, 256-d), loss (CosFace) and seed.
    COS_NET=(--widths 40,80,160,320 --units 1,2,2,1 --stem 32 --embedding-dim 256)
    # Generators: the bundled widths (1024/256: 13 MiB files; 2048/256 would be 18 MiB, over the
    # 16 MiB a returned file may have, and 2x slower CPU inversion), trained on 4x the images of
    # the bundled CPU runs (batch 64 instead of 16, thousands of steps in the budget).
    GAN_NET=(--style-dim 256 --n-mlp 8 --channel-base 1024 --channel-max 256)
    GAN_BATCH=64 GAN_SAMPLE_EVERY=1000 GAN_CKPT_EVERY=1000
fi

stamp "smoke=$SMOKE device=$DEVICE out=$OUT work=$WORK"
{ nvidia-smi || true; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
    >"$WORK/logs/hardware.txt" 2>&1
cat "$WORK/logs/hardware.txt"

pack_logs() {
    # one small file: job logs, each run's run.json / log.jsonl / config / plots, last sample grids
    for run in gan-stylegan2 gan-swagan; do
        last=$(ls "$WORK/runs/$run/samples/"*.png 2>/dev/null | tail -n 1 || true)
        if [ -n "$last" ]; then cp "$last" "$WORK/logs/$run-samples-$(basename "$last")"; fi
    done
    (cd "$WORK" && find runs -maxdepth 2 \( -name '*.json' -o -name '*.jsonl' -o -name '*.png' \) \
        -print0 2>/dev/null | xargs -0 tar -czf "$OUT/logs.tar.gz" logs) || true
}
trap pack_logs EXIT

# ---------------------------------------------------------------- data
rm -rf "$WORK/train" "$WORK/runs"
"${PY[@]}" data synthfaces --out "$WORK/train" --identities "$IDS" --per-identity "$PER" \
    --split train --workers "$WORKERS" 2>&1 | tee "$WORK/logs/render.log"
stamp "rendered $(ls "$WORK/train" | grep -v contact_sheet | grep -c '\.png$') images"

# ---------------------------------------------------------------- four trainings at once
run_job() { # name, command...: runs in the background under the hard cap, log in logs/NAME.log
    local name=$1
    shift
    (OMP_NUM_THREADS=$THREADS timeout --signal=TERM --kill-after=30 "$HARD_CAP" "$@" \
        >"$WORK/logs/$name.log" 2>&1; echo "exit $?" >>"$WORK/logs/$name.log") &
    PIDS+=("$!")
    stamp "started $name (pid $!)"
}
PIDS=()
FACE_COMMON=(--data "$WORK/train" --batch "$FACE_BATCH" --iters 1000000 --max-minutes "$FACE_MIN"
    --warmup "$FACE_WARMUP" --eval-every "$FACE_EVAL_EVERY" --ckpt-every 2000 --log-every 100
    --holdout 0.1 --device "$DEVICE" --resume none)
run_job faces-arcface "${PY[@]}" faces train --loss arcface --margin 0.5 --scale 64 --seed 0 \
    "${ARC_NET[@]}" "${FACE_COMMON[@]}" --out "$WORK/runs/faces-arcface"
run_job faces-cosface "${PY[@]}" faces train --loss cosface --margin 0.35 --scale 64 --seed 1 \
    "${COS_NET[@]}" "${FACE_COMMON[@]}" --out "$WORK/runs/faces-cosface"
GAN_COMMON=(--size 64 "${GAN_NET[@]}" --data "$WORK/train" --mirror --augment none --r1 auto
    --batch "$GAN_BATCH" --iters 1000000 --max-minutes "$GAN_MIN" --ckpt-every "$GAN_CKPT_EVERY"
    --sample-every "$GAN_SAMPLE_EVERY" --n-sample 64 --log-every 100 --seed 0 --threads "$THREADS"
    --device "$DEVICE" --preload yes)
run_job gan-stylegan2 "${PY[@]}" gan train --arch stylegan2 "${GAN_COMMON[@]}" --out "$WORK/runs/gan-stylegan2"
run_job gan-swagan "${PY[@]}" gan train --arch swagan "${GAN_COMMON[@]}" --out "$WORK/runs/gan-swagan"

status=0
for pid in "${PIDS[@]}"; do wait "$pid" || status=1; done
stamp "all jobs ended"
for name in faces-arcface faces-cosface gan-stylegan2 gan-swagan; do
    echo "== $name: $(tail -n 3 "$WORK/logs/$name.log" | tr '\n' ' ')"
done

# ---------------------------------------------------------------- results (compact files only)
for name in faces-arcface faces-cosface; do
    if [ -f "$WORK/runs/$name/embedder.pt" ]; then
        cp "$WORK/runs/$name/embedder.pt" "$OUT/$name-64.pt"
    else
        echo "MISSING $name embedder.pt"
        status=1
    fi
done
for name in gan-stylegan2 gan-swagan; do
    run="$WORK/runs/$name"
    if [ ! -f "$run/generator.pt" ] && [ -f "$run/checkpoint.pt" ]; then
        # stopped by the hard cap: the EMA generator of the last checkpoint, in the compact format
        python3 -c "import sys; from egain.generators import load_generator, save_generator; \
save_generator(load_generator(sys.argv[1], device='cpu'), sys.argv[2])" "$run/checkpoint.pt" "$run/generator.pt" &&
            echo "$name: generator.pt exported from checkpoint.pt (hard cap)"
    fi
    if [ -f "$run/generator.pt" ]; then
        cp "$run/generator.pt" "$OUT/$name-64.pt"
    else
        echo "MISSING $name generator.pt"
        status=1
    fi
done
ls -l "$OUT"
stamp "done (status $status)"
exit $status
