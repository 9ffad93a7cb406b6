"""The ``mv2d3d`` command line.

Each module of this package adds its verbs through ``register(subparsers)``; modules import
their heavy dependencies inside the command functions so that ``mv2d3d --help`` stays fast.
Library code logs; only this layer prints.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import List, Optional

from .. import __version__
from ..errors import Mv2d3dError

EPILOG = """examples:
  mv2d3d list
  mv2d3d extract scans/ --model mv-m3ae-tiny --out feats.npz
  mv2d3d finetune my_parts/ --model mv-m3ae-tiny --epochs 30 --out my-classifier
  mv2d3d predict my-classifier new_part.obj
  mv2d3d pretrain --config tiny-procedural-cpu --out runs/tiny
  mv2d3d push my-classifier user/my-classifier

Run `mv2d3d VERB --help` for the options of each verb."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mv2d3d",
        description="3D point-cloud encoders distilled from multi-view 2D teachers: list, extract, "
        "fine-tune, pretrain, evaluate, convert and publish.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mv2d3d {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="VERB")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(mod, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Mv2d3dError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
