"""``egain faces attributes train|evaluate``: the attribute classifier (scorer for editing).

Registered under ``egain faces`` (see :mod:`egain.cli.faces`); the code lives here to keep the
face-embedder commands short.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from egain.cli.argtypes import int_list
from egain.cli.synthfaces_train import (
    add_session_arguments,
    add_train_arguments,
    prepare_session,
    train_config_kwargs,
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``attributes`` (with ``train`` and ``evaluate``) to the ``egain faces`` sub-commands."""
    from egain.faces.attributes import ATTRIBUTE_NAMES, AttributeNetConfig
    from egain.training.attributes import AttributeTrainConfig

    cfg, net = AttributeTrainConfig(), AttributeNetConfig()
    parser = sub.add_parser(
        "attributes",
        help="train / evaluate the attribute classifier (smile, yaw, glasses, rare details, ...)",
        description="A CNN scoring synthfaces attributes (the scorer for latent editing and edit "
        "evaluation). See docs/faces.md, 'Attribute classifier'.",
    )
    asub = parser.add_subparsers(dest="attributes_command", metavar="ACTION", required=True)

    t = asub.add_parser(
        "train",
        help="train on on-the-fly synthfaces (train split), report on held-out identities",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_train_arguments(
        t,
        cfg,
        "classifier.pt",
        "synthfaces:NxK[,seed=S,rare_rate=R] training recipe (train-split identities only)",
    )
    t.add_argument("--widths", type=int_list, default=list(net.widths), help="stage widths")
    t.add_argument("--hidden", type=int, default=net.hidden, help="head width")
    t.add_argument("--dropout", type=float, default=net.dropout)
    t.add_argument(
        "--attributes",
        default="all",
        help=f"comma-separated subset of: {', '.join(ATTRIBUTE_NAMES)}",
    )
    add_session_arguments(t, cfg)
    t.set_defaults(func=_train)

    e = asub.add_parser(
        "evaluate",
        help="held-out accuracy / AUC / Spearman per attribute",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    e.add_argument(
        "--classifier", required=True, help="RUN/classifier.pt, RUN, zoo:NAME or synthfaces-attributes"
    )
    e.add_argument(
        "--data",
        default=None,
        help="synthfaces:SPEC or a synthfaces folder (labels.jsonl); default: the classifier's held-out "
        "identities (test split of its training world)",
    )
    e.add_argument("--split", default=None, help="with a folder: only these labels.jsonl splits (a,b)")
    e.add_argument("--identities", type=int, default=None, help="held-out identities (default: as trained)")
    e.add_argument("--per-identity", type=int, default=None)
    e.add_argument("--batch", type=int, default=128)
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--out", default=None, help="write report.json here")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from egain.faces.attributes import ATTRIBUTE_NAMES, AttributeNetConfig
    from egain.training.attributes import AttributeTrainConfig, train_attributes

    prepare_session(args)
    names = ATTRIBUTE_NAMES if args.attributes == "all" else [a for a in args.attributes.split(",") if a]
    net = AttributeNetConfig(
        size=args.size, widths=args.widths, hidden=args.hidden, dropout=args.dropout, attributes=names
    )
    cfg = AttributeTrainConfig(
        **train_config_kwargs(args),
        net=net.to_dict(),
    )
    result = train_attributes(cfg, resume=args.resume)
    if result:
        s = result["summary"]
        print(
            f"held-out ({result['held_out']['images']} images of {result['held_out']['identities']} "
            f"test-split identities): mean accuracy {s['mean_accuracy']:.3f}, balanced "
            f"{s['mean_balanced_accuracy']:.3f}, AUC {s['mean_auc']:.3f}; mean Spearman {s['mean_spearman']:.3f}"
        )
    if os.environ.get("RANK", "0") == "0" and (Path(args.out) / "classifier.pt").exists() and result:
        print(f"wrote {Path(args.out) / 'classifier.pt'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from egain.data.synthfaces import dataset_from_spec
    from egain.faces.attributes import LabelledFolder, evaluate_classifier, format_metrics, load_classifier
    from egain.runtime.files import atomic_write_json
    from egain.training.attributes import eval_dataset
    from egain.utils.paths import check_output_dir

    if args.out:
        check_output_dir(args.out)
    clf = load_classifier(args.classifier, device=args.device)
    trained = clf.meta.get("scores", {}).get("held_out", {})
    if args.data is None:
        data = eval_dataset(
            int(trained.get("seed", 0)),
            clf.size,
            args.identities or int(trained.get("identities", 300)),
            args.per_identity or int(trained.get("per_identity", 2)),
        )
        what = f"{len(data)} images of held-out (test-split) identities"
    elif args.data.startswith("synthfaces:"):
        data = dataset_from_spec(args.data[len("synthfaces:") :], size=clf.size, return_labels=True)
        what = args.data
    else:
        splits = [s for s in args.split.split(",") if s] if args.split else None
        data = LabelledFolder(args.data, clf.size, splits)
        what = f"{len(data)} images of {args.data}"
    metrics, summary = evaluate_classifier(
        clf, data, batch=args.batch, workers=args.workers, progress_bar=True
    )
    print(f"{clf.name} on {what}")
    print(format_metrics(metrics))
    print(
        f"mean accuracy {summary['mean_accuracy']:.3f}, balanced {summary['mean_balanced_accuracy']:.3f}, "
        f"AUC {summary['mean_auc']:.3f}; mean Spearman {summary['mean_spearman']:.3f}"
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report = {"classifier": clf.name, "data": what, "summary": summary, "attributes": metrics}
        atomic_write_json(out / "report.json", report)
        print(f"wrote {out / 'report.json'}")
    return 0
