"""Choose the recipe of the shipped ``mv-m3ae-tiny`` by measurement.

Pretrains the tiny encoder with ``mv2d3d pretrain`` (recipe ``tiny-procedural-cpu``, the
pretraining families of ``heldout_eval.PRETRAIN_FAMILIES`` only) under three objectives with
the same data, steps and seed, then scores each — and a random-init encoder — by linear-SVM
accuracy on shapes no run saw (held-out families, and new seeds of the seen families):

* ``chamfer``: masked point reconstruction only (Point-MAE);
* ``both``: Chamfer + 3D-to-2D feature reconstruction of the EfficientNet-Lite0 teacher;
* ``2d``: 3D-to-2D only.

    python benchmarks/choose_tiny_recipe.py --out runs/choose --epochs 6

Prints a table (mean +- std over evaluation seeds) and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from heldout_eval import PRETRAIN_FAMILIES, heldout_scores  # noqa: E402

VARIANTS = {
    "chamfer": ["--set", "loss.w2d=0", "--set", "loss.w_global=0"],
    "both": [],
    "2d": ["--set", "loss.w3d=0"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/choose")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--num-per-family", type=int, default=150)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="evaluation seeds")
    ap.add_argument("--skip-train", action="store_true", help="only evaluate existing runs")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [
        "--config", "tiny-procedural-cpu", "--no-progress",
        "--set", f"data.families={json.dumps(list(PRETRAIN_FAMILIES))}",
        "--set", f"data.num_per_family={args.num_per_family}",
        "--set", f"optim.epochs={args.epochs}", "--set", "optim.warmup_epochs=1",
        "--set", f"teacher.cache_dir={json.dumps(str(out / 'teacher_cache'))}",
    ]
    import mv2d3d

    results = {}
    if (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
    for name in args.variants:
        run = out / name
        if not args.skip_train:
            t = time.time()
            cmd = [sys.executable, "-m", "mv2d3d", "pretrain", "--out", str(run), *common, *VARIANTS[name]]
            if (run / "checkpoints").exists():
                cmd.append("--resume")
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            results.setdefault(name, {})["train_seconds"] = round(time.time() - t)
        enc = mv2d3d.load(str(run / "encoder"))
        results.setdefault(name, {})["scores"] = heldout_scores(enc, seeds=args.seeds)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(name, json.dumps(results[name]), flush=True)
    if "random" not in results:
        enc = mv2d3d.load("mv-m3ae-tiny", pretrained=False)
        results["random"] = {"scores": heldout_scores(enc, seeds=args.seeds)}
        (out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| run | held-out families | seen families, new shapes | train s |")
    print("| --- | --- | --- | --- |")
    for name, r in results.items():
        s = r["scores"]
        cell = lambda k: f"{100 * s[k]['mean']:.1f} +- {100 * s[k]['std']:.1f}"  # noqa: E731
        print(f"| {name} | {cell('heldout')} | {cell('seen-families')} | {r.get('train_seconds', '-')} |")


if __name__ == "__main__":
    main()
