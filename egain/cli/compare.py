"""``egain compare``: render the evaluation sets, invert them with every bundled method, score, test.

    egain compare --out runs/compare [--methods e4e,e4e-swagan,hfgi,egain,egain-external]
                  [--plan e2style-stages|encoders|dse|optimisation] [--sets eval,hard] [--seeds 0,1,2] [--n N] [--min-n 30] [--readme README.md]

Every seed is an independent draw of the sets (disjoint held-out identities; seed 0 is the
original pair). Writes OUT/comparison.{md,csv,json} (ID, SSIM in [0,1], SCC, VIF, MagFace, PSNR,
MAE, Feat (face-feature distance), time per image, parameters per seed, set and method, and pooled over the seeds),
OUT/stats.csv (Wilcoxon tests of egain vs e4e, e4e-swagan, hfgi), OUT/advantage.csv (the SCC
advantage on the hard set vs the evaluation set), OUT/claims.csv (each claim per seed, pooled, and
"holds on k of n seeds"), OUT/plots/ (box plots) and OUT/seed<k>/<set>/report/ (the full
``egain evaluate`` reports). A claim is stated as holding only when it holds on every seed and
pooled; with fewer than --min-n images per set and seed no verdict is given. ``--readme`` rewrites
the block between ``<!-- comparison:start -->`` and ``<!-- comparison:end -->`` in that file (and
copies the box plots to docs/comparison/ beside it).
"""

from __future__ import annotations

import argparse
import shlex


def register(sub: argparse._SubParsersAction) -> None:
    from egain.workflows.bundled import BUNDLED_METHODS, COMPARE_METHODS
    from egain.workflows.compare import DEFAULT_SEEDS, MIN_N, available_plans

    p = sub.add_parser(
        "compare",
        help="compare the bundled methods on the synthfaces evaluation sets (the README table)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (data are rendered into OUT/data and reused)")
    p.add_argument(
        "--methods",
        help=f"comma list of method labels (default: {','.join(COMPARE_METHODS)}, or the plan's): bundled "
        f"({', '.join(BUNDLED_METHODS)}), NAME=CHECKPOINT, SHOWN=METHOD:CHECKPOINT, SHOWN=BUNDLED, an "
        "optimiser's name; '@KEY=VALUE' sets a runtime option (restyle-1=restyle-psp@iterations=1)",
    )
    p.add_argument(
        "--plan",
        help="a comparison plan: the methods and the claims of a seed paper to re-test "
        f"(shipped: {', '.join(available_plans())}; or a TOML file; see docs/comparison/README.md)",
    )
    p.add_argument("--sets", help="comma list of eval,hard (default both, or the plan's)")
    p.add_argument(
        "--seeds",
        default=",".join(map(str, DEFAULT_SEEDS)),
        help="comma list of seeds, each an independent evaluation set and hard set "
        f"(default {','.join(map(str, DEFAULT_SEEDS))}; 0 is the original pair; ranges as 0-4)",
    )
    p.add_argument("--n", type=int, help="images per set and seed (default: the full recipes, 500 and 200)")
    p.add_argument(
        "--min-n",
        type=int,
        default=MIN_N,
        help=f"fewest images per set and seed on which a claim gets a verdict (default {MIN_N})",
    )
    p.add_argument("--size", type=int, help="render size (default: the methods' input size)")
    p.add_argument("--readme", help="rewrite the comparison block of this Markdown file")
    p.add_argument(
        "--readme-assets",
        help="folder for the README's box plots and CSVs (default: docs/comparison beside it)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="processes rendering the sets (default 1)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for CIs")
    p.set_defaults(func=run)


def _command_line(args: argparse.Namespace) -> str:
    """The command as a person would retype it (options left at their defaults omitted)."""
    from egain.workflows.compare import DEFAULT_SEEDS, MIN_N

    parts = ["egain", "compare", "--out", args.out]
    defaults = {
        "plan": None,
        "methods": None,
        "sets": None,
        "seeds": ",".join(map(str, DEFAULT_SEEDS)),
        "n": None,
        "min_n": MIN_N,
        "size": None,
        "device": "auto",
        "bootstrap": 2000,
        "readme": None,
        "readme_assets": None,
    }
    for key, default in defaults.items():
        value = getattr(args, key)
        if value != default:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    import sys

    from egain.utils.paths import check_output_dir

    check_output_dir(args.out, "--out")  # a file where a folder is expected: one line, before any work

    from egain.workflows.bundled import COMPARE_METHODS
    from egain.workflows.compare import POOLED, SETS, load_plan, run_compare, table_markdown, verdict_lines

    plan = load_plan(args.plan) if args.plan else None
    methods = args.methods or (",".join(plan.methods) if plan else ",".join(COMPARE_METHODS))
    sets = args.sets or ",".join(plan.sets if plan else SETS)
    result = run_compare(
        args.out,
        methods,
        sets=sets,
        seeds=args.seeds,
        n=args.n if args.n is not None else (plan.n if plan else None),
        claims=list(plan.claims) if plan else None,
        title=f"{plan.title}. {plan.description}".strip() if plan else None,
        min_n=args.min_n,
        size=args.size,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        readme=args.readme,
        readme_assets=args.readme_assets,
        command=_command_line(args),
        n_boot=args.bootstrap,
    )
    print(f"pooled over seeds {', '.join(map(str, result.seeds))}:")
    print(table_markdown([r for r in result.table if r["seed"] == POOLED], result.metrics))
    for line in result.warnings:
        print(line.replace("**", ""), file=sys.stderr)
    for line in verdict_lines(result.claims):
        print(line)
    print(f"table: {result.files['table_md']}")
    if "readme" in result.files:
        print(f"updated the comparison block of {result.files['readme']}")
    return 0
