"""Verb ``neighbors``: which of your files look alike, by the encoder's global features."""

from __future__ import annotations

import argparse


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "neighbors",
        help="nearest neighbours among files by encoder features (a quick look at what the encoder sees)",
        description="Encode every file and print, for each one, the most similar other files "
        "(cosine similarity of global features, each dimension standardised over the given files). With --label-from-name, the text before the first "
        "'_' of each file name is taken as its label and the share of nearest neighbours with the same "
        "label is printed (leave-one-out 1-NN accuracy).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mv2d3d neighbors examples/ --label-from-name",
    )
    p.add_argument("inputs", nargs="+", metavar="FILES|DIR")
    p.add_argument("--model", default="mv-m3ae-tiny", help="zoo name, local folder or Hub repo id (default: %(default)s)")
    p.add_argument("-k", type=int, default=2, help="neighbours shown per file (default: %(default)s)")
    p.add_argument("--label-from-name", action="store_true", help="score neighbours by the file-name prefix before '_'")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_neighbors)


def _neighbors(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..data.io import find_point_files, load_many
    from ..hub import load

    files = find_point_files(args.inputs)
    enc = load(args.model, device=args.device)
    report = load_many(files, enc.config.num_points, seed=0)
    for f, reason in report.skipped:
        print(f"skipped: {f}: {reason}")
    clouds, names = report.points, [f.name for f in report.files]
    if len(clouds) < 2:
        print("error: need at least two readable files")
        return 1
    with torch.inference_mode():
        feats = enc(torch.from_numpy(np.stack(clouds)).to(enc.device)).global_features.float()
    # Raw global features of one encoder share a large common component (cosines all ~0.99);
    # standardising each dimension over the given files compares what differs between them.
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    feats = torch.nn.functional.normalize(feats, dim=-1)
    sim = feats @ feats.T
    sim.fill_diagonal_(-float("inf"))
    k = min(args.k, len(names) - 1)
    top = sim.topk(k, dim=1)
    width = max(len(n) for n in names)
    print(f"{len(names)} files, model {args.model}; nearest neighbours by cosine similarity of standardised features:")
    hits = 0
    for i, n in enumerate(names):
        nbrs = ", ".join(f"{names[j]} ({s:.3f})" for s, j in zip(top.values[i].tolist(), top.indices[i].tolist()))
        print(f"  {n:<{width}}  ->  {nbrs}")
        hits += names[int(top.indices[i, 0])].split("_")[0] == n.split("_")[0]
    if args.label_from_name:
        labels = [n.split("_")[0] for n in names]
        chance = sum((labels.count(lab) - 1) / (len(labels) - 1) for lab in labels) / len(labels)
        print(
            f"nearest neighbour has the same label for {hits}/{len(names)} files ({100 * hits / len(names):.0f}%; "
            f"a random neighbour would match {100 * chance:.0f}% of the time)"
        )
    return 0
