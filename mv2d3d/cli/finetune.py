"""Verbs ``finetune``, ``predict``, ``eval-svm`` and ``eval``."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Optional, Tuple

_STANDARD = ("modelnet40", "modelnet40-h5", "scanobjectnn-objbg", "scanobjectnn-objonly", "scanobjectnn-hardest")
_FMT = argparse.RawDescriptionHelpFormatter


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a pretrained encoder into a classifier on your data",
        formatter_class=_FMT,
        description="Train a classifier on a folder with one subfolder per class (any mix of mesh and point-cloud "
        "files; unreadable files are skipped and reported), or on a standard benchmark (--dataset). A validation "
        "split is held out (seeded, stratified) and the epoch with the best validation accuracy is kept; the test "
        "split (DATA/test/ or the benchmark's) is only measured once at the end. Writes a save_pretrained folder "
        "whose model card records the data, the command and the accuracies. Run under `torchrun` for several "
        "processes.",
        epilog="examples:\n"
        "  mv2d3d finetune my_parts/ --model mv-m3ae-tiny --epochs 30 --out my-classifier\n"
        "  mv2d3d finetune my_parts/ --model mv-m3ae-base --freeze-encoder --lr 1e-2 --out probe\n"
        "  mv2d3d finetune data/ --dataset scanobjectnn-hardest --model mv-m3ae-base --epochs 300 --augment rotate --out sonn\n"
        "  torchrun --nproc-per-node 4 -m mv2d3d finetune my_parts/ --model mv-m3ae-base --out my-classifier",
    )
    p.add_argument("data", metavar="DATA", help="class-per-folder tree (or the root of --dataset)")
    p.add_argument("--model", default="mv-m3ae-tiny", help="pretrained encoder: zoo name, folder or Hub repo id (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: <DATA name>-classifier)")
    p.add_argument("--dataset", choices=_STANDARD, default=None, help="DATA is this standard benchmark")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate of AdamW (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="per process (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--freeze-encoder", action="store_true", help="linear probe: frozen encoder, linear head")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--num-points", type=int, default=None, help="points sampled per file (default: the encoder's num_points)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of each class held out for validation (default: %(default)s)")
    p.add_argument("--augment", choices=("none", "scale_translate", "rotate", "full"), default="scale_translate")
    p.add_argument("--up-axis", choices=("x", "y", "z"), default="y", help="axis of --augment rotate/full (default: y)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.trainer/last.pt")
    p.add_argument("--cache-dir", default=None, help="cache sampled clouds here (later runs skip re-reading meshes)")
    p.add_argument("--recalibrate-bn", choices=("auto", "on", "off"), default="auto",
                   help="measure BatchNorm statistics exactly on the training split before each validation "
                   "(auto: when an epoch has < 100 steps, i.e. small data sets)")
    p.add_argument("--no-pretrained", action="store_true", help="random encoder weights (baseline)")
    p.set_defaults(func=_finetune, _parser=p)

    p = sub.add_parser(
        "predict",
        help="classify files with a fine-tuned classifier",
        formatter_class=_FMT,
        description="Print the predicted class and its probability for each file (folders are searched). "
        "Files that cannot be read are reported on stderr; the others are still classified.",
        epilog="example:\n  mv2d3d predict my-classifier new_part.obj scans/",
    )
    p.add_argument("model", metavar="DIR", help="a fine-tuned classifier: folder or Hub repo id")
    p.add_argument("files", nargs="+", metavar="FILES", help="mesh / point-cloud files or folders")
    p.add_argument("--top-k", type=int, default=1, help="print the k most likely classes")
    p.add_argument("--num-points", type=int, default=None, help="points sampled per file (default: the encoder's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "eval-svm",
        help="linear-SVM (and few-shot) accuracy of a frozen encoder",
        formatter_class=_FMT,
        description="The linear-SVM protocol of the literature: global features of the frozen encoder, a linear "
        "SVM whose C is chosen by cross-validation on the training split only, overall and mean-class accuracy on "
        "the test split (single pass, no voting). DATA is a class-per-folder tree (train/ and test/ subfolders, "
        "else a seeded stratified hold-out) or the root of a standard benchmark (--dataset). --few-shot runs "
        "N-way K-shot episodes (support from train, queries from test) and prints mean and std.",
        epilog="examples:\n"
        "  mv2d3d eval-svm data/modelnet40_normal_resampled --dataset modelnet40 --model mv-m3ae-base\n"
        "  mv2d3d eval-svm data/modelnet40_normal_resampled --dataset modelnet40 --model mv-m3ae-base --few-shot 5-way 10-shot --episodes 10\n"
        "  mv2d3d eval-svm my_parts/ --model mv-m3ae-tiny",
    )
    p.add_argument("data", metavar="DATA")
    p.add_argument("--model", default="mv-m3ae-tiny")
    p.add_argument("--dataset", choices=_STANDARD, default=None)
    p.add_argument("--num-points", type=int, default=None, help="default: 1024 (ModelNet40), 2048 (ScanObjectNN)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="hold-out share for a tree without test/ (default: %(default)s)")
    p.add_argument("--few-shot", nargs="+", default=None, metavar="N-way K-shot", help="e.g. `5-way 10-shot` or `10 20`")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--query", type=int, default=20, help="query samples per class per episode")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--no-pretrained", action="store_true", help="random encoder weights (baseline)")
    p.set_defaults(func=_eval_svm)

    p = sub.add_parser(
        "eval",
        help="accuracy of a fine-tuned classifier on a test split + confusion-matrix PNG",
        formatter_class=_FMT,
        description="Overall and mean-class accuracy of a fine-tuned classifier on DATA's test split (DATA/test/ "
        "or the benchmark's; for a tree without test/, the validation hold-out with the same --val-fraction/--seed "
        "as fine-tuning), and a confusion-matrix plot. Single pass unless --votes is given.",
        epilog="example:\n  mv2d3d eval my-classifier my_parts/ --plot confusion.png",
    )
    p.add_argument("model", metavar="DIR")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--dataset", choices=_STANDARD, default=None)
    p.add_argument("--split", choices=("test", "val", "train"), default=None, help="default: test if there is one, else val")
    p.add_argument("--plot", default=None, help="confusion-matrix PNG (default: <DIR>-confusion-<split>.png)")
    p.add_argument("--num-points", type=int, default=None)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--votes", type=int, default=1, help="average over this many augmented copies (default: 1, no voting)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_eval)


# -- helpers ---------------------------------------------------------------------------------
def _device(requested: Optional[str]) -> str:
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def _parse_few_shot(tokens) -> Tuple[int, int]:
    from ..errors import ConfigError

    text = " ".join(tokens)
    m = re.fullmatch(r"\s*(\d+)\s*-?\s*(?:way)?[\s,-]*(\d+)\s*-?\s*(?:shot)?\s*", text, flags=re.I)
    if not m:
        raise ConfigError(f"--few-shot {text!r}: expected N-way K-shot, e.g. `--few-shot 5-way 10-shot` or `--few-shot 5 10`.")
    return int(m.group(1)), int(m.group(2))


def _percent(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.2f}%"


def _print_skipped(skipped) -> None:
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for f, reason in skipped:
            print(f"  {f}: {reason}", file=sys.stderr)


def _splits_for_eval(data: str, dataset: Optional[str], num_points: Optional[int], val_fraction: float, seed: int,
                     cache_dir: Optional[str] = None, class_names=None, want=("train", "test")):
    """Datasets for the requested splits, the names used and skipped files."""
    from ..data.datasets import FolderDataset, scan_folder
    from ..data.standard import DEFAULT_NUM_POINTS, load_standard

    out, skipped = {}, []
    if dataset:
        kw = {"num_points": num_points or DEFAULT_NUM_POINTS[dataset], "progress": True, "seed": seed}
        if dataset == "modelnet40" and cache_dir:
            kw["cache_dir"] = cache_dir
        for s in want:
            if s == "val":
                from ..errors import DatasetError

                raise DatasetError(f"{dataset} has no validation split; use --split test.")
            out[s] = load_standard(dataset, data, s, **kw)
        return out, skipped, {s: s for s in want}
    layout = scan_folder(data, class_names)
    presplit = layout.presplit and "test" in layout.files
    # A tree without test/: the seeded hold-out plays the test split (val_fraction of each class).
    names = {s: ("val" if s == "test" and not presplit else s) for s in want}
    vf = 0.0 if presplit and "val" not in layout.files and "val" not in want else val_fraction
    for s in want:
        ds = FolderDataset(data, num_points or 1024, split=names[s], val_fraction=vf, seed=seed, cache_dir=cache_dir,
                           class_names=class_names, progress=True)
        out[s] = ds
        skipped += ds.skipped
    return out, skipped, names


def _command_line(verb: str, args: argparse.Namespace) -> str:
    """The command that reproduces this run: positionals, then every option not at its default."""
    parser: argparse.ArgumentParser = args._parser
    words = ["mv2d3d", verb]
    options = []
    for a in parser._actions:
        if a.dest in ("help", "func", "_parser") or not hasattr(args, a.dest):
            continue
        value = getattr(args, a.dest)
        if not a.option_strings:
            words.append(str(value))
        elif value != a.default:
            flag = a.option_strings[-1]
            options += [flag] if isinstance(a, argparse._StoreTrueAction) else [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words + options)


# -- verbs -----------------------------------------------------------------------------------
def _finetune(args: argparse.Namespace) -> int:
    import logging
    import os

    from ..train.finetune import FinetuneConfig, finetune

    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger("mv2d3d").setLevel(logging.ERROR)  # under torchrun, rank 0 speaks for all

    out = args.out or f"{Path(args.data).resolve().name}-classifier"
    cfg = FinetuneConfig(
        data=args.data, model=args.model, out=out, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, freeze_encoder=args.freeze_encoder,
        label_smoothing=args.label_smoothing, num_points=args.num_points, val_fraction=args.val_fraction,
        augment=args.augment, up_axis=args.up_axis, seed=args.seed, workers=args.workers, device=args.device,
        resume=args.resume, pretrained=not args.no_pretrained, cache_dir=args.cache_dir,
        recalibrate_bn={"auto": None, "on": True, "off": False}[args.recalibrate_bn],
        command=_command_line("finetune", args),
    )
    r = finetune(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    _print_skipped(r.skipped)
    print(f"classes ({len(r.class_names)}): {', '.join(r.class_names)}")
    print(f"samples: {r.num_train} train, {r.num_val} val, {r.num_test} test")
    print(f"best epoch {r.best_epoch}/{cfg.epochs}: val accuracy {_percent(r.val_accuracy)} "
          f"(mean-class {_percent(r.val_mean_class_accuracy)})")
    if r.num_test:
        print(f"test accuracy {_percent(r.test_accuracy)} (mean-class {_percent(r.test_mean_class_accuracy)}), "
              "measured once with the weights chosen on val")
    print(f"wrote {r.out}  (try: mv2d3d predict {r.out} FILE...)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..data.io import find_point_files, load_many
    from ..train.finetune import load_classifier

    device = _device(args.device)
    clf = load_classifier(args.model, device=device)
    files = find_point_files(args.files)
    if not files:
        print("error: no files found in " + ", ".join(args.files), file=sys.stderr)
        return 1
    n = args.num_points or clf.config.encoder.num_points
    rep = load_many(files, n, progress=len(files) > 20, desc="reading")
    names = clf.class_names
    k = max(1, min(args.top_k, len(names)))
    for s in range(0, len(rep.points), args.batch_size):
        batch = torch.from_numpy(np.stack(rep.points[s : s + args.batch_size])).to(device)
        probs = clf.predict(batch).cpu().numpy()
        for f, p in zip(rep.files[s : s + args.batch_size], probs):
            top = np.argsort(-p)[:k]
            print(f"{f}\t" + "\t".join(f"{names[i]}\t{p[i]:.4f}" for i in top))
    for f, reason in rep.skipped:
        print(f"{f}\terror: {reason}", file=sys.stderr)
    if not rep.points:
        print("error: none of the files could be read", file=sys.stderr)
        return 1
    return 0


def _eval_svm(args: argparse.Namespace) -> int:
    from ..hub import load
    from ..train.evaluate import dataset_features, few_shot_eval, linear_svm_eval

    few = _parse_few_shot(args.few_shot) if args.few_shot else None
    enc = load(args.model, pretrained=not args.no_pretrained, device=_device(args.device))
    splits, skipped, names = _splits_for_eval(args.data, args.dataset, args.num_points, args.val_fraction, args.seed, args.cache_dir)
    _print_skipped(skipped)
    tr_x, tr_y = dataset_features(enc, splits["train"], batch_size=args.batch_size, progress=True, desc="train features")
    te_x, te_y = dataset_features(enc, splits["test"], batch_size=args.batch_size, progress=True, desc=f"{names['test']} features")
    what = args.dataset or args.data
    print(f"{what}: {len(tr_y)} train / {len(te_y)} {names['test']} samples, {splits['train'].num_classes} classes, "
          f"model {args.model}{' (random weights)' if args.no_pretrained else ''}")
    if few is None:
        r = linear_svm_eval(tr_x, tr_y, te_x, te_y, seed=args.seed)
        print(f"linear SVM (C={r.C:g}, chosen by cross-validation on train): overall accuracy "
              f"{_percent(r.overall_accuracy)}, mean-class accuracy {_percent(r.mean_class_accuracy)}")
    else:
        r = few_shot_eval(tr_x, tr_y, te_x, te_y, n_way=few[0], k_shot=few[1], episodes=args.episodes, query=args.query, seed=args.seed)
        print(f"{r.n_way}-way {r.k_shot}-shot, {len(r.accuracies)} episodes: accuracy {100 * r.mean:.2f} +- {100 * r.std:.2f}% "
              f"(mean +- std over episodes)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..data.transforms import ScaleTranslate
    from ..train.evaluate import evaluate_classifier, plot_confusion_matrix
    from ..train.finetune import load_classifier

    clf = load_classifier(args.model, device=_device(args.device))
    n = args.num_points or clf.config.encoder.num_points
    want = args.split or ("test" if args.dataset or _has_test(args.data) else "val")
    splits, skipped, names = _splits_for_eval(
        args.data, args.dataset, n, args.val_fraction, args.seed, class_names=None if args.dataset else clf.class_names,
        want=(want,),
    )
    ds = splits[want]
    if ds.num_classes != clf.config.num_classes:
        from ..errors import DatasetError

        raise DatasetError(f"{args.data} has {ds.num_classes} classes but the classifier has {clf.config.num_classes}.")
    _print_skipped(skipped)
    r = evaluate_classifier(
        clf, ds, batch_size=args.batch_size, votes=args.votes, vote_transform=ScaleTranslate() if args.votes > 1 else None,
        progress=True,
    )
    split_name = names[want]
    plot = Path(args.plot or f"{Path(args.model).name}-confusion-{split_name}.png")
    plot_confusion_matrix(r.confusion, r.class_names, plot, title=f"{Path(args.model).name} on {args.dataset or Path(args.data).name} ({split_name})")
    voting = f"{args.votes}-vote" if args.votes > 1 else "single pass, no voting"
    print(f"{split_name} split: {r.num_samples} samples, {len(r.class_names)} classes ({voting})")
    print(f"overall accuracy {_percent(r.overall_accuracy)}, mean-class accuracy {_percent(r.mean_class_accuracy)}")
    print(f"confusion matrix: {plot}")
    return 0


def _has_test(data: str) -> bool:
    p = Path(data)
    return (p / "train").is_dir() and (p / "test").is_dir()
