"""``egain faces attributes train|evaluate``: the attribute classifier (scorer for editing).

Registered under ``egain faces`` (see :mod:`egain.cli.faces`); the code lives here to keep the
face-embedder commands short.
"""

from __future__ import annotations

import argparse

from egain.cli.argtypes import int_list
from egain.cli.synthfaces_train import (
    add_action,
    add_command,
    add_evaluate_arguments,
    add_session_arguments,
    add_train_arguments,
    check_report_dir,
    held_out_data,
    prepare_session,
    print_export,
    train_config_kwargs,
    write_report,
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``attributes`` (with ``train`` and ``evaluate``) to the ``egain faces`` sub-commands."""
    from egain.faces.attributes import ATTRIBUTE_NAMES, AttributeNetConfig
    from egain.training.attributes import AttributeTrainConfig

    cfg, net = AttributeTrainConfig(), AttributeNetConfig()
    asub = add_command(
        sub,
        "attributes",
        help="train / evaluate the attribute classifier (smile, yaw, glasses, rare details, ...)",
        description="A CNN scoring synthfaces attributes (the scorer for latent editing and edit "
        "evaluation). See docs/faces.md, 'Attribute classifier'.",
    )

    t = add_action(
        asub, "train", "train on on-the-fly synthfaces (train split), report on held-out identities"
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

    e = add_action(asub, "evaluate", "held-out accuracy / AUC / Spearman per attribute")
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
    add_evaluate_arguments(e, batch=128)
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
    print_export(args, result, "classifier.pt")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from egain.data.synthfaces import dataset_from_spec
    from egain.faces.attributes import LabelledFolder, evaluate_classifier, format_metrics, load_classifier
    from egain.training.attributes import eval_dataset

    check_report_dir(args)
    clf = load_classifier(args.classifier, device=args.device)
    if args.data is None:
        data = held_out_data(eval_dataset, clf.meta, clf.size, args, identities=300)
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
    write_report(args, {"classifier": clf.name, "data": what, "summary": summary, "attributes": metrics})
    return 0
