"""``egain directions learn|evaluate|list``: learn edit directions for a generator, re-measure what
they move on several seeds, list the known ones.

``learn`` samples w, scores the images with the attribute classifier and writes a *direction set*
(InterFaceGAN boundaries per attribute, GANSpace components, SeFa directions; each ``NAME.pt`` with
a ``NAME.json`` manifest, plus ``manifest.json``) into ``--out``. With ``--from-images DIR --method M``
it instead learns supervised directions from the labelled images' inverted latents (synthfaces
``labels.jsonl``). Named directions are looked up in ``$EGAIN_DIRECTIONS`` and the bundled
``egain/zoo/directions`` by the generator's weight fingerprint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from egain.cli.argtypes import non_negative_int, positive_int
from egain.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("directions", help="learn and list latent edit directions")
    s = p.add_subparsers(dest="directions_command", metavar="ACTION")
    learn = s.add_parser("learn", help="learn a direction set for a generator (InterFaceGAN, GANSpace, SeFa)")
    learn.add_argument(
        "--generator", required=True, help="generator file or zoo:NAME (e.g. zoo:gan-stylegan2-64)"
    )
    learn.add_argument(
        "--classifier",
        default="synthfaces-attributes",
        help="attribute classifier (classifier.pt, run folder, zoo:NAME)",
    )
    learn.add_argument("--out", required=True, help="folder for the set (NAME.pt + NAME.json, manifest.json)")
    learn.add_argument(
        "--attributes",
        default=None,
        help="comma list, ATTR or ATTR|COND1|COND2 (conditioned); default: "
        "smile,yaw,eyes_open,age,glasses,beard|masc,hat",
    )
    learn.add_argument(
        "--samples", type=positive_int, default=10000, help="w samples (InterFaceGAN README: 10000)"
    )
    learn.add_argument(
        "--ratio", type=float, default=0.02, help="top/bottom fraction per attribute (InterFaceGAN: 0.02)"
    )
    learn.add_argument("--ganspace", type=non_negative_int, default=5, help="GANSpace components to write")
    learn.add_argument("--sefa", type=non_negative_int, default=5, help="SeFa directions to write")
    learn.add_argument("--seed", type=int, default=0)
    learn.add_argument(
        "--from-images",
        default=None,
        help="labelled synthfaces folder: learn supervised directions from inversions",
    )
    learn.add_argument(
        "--method",
        default=None,
        help="with --from-images: the inversion method (bundled weights unless --checkpoint)",
    )
    learn.add_argument("--checkpoint", default=None)
    learn.add_argument("--device", default="auto")
    learn.set_defaults(func=_learn)
    ev = s.add_parser(
        "evaluate",
        help="re-measure on several seeds that each direction moves its attribute (and what else it moves)",
    )
    ev.add_argument("--generator", required=True, help="generator file or zoo:NAME")
    ev.add_argument(
        "--classifier",
        default="synthfaces-attributes",
        help="attribute classifier (file, run folder, zoo:NAME)",
    )
    ev.add_argument(
        "--directions", default=None, help="comma list of direction names (default: the whole set)"
    )
    ev.add_argument(
        "--seeds", default="0,1,2", help="comma list of seeds, each an independent draw of samples"
    )
    ev.add_argument("--n", type=positive_int, default=200, help="generated samples per seed (default 200)")
    ev.add_argument("--strength", type=float, default=2.0, help="edit with -S and +S (default 2)")
    ev.add_argument("--min-n", type=positive_int, default=30, help="fewest samples for a verdict")
    ev.add_argument("--out", required=True, help="folder for effects.csv, claims.csv, directions.md/json")
    ev.add_argument("--device", default="auto")
    ev.set_defaults(func=_evaluate)
    ls = s.add_parser("list", help="list the direction sets found and their directions")
    ls.add_argument("--generator", default=None, help="only the set of this generator (file or zoo:NAME)")
    ls.set_defaults(func=_list)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _parse_attributes(text: str | None) -> dict[str, tuple[str, ...]] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, *conds = [p.strip() for p in part.split("|")]
        if name:
            out[name] = tuple(c for c in conds if c)
    return out


def _learn(args: argparse.Namespace) -> int:
    import torch

    from egain.faces.attributes import load_classifier
    from egain.methods.generator_io import load_generator
    from egain.utils.device import resolve_device
    from egain.utils.paths import check_output_dir

    check_output_dir(args.out, "--out")
    device = resolve_device(args.device)
    out = Path(args.out)
    if args.from_images:
        return _learn_supervised(args, out, device)
    generator = load_generator(args.generator, device=device).eval()
    classifier = load_classifier(args.classifier, device=device)
    from egain.editing.learn import learn_direction_set

    with torch.no_grad():
        summary = learn_direction_set(
            generator,
            classifier,
            out,
            attributes=_parse_attributes(args.attributes),
            n=args.samples,
            ratio=args.ratio,
            seed=args.seed,
            ganspace_k=args.ganspace,
            sefa_k=args.sefa,
            generator_name=str(args.generator),
            classifier_name=str(args.classifier),
            command=" ".join(["egain", *sys.argv[1:]]),
        )
    print(
        f"wrote {len(summary['directions'])} directions to {out} (generator fingerprint {summary['generator_fingerprint']})"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from egain.faces.attributes import load_classifier
    from egain.methods.generator_io import load_generator
    from egain.utils.device import resolve_device
    from egain.utils.paths import check_output_dir
    from egain.workflows.direction_eval import evaluate_directions

    check_output_dir(args.out, "--out")
    if args.strength <= 0:
        raise InputError(f"--strength must be positive, got {args.strength}")
    device = resolve_device(args.device)
    generator = load_generator(args.generator, device=device).eval()
    classifier = load_classifier(args.classifier, device=device)
    names = [x.strip() for x in args.directions.split(",") if x.strip()] if args.directions else None
    record = evaluate_directions(
        generator,
        classifier,
        args.out,
        names=names,
        seeds=args.seeds,
        n=args.n,
        strength=args.strength,
        min_n=args.min_n,
        command=" ".join(["egain", *sys.argv[1:]]),
        log=lambda m: print(m, file=sys.stderr),
    )
    for c in record["claims"]:
        print(
            f"- {c['statement']}: {c['verdict']} (holds on {c['holds_on']} of {c['seeds']} seeds; pooled: {c['pooled']})"
        )
    print(f"table: {Path(args.out) / 'directions.md'}")
    return 0


def _learn_supervised(args: argparse.Namespace, out: Path, device) -> int:
    import torch

    from egain.editing.directions import Direction, generator_fingerprint, save_direction
    from egain.editing.learn import _labels_values, supervised_direction
    from egain.methods import create
    from egain.utils.images import list_images

    if not args.method:
        raise InputError(
            "--from-images needs --method (the inversion whose latents the directions are learnt from)"
        )
    folder = Path(args.from_images)
    labels_file = folder / "labels.jsonl"
    if not labels_file.is_file():
        raise InputError(f"{folder} has no labels.jsonl (a synthfaces folder gives each image's attributes)")
    rows = [json.loads(line) for line in labels_file.read_text().splitlines() if line.strip()]
    records = {r["file"]: r for r in rows}
    files = [f for f in list_images(folder) if f.name in records]
    if len(files) < 10:
        raise InputError(f"{folder} has {len(files)} labelled images; supervised directions need at least 10")
    model = (
        create(args.method, checkpoint=args.checkpoint, device=device)
        if args.checkpoint
        else create(args.method, device=device)
    )
    latents = []
    with torch.no_grad():
        for i in range(0, len(files), 32):
            inv = model.invert(files[i : i + 32])
            latents.append(inv.extras.get("basic_latents", inv.latents).cpu())
    lat = torch.cat(latents)
    recs = [records[f.name] for f in files]
    attrs = _parse_attributes(args.attributes) or {"smile": (), "yaw": (), "age": (), "glasses": ()}
    out.mkdir(parents=True, exist_ok=True)
    fp = generator_fingerprint(model.generator)
    for name in attrs:
        values = torch.from_numpy(_labels_values(recs, name))
        d = Direction(
            supervised_direction(lat, values),
            name=f"{name}_supervised",
            attribute=name,
            meta={"source": "supervised", "method": args.method, "images": str(folder)},
        )
        save_direction(
            d,
            out / f"{d.name}.pt",
            {
                "generator_fingerprint": fp,
                "kind": "relative",
                "attribute": name,
                "method": f"supervised from {len(files)} inverted images ({args.method})",
            },
        )
    from egain.runtime.files import atomic_write_json

    if not (out / "manifest.json").exists():
        atomic_write_json(
            out / "manifest.json", {"generator_fingerprint": fp, "generator": "from " + args.method}
        )
    print(f"wrote {len(attrs)} supervised directions to {out}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from egain.editing.directions import direction_dirs, direction_sets, generator_fingerprint

    fp = None
    if args.generator:
        from egain.methods.generator_io import load_generator

        fp = generator_fingerprint(load_generator(args.generator))
    sets = direction_sets(fp)
    if not sets:
        print(f"no direction sets found (looked in {', '.join(map(str, direction_dirs()))})")
        return 0
    for folder, info in sets:
        print(f"{folder}  generator={info.get('generator')} fingerprint={info.get('generator_fingerprint')}")
        for p in sorted(folder.glob("*.pt")):
            m = {}
            if p.with_suffix(".json").is_file():
                m = json.loads(p.with_suffix(".json").read_text())
            attr = m.get("attribute") or p.stem
            eff = (m.get("effect_per_unit") or {}).get(attr)
            extra = f"  {attr} {eff:+.4f}/unit" if isinstance(eff, float) else ""
            print(f"  {p.stem:<14} {m.get('kind', '?'):<12} layers={m.get('layers')}{extra}")
    return 0
