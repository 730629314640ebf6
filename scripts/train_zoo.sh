#!/usr/bin/env bash
# Train the bundled weights (the "zoo") with the project's own commands. Every stage resumes:
# run it again (same ZOO_RUNS folder) and it continues where it stopped. docs/zoo.md explains the
# choices (sizes, steps) and the order:
#
#   data -> gan-swagan, gan-stylegan2, faces-arcface, faces-magface (independent)
#        -> e4e-stylegan2, e4e-swagan -> hfgi-stylegan2, egain-swagan, egain-external-swagan
#        -> psp-stylegan2, restyle-psp-stylegan2, restyle-e4e-stylegan2, e2style-s1-stylegan2
#           -> e2style-stylegan2 (stage 2 on the frozen stage 1) -> e2style-s3-stylegan2 (stage 3)
#           -> e2style-s2abs-stylegan2 (Table I's 2Stage*: stage 2 predicts the absolute code)
#           -> dse-stylegan2, dse-nossim-stylegan2 (Table V ablation), dse-swagan
#        -> sam-invertibility-stylegan2 (targets start from e4e-stylegan2) -> sam-encoder-stylegan2
#        -> restoration/translation encoders (issue 17): METHOD-MODE-stylegan2 for METHOD in e4e, psp,
#           e2style and MODE in colorize, inpaint, superres, sketch, parsing (parsing needs data-parsing)
#   (the encoder family gets the e4e budget, 6000 steps at batch 8 -- for ReStyle, whose step costs ~5x,
#   the same CPU time: 1200 steps -- so the comparison is fair; a stage
#   trained on top of frozen earlier stages gets 3000, like the delta methods on top of e4e)
#   faces-arcface / faces-cosface as bundled now come from scripts/gpu_world.sh (one H200); the
#   CPU stages below are the recipe for a machine without one.
#
#   bash scripts/train_zoo.sh STAGE        # run one stage (resumes)
#   bash scripts/train_zoo.sh add STAGE    # copy a finished stage into egain/zoo/weights with its manifest
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
DATA=${ZOO_DATA:-/work/data}
RUNS=${ZOO_RUNS:-/work/runs}
export OMP_NUM_THREADS=${ZOO_THREADS:-1} MKL_NUM_THREADS=${ZOO_THREADS:-1}
mkdir -p "$DATA" "$RUNS"
TRAIN="$DATA/sf-train-64"
TRAIN_PARSING="$DATA/sf-train-64-parsing"  # the same images with their parsing maps (--corrupt parsing)
# Later stages read earlier results from the zoo (bundle a stage with `add` before the next needs it),
# so a stage can run in a later session, after the run folders of the earlier ones are gone.
ZOO=egain/zoo/weights

gan() {  # gan ARCH
  egain gan train --arch "$1" --size 64 --style-dim 256 --n-mlp 8 --channel-base 1024 --channel-max 256 \
    --data "$TRAIN" --mirror --augment none --r1 auto --batch 16 --iters "${GAN_ITERS:-6000}" \
    --ckpt-every 100 --sample-every 250 --n-sample 64 --log-every 10 --seed 0 \
    --threads "$OMP_NUM_THREADS" --out "$RUNS/gan-$1-64" --resume auto
}

faces() {  # faces LOSS
  egain faces train --loss "$1" --data "$TRAIN" --out "$RUNS/faces-$1-64" --iters "${FACES_ITERS:-2500}" \
    --batch 64 --eval-every 500 --seed 0 --resume auto
}

inversion() {  # inversion RUN_NAME METHOD ARCH ITERS [extra args]: run folder RUNS/RUN_NAME-ARCH-64
  local run=$1 method=$2 arch=$3 iters=$4
  shift 4
  egain train --method "$method" --generator "$ZOO/gan-$arch-64.pt" --data "$TRAIN" \
    --out "$RUNS/$run-$arch-64" --iters "$iters" --batch 8 --seed 0 \
    --ckpt-every 100 --val-every 250 --resume auto "$@"
}
PROGRESSIVE=(--progressive-start 300 --progressive-every 100)
# ZOO_ID_NET: the ID loss network (the bundled inversion models of the first bundle used the CPU ArcFace
# that faces-arcface-64 replaced; pass its file to keep a new method comparable with them)
ID=(--id-net "${ZOO_ID_NET:-synthfaces-arcface}")

restoration() {  # restoration METHOD MODE: egain train --corrupt MODE on e4e's budget, data and generator
  local method=$1 mode=$2 data=$TRAIN extra=()
  case "$method" in
    e4e) extra=("${PROGRESSIVE[@]}") ;;
    e2style) extra=(--stages 1) ;;  # one stage: the bundled e2style's own budget would add a frozen stage 2
  esac
  # translation (sketch, parsing) has no identity to keep in its input: no ID loss, as pSp's seg-to-face
  case "$mode" in sketch | parsing) extra+=(--lambda-id 0) ;; *) extra+=("${ID[@]}") ;; esac
  [ "$mode" = parsing ] && data=$TRAIN_PARSING
  TRAIN=$data inversion "$method-$mode" "$method" stylegan2 "${E4E_ITERS:-6000}" "${extra[@]}" --corrupt "$mode"
}

stage() {
  case "$1" in
    data)
      [ -f "$TRAIN/labels.jsonl" ] || egain data synthfaces --out "$TRAIN" \
        --identities 2500 --per-identity 8 --size 64 --seed 0 --split train --workers 2 ;;
    data-parsing)
      [ -f "$TRAIN_PARSING/labels.jsonl" ] || egain data synthfaces --out "$TRAIN_PARSING" \
        --identities 2500 --per-identity 8 --size 64 --seed 0 --split train --workers 2 --parsing ;;
    gan-swagan) gan swagan ;;
    gan-stylegan2) gan stylegan2 ;;
    faces-arcface) faces arcface ;;
    faces-magface) faces magface ;;
    # basic encoders: 6000 steps (~37 min on one core); the delta methods start from them: 3000
    e4e-stylegan2) inversion e4e e4e stylegan2 "${E4E_ITERS:-6000}" "${ID[@]}" "${PROGRESSIVE[@]}" ;;
    e4e-swagan) inversion e4e e4e swagan "${E4E_ITERS:-6000}" "${ID[@]}" "${PROGRESSIVE[@]}" ;;
    hfgi-stylegan2) inversion hfgi hfgi stylegan2 "${INV_ITERS:-3000}" "${ID[@]}" "${PROGRESSIVE[@]}" \
      --basic-encoder "$ZOO/e4e-stylegan2-64.pt" ;;
    egain-swagan) inversion egain egain swagan "${INV_ITERS:-3000}" "${ID[@]}" "${PROGRESSIVE[@]}" \
      --basic-encoder "$ZOO/e4e-swagan-64.pt" ;;
    egain-external-swagan) inversion egain-external egain-external swagan "${INV_ITERS:-3000}" "${ID[@]}" \
      "${PROGRESSIVE[@]}" --basic-encoder "$ZOO/e4e-swagan-64.pt" ;;
    # the encoder family (issue 14): e4e's budget each
    psp-stylegan2) inversion psp psp stylegan2 "${E4E_ITERS:-6000}" "${ID[@]}" ;;
    # ReStyle runs the encoder and the generator 5 times per step: e4e's budget in CPU time is ~1200 steps
    restyle-psp-stylegan2) inversion restyle-psp restyle-psp stylegan2 "${RESTYLE_ITERS:-1200}" "${ID[@]}" --iterations 5 ;;
    restyle-e4e-stylegan2) inversion restyle-e4e restyle-e4e stylegan2 "${RESTYLE_ITERS:-1200}" "${ID[@]}" \
      --iterations 5 "${PROGRESSIVE[@]}" ;;
    e2style-s1-stylegan2) inversion e2style-s1 e2style stylegan2 "${E4E_ITERS:-6000}" "${ID[@]}" --stages 1 ;;
    e2style-stylegan2) inversion e2style e2style stylegan2 "${INV_ITERS:-3000}" "${ID[@]}" --stages 2 \
      --stage-checkpoint "$RUNS/e2style-s1-stylegan2-64/model.pt" ;;
    e2style-s3-stylegan2) inversion e2style-s3 e2style stylegan2 "${INV_ITERS:-3000}" "${ID[@]}" --stages 3 \
      --stage-checkpoint "$RUNS/e2style-stylegan2-64/model.pt" ;;
    e2style-s2abs-stylegan2) inversion e2style-s2abs e2style stylegan2 "${INV_ITERS:-3000}" "${ID[@]}" --stages 2 \
      --absolute-refinement --stage-checkpoint "$RUNS/e2style-s1-stylegan2-64/model.pt" ;;
    # DSE has no ID loss; its LPIPS substitute uses the same face network as the others' ID loss
    dse-stylegan2) inversion dse dse stylegan2 "${E4E_ITERS:-6000}" --lr 0.0015 --perceptual-net "${ID[1]}" ;;
    dse-nossim-stylegan2) inversion dse-nossim dse stylegan2 "${E4E_ITERS:-6000}" --lr 0.0015 \
      --perceptual-net "${ID[1]}" --lambda-ssim 0 ;;
    dse-swagan) inversion dse dse swagan "${E4E_ITERS:-6000}" --lr 0.0015 --perceptual-net "${ID[1]}" ;;
    # restoration and translation encoders (seeds/004 Alg. 5/6), e.g. e2style-parsing-stylegan2
    *-colorize-stylegan2 | *-inpaint-stylegan2 | *-superres-stylegan2 | *-sketch-stylegan2 | *-parsing-stylegan2)
      local s=${1%-stylegan2}
      restoration "${s%-*}" "${s##*-}" ;;
    # SAM's invertibility predictor (~40 min on one core): its cost is the targets, one single-space
    # inversion per space (W+, F2, F4, F6) and image, paid once (cached in memory; mirrored images
    # reuse them), so it trains many steps on few images: SAMINV_IMAGES identities x 1 image of the
    # train split (80 -> 65, 8 held out for validation), 200 target steps (sam's --measure-steps,
    # the scale its calibrated tau was measured on), e4e starts; docs/methods.md "sam-invertibility"
    sam-invertibility-stylegan2)
      egain train --method sam-invertibility --generator "$ZOO/gan-stylegan2-64.pt" \
        --data "synthfaces:${SAMINV_IMAGES:-80}x1,seed=0,split=train" --out "$RUNS/sam-invertibility-stylegan2-64" \
        --iters "${SAMINV_ITERS:-1000}" --batch 8 --lr 1e-3 --seed 0 --target-steps "${SAMINV_TARGET_STEPS:-200}" \
        --target-init e4e --target-encoder-checkpoint "$ZOO/e4e-stylegan2-64.pt" \
        --ckpt-every 100 --val-every 500 --resume auto ;;
    # SAM's encoder variant (our design, docs/methods.md): e4e's budget, on the bundled predictor's
    # maps; SAM's objective with its published weights, the perceptual term the face-feature distance
    sam-encoder-stylegan2) inversion sam-encoder sam-encoder stylegan2 "${E4E_ITERS:-6000}" \
      --invertibility "$ZOO/sam-invertibility-stylegan2-64.pt" ;;
    *) echo "unknown stage '$1'" >&2; exit 2 ;;
  esac
}

add() {  # add STAGE: bundle a finished stage
  local name
  case "$1" in
    gan-*) name="$1-64"
      # FID over the bundled synthfaces ArcFace features (no Inception weights offline; named in the scores)
      egain gan fid --checkpoint "$RUNS/$name/generator.pt" --data "$TRAIN" --n 5000 --real-floor --json "$RUNS/$name/fid.json"
      python -c 'import json, sys; r = json.load(open(sys.argv[1])); json.dump({"fid": round(r["fid"], 3), "fid_real_floor": round(r["fid_real_floor"], 3), "fid_features": r["features"], "fid_images": r["n"]}, open(sys.argv[2], "w"))' \
        "$RUNS/$name/fid.json" "$RUNS/$name/scores.json"
      egain zoo add --name "$name" --weights "$RUNS/$name/generator.pt" --run-info "$RUNS/$name/run.json" --kind generator \
        --scores "$RUNS/$name/scores.json" ;;
    faces-*) name="$1-64"
      egain zoo add --name "$name" --weights "$RUNS/$name/embedder.pt" --run-info "$RUNS/$name/run.json" --kind face-embedder ;;
    *) name="$1-64"
      local arch=${1##*-} half=()
      local notes=""
      # the restoration/translation encoders are stored as float16 (half the bytes; they load as float32),
      # and SAM's encoder, whose W+ head alone is a 4096 x 2560 linear layer
      case "$1" in *-colorize-* | *-inpaint-* | *-superres-* | *-sketch-* | *-parsing-* | sam-encoder-*) half=(--half) ;; esac
      # SAM's perceptual terms are LPIPS-VGG in the thesis; no LPIPS weights can be had offline here
      case "$1" in sam-*) notes="perceptual terms (loss and spatial error maps): the face-feature distance of \
synthfaces-arcface and its spatial version, not LPIPS-VGG (no LPIPS weights offline); docs/methods.md SAM" ;; esac
      egain zoo add --name "$name" --weights "$RUNS/$name/model.pt" --run-info "$RUNS/$name/run.json" --kind method \
        --generator-zoo "gan-$arch-64" --notes "$notes" "${half[@]}" ;;
  esac
}

if [ "${1:-}" = add ]; then add "${2:?stage}"; else stage "${1:?stage (see the header)}"; fi
