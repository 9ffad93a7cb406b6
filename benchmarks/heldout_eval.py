"""Linear-SVM accuracy of a frozen encoder on procedural shapes it was never trained on.

Two held-out sets, both drawn with seeds that no pretraining run uses:

* ``heldout``: the families in ``HELDOUT_FAMILIES``, which the ``tiny-procedural-cpu``
  recipe leaves out of pretraining entirely (other shape families);
* ``seen-families``: the pretraining families, new random shapes (other seeds).

C is chosen by cross-validation on the training split only (mv2d3d.train.evaluate).

    python benchmarks/heldout_eval.py --model mv-m3ae-tiny
    python benchmarks/heldout_eval.py --model runs/tiny/encoder --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from typing import Dict, Sequence

import numpy as np

from mv2d3d.data.procedural import FAMILIES, make_dataset

HELDOUT_FAMILIES = ("airplane", "chair", "lamp", "mug", "table", "tree")
PRETRAIN_FAMILIES = tuple(f for f in FAMILIES if f not in HELDOUT_FAMILIES)
EVAL_SEED_BASE = 910_000  # far from any pretraining seed


def heldout_scores(encoder, *, per_class: int = 10, test_per_class: int = 30, seeds: Sequence[int] = (0,), num_points: int = 1024) -> Dict[str, Dict[str, float]]:
    """Mean and std over ``seeds`` of overall accuracy on both held-out sets."""
    from mv2d3d.train.evaluate import extract_features, linear_svm_eval

    out: Dict[str, Dict[str, float]] = {}
    for name, fams in (("heldout", HELDOUT_FAMILIES), ("seen-families", PRETRAIN_FAMILIES)):
        accs = []
        for s in seeds:
            tr_x, tr_y, _ = make_dataset(per_class, num_points, families=fams, seed=EVAL_SEED_BASE + 2 * s)
            te_x, te_y, _ = make_dataset(test_per_class, num_points, families=fams, seed=EVAL_SEED_BASE + 2 * s + 1)
            ftr, fte = extract_features(encoder, tr_x), extract_features(encoder, te_x)
            accs.append(linear_svm_eval(ftr, tr_y, fte, te_y, seed=s).overall_accuracy)
        out[name] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "n_classes": len(fams)}
    return out


def main() -> None:
    import mv2d3d

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mv-m3ae-tiny")
    ap.add_argument("--random-init", action="store_true", help="the architecture with random weights")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--per-class", type=int, default=10, help="training shapes per class (few: the families are easy)")
    ap.add_argument("--test-per-class", type=int, default=30)
    args = ap.parse_args()
    enc = mv2d3d.load(args.model, pretrained=not args.random_init)
    print(json.dumps(heldout_scores(enc, per_class=args.per_class, test_per_class=args.test_per_class, seeds=args.seeds), indent=2))


if __name__ == "__main__":
    main()
