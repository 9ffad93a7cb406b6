"""Verbs ``list`` and ``extract``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("list", help="list the zoo's encoders", description="List the encoders of the zoo.")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. '*tiny*'")
    p.add_argument("--pretrained", action="store_true", help="only entries with published weights")
    p.set_defaults(func=_list)

    p = sub.add_parser(
        "extract",
        help="global features of point-cloud / mesh files -> .npz",
        description="Encode files (or every readable file in folders) and save one global feature "
        "vector per file. The .npz holds 'features' [F, D] float32 and 'files' [F] (paths as given); "
        "files that cannot be read are skipped and reported.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mv2d3d extract scans/ --model mv-m3ae-tiny --out feats.npz",
    )
    p.add_argument("inputs", nargs="+", metavar="FILES|DIR", help="files, or folders searched recursively")
    p.add_argument("--model", default="mv-m3ae-tiny", help="zoo name, local folder or Hub repo id (default: %(default)s)")
    p.add_argument("--out", required=True, help="output .npz path")
    p.add_argument("--num-points", type=int, default=None, help="points sampled per file (default: the encoder's num_points)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cuda if available)")
    p.add_argument("--no-pretrained", action="store_true", help="use the architecture with random weights")
    p.set_defaults(func=_extract)


def _list(args: argparse.Namespace) -> int:
    from ..hub.registry import get_entry, list_models

    names = list_models(args.pattern, pretrained=True if args.pretrained else None)
    width = max((len(n) for n in names), default=4)
    for n in names:
        e = get_entry(n)
        weights = "bundled" if e.bundled else (e.repo_id or "no weights yet")
        print(f"{n:<{width}}  {weights:<20}  {e.note}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..data.io import find_point_files, load_points
    from ..errors import PointFileError
    from ..hub import load

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    files = find_point_files(args.inputs)
    if not files:
        print("error: no readable point-cloud or mesh files found in " + ", ".join(args.inputs))
        return 1
    enc = load(args.model, pretrained=not args.no_pretrained, device=device)
    n = args.num_points or enc.config.num_points
    feats, kept, bad = [], [], []
    batch, names = [], []

    def flush():
        if batch:
            with torch.inference_mode():
                out = enc(torch.from_numpy(np.stack(batch)).to(device))
            feats.append(out.global_features.float().cpu().numpy())
            kept.extend(names)
            batch.clear()
            names.clear()

    for f in tqdm(files, desc="extract", unit="file"):
        try:
            batch.append(load_points(f, n))
            names.append(str(f))
        except PointFileError as e:
            bad.append(str(e))
            continue
        if len(batch) >= args.batch_size:
            flush()
    flush()
    if not kept:
        print("error: none of the files could be read")
        for b in bad:
            print("  " + b)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".incomplete.npz")
    np.savez(tmp, features=np.concatenate(feats), files=np.array(kept), model=np.array(args.model))
    tmp.replace(out)
    print(f"wrote {out}: {len(kept)} files x {feats[0].shape[1]} features")
    if bad:
        print(f"skipped {len(bad)} unreadable file(s):")
        for b in bad:
            print("  " + b)
    return 0
