"""``egain gan train|sample|fid|probe``: train StyleGAN2 / SWAGAN on an image folder, draw grids, score.

``probe`` measures how linearly W encodes classifier-scored attributes (:mod:`egain.metrics.probe`).

Training runs on one process or under ``torchrun --nproc_per_node N egain gan train ...`` (the same
command); see :mod:`egain.training.gan` for the algorithm and its defaults.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from egain.cli.argtypes import checkpoint_path, positive_int
from egain.errors import EgainError


def _r1_value(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got '{text}'") from None


def _optional_float(text: str) -> float | None:
    if text.lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got '{text}'") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("gan", help="train and sample StyleGAN2 / SWAGAN generators")
    sub = parser.add_subparsers(dest="gan_command", metavar="{train,sample,fid,probe}")
    _register_train(sub)
    _register_sample(sub)
    _register_fid(sub)
    _register_probe(sub)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a generator on an image folder (DDP under torchrun)",
        description="Train StyleGAN2/SWAGAN with the StyleGAN2 recipe (non-saturating loss, lazy R1, "
        "path-length regularisation, EMA, style mixing). Writes RUN_DIR/checkpoint.pt (resumable), "
        "RUN_DIR/samples/*.png, RUN_DIR/log.jsonl and, when finished, RUN_DIR/generator.pt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m = p.add_argument_group("model")
    m.add_argument("--arch", choices=("stylegan2", "swagan"), default="stylegan2")
    m.add_argument("--size", type=int, default=64, help="output resolution (power of two >= 16)")
    m.add_argument("--style-dim", type=int, default=None, help="latent width (generator default if unset)")
    m.add_argument("--n-mlp", type=int, default=None, help="mapping-network depth")
    m.add_argument("--channel-base", type=int, default=None, help="channel table base")
    m.add_argument("--channel-max", type=int, default=None, help="channel table cap")
    m.add_argument("--channel-multiplier", type=int, default=None, help="channel multiplier (StyleGAN2: 2)")
    d = p.add_argument_group("data")
    d.add_argument(
        "--data", required=True, help="folder of training images (any size; resized + centre-cropped)"
    )
    d.add_argument("--mirror", action="store_true", help="random horizontal flips of the reals")
    d.add_argument(
        "--preload",
        choices=("auto", "yes", "no"),
        default="auto",
        help="decode the whole dataset into memory",
    )
    d.add_argument("--workers", type=int, default=2, help="DataLoader workers when not preloaded")
    o = p.add_argument_group("optimisation")
    o.add_argument("--out", required=True, help="run folder (checkpoint, samples, log)")
    o.add_argument("--batch", type=int, default=16, help="global batch size (split over processes)")
    o.add_argument("--iters", type=int, default=800_000, help="total training steps")
    o.add_argument("--lr", type=float, default=0.002)
    o.add_argument("--r1", type=_r1_value, default=10.0, help="R1 gamma, or 'auto' = 0.0002*size^2/batch")
    o.add_argument("--d-reg-every", type=int, default=16, help="lazy R1 interval")
    o.add_argument("--path-regularize", type=float, default=2.0, help="path-length weight (0 disables)")
    o.add_argument("--path-batch-shrink", type=int, default=2)
    o.add_argument("--g-reg-every", type=int, default=4, help="lazy path-length interval")
    o.add_argument("--mixing", type=float, default=0.9, help="style-mixing probability")
    o.add_argument("--ema-kimg", type=float, default=None, help="EMA half-life in kimg (default 10*batch/32)")
    o.add_argument("--ema-rampup", type=_optional_float, default=0.05, help="EMA ramp-up ratio, or 'none'")
    a = p.add_argument_group("augmentation")
    a.add_argument("--augment", choices=("none", "diffaug", "ada"), default="none")
    a.add_argument("--augment-p", type=float, default=0.0, help="initial ADA probability")
    a.add_argument(
        "--ada-target", type=_optional_float, default=0.6, help="ADA r_t target ('none' = fixed p)"
    )
    a.add_argument("--ada-kimg", type=float, default=500.0, help="kimg for p to go from 0 to 1")
    a.add_argument("--ada-interval", type=int, default=4, help="steps between p updates")
    a.add_argument("--diffaug-policy", default="color,translation,cutout")
    r = p.add_argument_group("run")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto", help="auto, cpu or cuda")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    r.add_argument("--resume", default=None, help="'auto' (RUN_DIR/checkpoint.pt if present) or a checkpoint")
    r.add_argument("--ckpt-every", type=int, default=1000, help="steps between checkpoints")
    r.add_argument("--keep-snapshots", type=int, default=0, help="also keep the last K checkpoints")
    r.add_argument("--sample-every", type=int, default=1000, help="steps between sample grids")
    r.add_argument("--n-sample", type=int, default=64, help="images in each sample grid")
    r.add_argument("--log-every", type=int, default=50, help="steps between log.jsonl records")
    r.add_argument("--stop-after", type=int, default=None, help="stop after N steps without saving (tests)")
    r.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="wall-time budget: end the run (checkpoint, generator.pt) at the step in progress "
        "once this many minutes have passed since the trainer started",
    )
    r.add_argument("--export", default=None, help="also write the final EMA generator here")
    from egain import presets

    presets.add_argument(p, "gan-train")
    p.set_defaults(func=_train)


def _register_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="draw a grid of samples from a generator or training checkpoint",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        type=checkpoint_path,
        help="generator.pt, checkpoint.pt, a rosinality .pt or zoo:NAME",
    )
    p.add_argument("--n", type=positive_int, default=16, help="number of samples")
    p.add_argument("--out", default="samples.png", help="grid PNG to write")
    p.add_argument("--out-dir", default=None, help="also write each sample as its own PNG here")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi (1 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default: square)")
    p.add_argument("--noise", choices=("const", "random", "none"), default="const", help="noise mode")
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_sample)


def _train(args: argparse.Namespace) -> int:
    from egain import presets
    from egain.training.gan import GanTrainConfig, train_gan
    from egain.utils.paths import check_output_dir, check_output_file

    if applied := presets.apply(args):
        print(f"preset {args.preset}: " + ", ".join(f"{k}={v}" for k, v in applied.items()))
    check_output_dir(args.out, "run folder")
    if args.export:
        check_output_file(args.export, "--export")

    cfg = GanTrainConfig(
        data=args.data,
        out=args.out,
        arch=args.arch,
        size=args.size,
        style_dim=args.style_dim,
        n_mlp=args.n_mlp,
        channel_base=args.channel_base,
        channel_max=args.channel_max,
        channel_multiplier=args.channel_multiplier,
        batch=args.batch,
        iters=args.iters,
        lr=args.lr,
        r1=args.r1,
        d_reg_every=args.d_reg_every,
        path_regularize=args.path_regularize,
        path_batch_shrink=args.path_batch_shrink,
        g_reg_every=args.g_reg_every,
        mixing=args.mixing,
        ema_kimg=args.ema_kimg,
        ema_rampup=args.ema_rampup,
        mirror=args.mirror,
        augment=args.augment,
        augment_p=args.augment_p,
        ada_target=args.ada_target,
        ada_kimg=args.ada_kimg,
        ada_interval=args.ada_interval,
        diffaug_policy=args.diffaug_policy,
        preload=args.preload,
        workers=args.workers,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        resume=args.resume,
        ckpt_every=args.ckpt_every,
        keep_snapshots=args.keep_snapshots,
        sample_every=args.sample_every,
        n_sample=args.n_sample,
        log_every=args.log_every,
        stop_after=args.stop_after,
        max_minutes=args.max_minutes,
        export=args.export,
    )
    summary = train_gan(cfg)
    if summary.get("stopped"):
        print(
            f"stopped at step {summary['step']}; checkpoint saved in {summary['out']} "
            "(continue with --resume auto)"
        )
        return 130
    if summary["step"] < cfg.iters and "generator" not in summary:
        print(f"stopped after step {summary['step']} of {cfg.iters} (--stop-after)")
    if "generator" in summary:
        budget = f" (--max-minutes {cfg.max_minutes:g} reached)" if summary["step"] < cfg.iters else ""
        print(f"trained {summary['step']} steps{budget}; generator written to {summary['generator']}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    import torch

    from egain.generators import load_generator
    from egain.utils.device import resolve_device
    from egain.utils.images import save_grid, save_image

    if args.n < 1:
        raise EgainError(f"--n must be >= 1, got {args.n}")
    if not 0.0 <= args.truncation <= 1.0:
        raise EgainError(f"--truncation is a psi in [0, 1], got {args.truncation}")
    from egain.utils.paths import check_output_dir, check_output_file

    check_output_file(args.out, "sample grid")
    if args.out_dir:
        check_output_dir(args.out_dir, "--out-dir")
    device = resolve_device(args.device)
    G = load_generator(args.checkpoint, device=device)
    G.eval()
    gen = torch.Generator().manual_seed(args.seed)
    z = torch.randn(args.n, G.style_dim, generator=gen)
    images = []
    with torch.no_grad():
        mean = None
        if args.truncation < 1.0:
            torch.manual_seed(args.seed)
            mean = G.mean_latent(4096)
        if args.noise == "random":
            torch.manual_seed(args.seed)
        for chunk in z.split(max(1, args.batch)):
            w = G.mapping(chunk.to(device), truncation=args.truncation, truncation_latent=mean)
            images.append(G.synthesize(w, noise_mode=args.noise).cpu())
    images_t = torch.cat(images)
    nrow = args.nrow or max(1, math.ceil(math.sqrt(args.n)))
    save_grid(images_t, args.out, nrow=nrow)
    if args.out_dir:
        out_dir = Path(args.out_dir)
        for i, img in enumerate(images_t):
            save_image(img, out_dir / f"{i:05d}.png")
    print(f"wrote {args.n} samples to {args.out}" + (f" and {args.out_dir}/" if args.out_dir else ""))
    return 0


def _register_fid(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fid",
        help="Fréchet distance between generator samples and an image folder",
        description=(
            "FID between --n generator samples and the images of --data, over the features of a face "
            "embedder (Inception weights cannot be fetched here; the extractor is named in the output)."
        ),
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        type=checkpoint_path,
        help="generator (ours, a gan-train checkpoint, rosinality) or zoo:NAME",
    )
    p.add_argument("--data", required=True, help="folder of real images")
    p.add_argument("--n", type=positive_int, default=5000, help="samples and real images used (default 5000)")
    p.add_argument("--features", default="synthfaces-arcface", help="face-embedder spec for the features")
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--batch", type=positive_int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--real-floor",
        action="store_true",
        help="also the FID between two disjoint sets of --n real images: the value a perfect generator "
        "would get with this many images (sampling noise floor), to read the FID against",
    )
    p.add_argument("--json", help="also write the result as JSON here")
    p.add_argument(
        "--allow-few",
        action="store_true",
        help=f"compute an FID from fewer than {MIN_FID_IMAGES} images (its bias is then large)",
    )
    p.set_defaults(func=_fid)


#: below this many images an FID is refused (the covariances are too poorly estimated to mean anything)
MIN_FID_IMAGES = 50
#: below this many an FID is reported with a loud warning: its bias grows as 1/n (the bundle uses 5000)
RELIABLE_FID_IMAGES = 2000


def _fid(args: argparse.Namespace) -> int:

    import torch

    from egain.data.folder import ImageFolderDataset
    from egain.faces import load_embedder
    from egain.generators import load_generator
    from egain.metrics.fid import extract_features, fid_from_features
    from egain.runtime.files import atomic_write_json
    from egain.runtime.logging import progress
    from egain.utils.device import resolve_device

    if args.n < 2:
        raise EgainError(f"--n must be >= 2, got {args.n}")
    device = resolve_device(args.device)
    embedder = load_embedder(args.features, device=device)
    G = load_generator(args.checkpoint, device=device).eval()
    data = ImageFolderDataset(args.data, G.size)
    # With --real-floor the reals are split into two disjoint sets of n: there must be 2n of them.
    n = min(args.n, len(data) // 2 if args.real_floor else len(data))
    if n < 2:
        raise EgainError(
            f"--data {args.data} has {len(data)} images; the FID needs at least 2 (4 with --real-floor)"
        )
    if n < MIN_FID_IMAGES and not args.allow_few:
        raise EgainError(
            f"an FID from {n} images means nothing (covariances of the features cannot be estimated); "
            f"use at least {RELIABLE_FID_IMAGES} (--n, and as many images in --data), or --allow-few"
        )
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed)).tolist()

    def real_features(idx: list[int], desc: str) -> torch.Tensor:
        batches = (torch.stack([data[i] for i in idx[s : s + args.batch]]) for s in range(0, n, args.batch))
        return extract_features(
            progress(batches, total=-(-n // args.batch), desc=desc), embedder.embed, device
        )

    real = real_features(order[:n], "fid reals")
    gen = torch.Generator().manual_seed(args.seed)
    mean = G.mean_latent(4096) if args.truncation < 1.0 else None

    def fakes():
        for s in range(0, n, args.batch):
            z = torch.randn(min(args.batch, n - s), G.style_dim, generator=gen).to(device)
            with torch.no_grad():
                yield G.synthesize(G.mapping(z, truncation=args.truncation, truncation_latent=mean))

    fake = extract_features(
        progress(fakes(), total=-(-n // args.batch), desc="fid samples"), embedder.embed, device
    )
    value = fid_from_features(real, fake)
    result = {
        "fid": value,
        "features": args.features,
        "n": n,
        "truncation": args.truncation,
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
    }
    message = f"FID ({args.features} features, {n} images): {value:.3f}"
    if args.real_floor:
        result["fid_real_floor"] = fid_from_features(
            real, real_features(order[n : 2 * n], "fid reals (floor)")
        )
        message += f" (real-vs-real floor {result['fid_real_floor']:.3f})"
    print(message)
    if n < RELIABLE_FID_IMAGES:
        result["warning"] = (
            f"only {n} images: FID is biased upwards by roughly 1/n and not comparable with FIDs at other "
            f"sample sizes; use --n {RELIABLE_FID_IMAGES} or more (the bundle's figures use 5000)"
        )
        print(f"egain gan fid: warning: {result['warning']}", file=sys.stderr)
    if args.json:
        atomic_write_json(args.json, result)
    return 0


def _register_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="linear probe: Spearman of a ridge fit from w to attribute scores, on held-out samples",
        description=(
            "Sample z, w = mapping(z), images = synthesize(w); score the images with an attribute "
            "classifier (logits for binary attributes); fit ridge regression w -> score on the first "
            "--train-fraction of the samples and report the Spearman correlation on the rest. "
            "A generator whose W encodes the attributes linearly reaches >= 0.7."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        type=checkpoint_path,
        help="generator (ours, gan-train checkpoint, rosinality) or zoo:NAME",
    )
    p.add_argument(
        "--classifier",
        required=True,
        help="attribute classifier: RUN/classifier.pt, zoo:NAME, synthfaces-attributes",
    )
    p.add_argument("--attributes", default="smile,glasses,yaw", help="comma-separated attribute names")
    p.add_argument(
        "--n",
        type=int,
        default=5000,
        help="samples (fit + held out); compare generators at the same --n and --seed",
    )
    p.add_argument("--train-fraction", type=float, default=0.75)
    p.add_argument("--alpha", type=float, default=None, help="ridge strength x n (default: cross-validated)")
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    p.set_defaults(func=_probe)


def resolve_generator_spec(spec: str) -> str:
    """``zoo:NAME`` -> the bundled file; anything else unchanged."""
    if spec.startswith("zoo:"):
        from egain.zoo import bundled_path

        return str(bundled_path(spec[4:]))
    return spec


def _probe(args: argparse.Namespace) -> int:

    from egain.faces.attributes import load_classifier
    from egain.generators import load_generator
    from egain.metrics.probe import latent_probe
    from egain.utils.device import resolve_device

    if not 0.0 <= args.truncation <= 1.0:
        raise EgainError(f"--truncation is a psi in [0, 1], got {args.truncation}")
    device = resolve_device(args.device)
    G = load_generator(args.checkpoint, device=device).eval()
    clf = load_classifier(args.classifier, device=device)
    attributes = [a for a in args.attributes.split(",") if a]
    unknown = [a for a in attributes if a not in clf.names]
    if unknown:
        raise EgainError(
            f"--attributes {unknown} are not scored by {args.classifier}; it scores {', '.join(clf.names)}"
        )
    result = latent_probe(
        G,
        clf,
        n=args.n,
        attributes=attributes,
        seed=args.seed,
        train_fraction=args.train_fraction,
        alpha=args.alpha,
        batch=args.batch,
        truncation=args.truncation,
        details=True,
    )
    print(
        f"linear probe w -> score, {result.n_train} fit / {result.n_test} held-out samples of {args.checkpoint}:"
    )
    for name in attributes:
        print(
            f"  {name:<17} Spearman {result.spearman[name]:.3f} (fit {result.train_spearman[name]:.3f}, "
            f"score std {result.score_std[name]:.3g}, alpha {result.alpha[name]:g})"
        )
    if args.json:
        record = {
            "checkpoint": args.checkpoint,
            "classifier": args.classifier,
            "truncation": args.truncation,
            "seed": args.seed,
            **result.to_dict(),
        }
        from egain.runtime.files import atomic_write_json

        atomic_write_json(args.json, record)
    return 0
