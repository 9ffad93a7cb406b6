"""Verb ``pretrain``: run a pretraining recipe (also under torchrun)."""

from __future__ import annotations

import argparse
import sys


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain an encoder (masked 3D + multi-view 2D distillation)",
        description="Pretrain a student encoder from a recipe: masked point reconstruction (Chamfer) and "
        "3D-to-2D reconstruction of a frozen 2D teacher's multi-view features. Checkpoints go to "
        "OUT/checkpoints/last.pt, metrics to OUT/metrics.jsonl, the encoder to OUT/encoder. "
        "Runs unchanged under `torchrun --nproc_per_node=K -m mv2d3d pretrain ...`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  mv2d3d pretrain --config tiny-procedural-cpu --out runs/tiny\n"
        "  mv2d3d pretrain --config tiny-procedural-cpu --out runs/tiny --resume\n"
        "  mv2d3d pretrain --config my_recipe.json --out runs/x --set optim.lr=5e-4 --set optim.epochs=10\n"
        "  torchrun --nproc_per_node=8 -m mv2d3d pretrain --config base-shapenet55 --out runs/base "
        "--set data.path=/data/ShapeNet55-34\n"
        "  mv2d3d pretrain --list-recipes",
    )
    p.add_argument("--config", help="shipped recipe name (see --list-recipes) or a recipe .json file")
    p.add_argument("--out", help="run folder")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many global steps (resume later)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU if available)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a recipe field (JSON value), repeatable, e.g. --set optim.batch_size=64")
    p.add_argument("--epochs", type=int, default=None, help="shorthand for --set optim.epochs=N")
    p.add_argument("--batch-size", type=int, default=None, help="global batch; shorthand for --set optim.batch_size=N")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default=None, help="shorthand for --set optim.amp=...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list-recipes", action="store_true", help="list the shipped recipes and exit")
    p.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    from ..pretrain.config import list_recipes, load_recipe

    if args.list_recipes:
        for name in list_recipes():
            cfg = load_recipe(name)
            print(f"{name:<22} teacher {cfg.teacher.model} ({cfg.teacher.weights})  {cfg.description}")
        return 0
    if not args.config or not args.out:
        print("error: pretrain needs --config RECIPE_OR_FILE and --out DIR", file=sys.stderr)
        return 2
    from ..train.pretrainer import pretrain

    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"optim.epochs={args.epochs}")
    if args.batch_size is not None:
        overrides.append(f"optim.batch_size={args.batch_size}")
    if args.amp is not None:
        overrides.append(f'optim.amp="{args.amp}"')
    command = "mv2d3d " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith(("mv2d3d", "__main__.py")) else None
    res = pretrain(args.config, args.out, device=args.device, max_steps=args.max_steps, resume=args.resume,
                   overrides=overrides, progress=not args.no_progress, command=command)
    if res.encoder_dir is not None:
        print(f"step {res.step}/{res.total_steps}, last loss {res.last_loss:.4f}; encoder saved to {res.encoder_dir}")
    return 0
