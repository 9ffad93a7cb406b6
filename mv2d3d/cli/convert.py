"""Verb ``convert``: import a Point-MAE / ACT / ReCon ``.pth`` checkpoint (thin wrapper of
:func:`mv2d3d.convert`)."""

from __future__ import annotations

import argparse

# Kept literal (not imported) so that `mv2d3d --help` does not load the converter.
_SOURCES = ("point-mae", "act", "recon")

_EPILOG = """examples:
  mv2d3d convert --from point-mae pretrain.pth --out point-mae-pretrain
  mv2d3d convert --from point-mae scan_hardest.pth --out point-mae-scan --num-groups 128 --num-points 2048
  mv2d3d convert --from act act_pretrain.pth --out act-pretrain
  mv2d3d convert --from recon recon_base.pth --out recon-base

The file is read with torch.load(weights_only=True): a pickle holding anything but tensors is
refused, never executed. Heads and grouping are not stored in these checkpoints: the defaults
are the reference recipes (6 heads for width 384; 64 groups x 32 points of 1024, or 128 x 32 of
2048 for 15-class ScanObjectNN heads); the card records every choice."""


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "convert",
        help="import a Point-MAE / ACT / ReCon .pth checkpoint into an mv2d3d folder",
        description="Convert a published Point-MAE-family checkpoint (pretraining or fine-tuned classifier) "
        "into an mv2d3d model folder (config.json + model.safetensors + README.md) that reproduces the "
        "reference model's outputs and loads with mv2d3d.load(DIR).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    p.add_argument("checkpoint", metavar="PATH.pth", help="the checkpoint file")
    p.add_argument("--from", dest="source", required=True, choices=_SOURCES, help="the code that wrote it")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist or be empty)")
    p.add_argument("--num-heads", type=int, default=None, help="attention heads (default: width/64, 6 for 384)")
    p.add_argument("--num-groups", type=int, default=None, help="patches per cloud (default: the recipe's)")
    p.add_argument("--group-size", type=int, default=None, help="points per patch (default: from the checkpoint or 32)")
    p.add_argument("--num-points", type=int, default=None, help="points the model sees (default: the recipe's)")
    p.add_argument("--normalize", action="store_true", help="let the encoder centre and unit-scale clouds itself")
    p.add_argument("--encoder-only", action="store_true", help="from a fine-tuned classifier, keep the encoder only")
    p.add_argument("--class-names", default=None, help="comma-separated class names of a fine-tuned head")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty folder")
    p.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from ..convert import convert

    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    out = convert(
        args.checkpoint,
        args.out,
        source=args.source,
        num_heads=args.num_heads,
        num_groups=args.num_groups,
        group_size=args.group_size,
        num_points=args.num_points,
        normalize=args.normalize,
        encoder_only=args.encoder_only,
        class_names=names,
        overwrite=args.overwrite,
    )
    print(f"wrote {out}")
    print(f"load it with: mv2d3d.load({out!r})" if not _is_classifier(out) else f"load it with: mv2d3d.PointClassifier.from_pretrained({out!r})")
    return 0


def _is_classifier(folder: str) -> bool:
    import json
    from pathlib import Path

    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("architecture") == "PointClassifier"
    except (OSError, ValueError):
        return False
