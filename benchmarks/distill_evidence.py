"""Evidence that 3D-to-2D distillation transfers what a 2D teacher knows into the student.

1. Labelled procedural shapes (``--families``) are rendered into depth views; a small 2D CNN
   (timm ``test_efficientnet``) is trained *with labels* on those views: the teacher.
   Its weights go to a safetensors file and are loaded back through the teacher's
   weight-file path (strict).
2. Students (the same tiny encoder, same data, steps and seed) are pretrained *without
   labels* by ``mv2d3d.train.pretrainer.pretrain`` with: Chamfer only, 3D-to-2D only, both.
3. Every encoder (plus a random-init one) is frozen; a linear SVM
   (:func:`mv2d3d.train.evaluate.linear_svm_eval`, C chosen by CV on the training split) is
   fitted on the pretraining shapes' global features and tested on new shapes of the same
   families (a different seed). The teacher itself is scored the same way on its
   view-averaged pooled features.

    OMP_NUM_THREADS=2 python benchmarks/distill_evidence.py --out runs/distill --steps 300

Prints a table and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from mv2d3d.config import EncoderConfig
from mv2d3d.data.procedural import make_dataset
from mv2d3d.pretrain.config import (DataConfig, HeadsConfig, LossConfig, OptimConfig, PretrainConfig, RenderConfig,
                                    RunConfig, TeacherConfig)
from mv2d3d.pretrain.render import render_depth, to_teacher_input
from mv2d3d.train.evaluate import extract_features, linear_svm_eval

FAMILIES = ["table", "chair", "lamp", "mug", "bottle", "snowman", "dumbbell", "tree", "airplane", "tower"]
VIEWS = ((0.0, 20.0), (90.0, 20.0), (180.0, 20.0), (270.0, 20.0))
RES = 64


def train_teacher(points: np.ndarray, labels: np.ndarray, n_cls: int, out: Path, epochs: int, seed: int) -> Path:
    """Supervised 2D teacher on depth views; returns the safetensors path."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=n_cls)
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    imgs = render_depth(torch.from_numpy(points), VIEWS, RES)  # [S, V, H, W]
    S, V = imgs.shape[:2]
    x_all = to_teacher_input(imgs, mean, std)  # [S*V, 3, H, W]
    y_all = torch.from_numpy(labels).repeat_interleave(V)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(len(x_all), generator=g)
        correct = 0
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            logits = model(x_all[idx])
            loss = nn.functional.cross_entropy(logits, y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y_all[idx]).sum())
        logging.info("teacher epoch %d: train view accuracy %.3f", ep, correct / len(perm))
    path = out / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def teacher_features(weights: Path, points: np.ndarray) -> np.ndarray:
    from mv2d3d.pretrain.teacher import ViewTeacher

    vt = ViewTeacher(TeacherConfig(model="test_efficientnet", weights=str(weights), layer="final"), RenderConfig(views=VIEWS, resolution=RES))
    out = []
    for i in range(0, len(points), 32):
        _, pooled = vt(torch.from_numpy(points[i : i + 32]))
        out.append(pooled.mean(1).numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/distill")
    ap.add_argument("--per-family", type=int, default=30, help="pretraining / SVM-train shapes per family")
    ap.add_argument("--test-per-family", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300, help="pretraining steps per student")
    ap.add_argument("--teacher-epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=["chamfer", "2d", "both"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()

    train_pts, train_y, names = make_dataset(args.per_family, 512, families=FAMILIES, seed=args.seed)
    test_pts, test_y, _ = make_dataset(args.test_per_family, 512, families=FAMILIES, seed=args.seed + 1000)
    weights = train_teacher(train_pts, train_y, len(names), out, args.teacher_epochs, args.seed)
    results = {}
    tr, te = teacher_features(weights, train_pts), teacher_features(weights, test_pts)
    r = linear_svm_eval(tr, train_y, te, test_y)
    results["teacher (2D, supervised)"] = r.overall_accuracy
    print(f"teacher (2D, trained with labels): SVM accuracy {r.overall_accuracy:.3f}", flush=True)

    enc_cfg = EncoderConfig(embed_dim=96, depth=4, num_heads=3, num_points=512, num_groups=32, group_size=16,
                            drop_path_rate=0.0, point_feature_layers=(3,))
    batch = 32
    epochs = max(1, -(-args.steps // ((len(train_pts)) // batch)))
    losses = {"chamfer": LossConfig(w3d=1.0, w2d=0.0, w_global=0.0), "2d": LossConfig(w3d=0.0, w2d=1.0, w_global=0.1),
              "both": LossConfig(w3d=1.0, w2d=1.0, w_global=0.1)}
    from mv2d3d.models.encoder import PointEncoder
    from mv2d3d.train.pretrainer import pretrain

    torch.manual_seed(args.seed)
    rnd = PointEncoder(enc_cfg).eval()
    r = linear_svm_eval(extract_features(rnd, train_pts), train_y, extract_features(rnd, test_pts), test_y)
    results["random init"] = r.overall_accuracy
    print(f"random init: SVM accuracy {r.overall_accuracy:.3f}", flush=True)
    for name in args.variants:
        cfg = PretrainConfig(
            name=f"distill-evidence-{name}",
            encoder=enc_cfg,
            data=DataConfig(source="procedural", families=tuple(FAMILIES), num_per_family=args.per_family, stored_points=512, sample_points=512, seed=args.seed),
            render=RenderConfig(views=VIEWS, resolution=RES),
            teacher=TeacherConfig(model="test_efficientnet", weights=str(weights.resolve()), layer="final", cache=True, cache_dir=str(out / "cache")),
            heads=HeadsConfig(decoder_dim=96, decoder_depth=2, decoder_heads=3, head2d_dim=96, head2d_depth=2, head2d_heads=3),
            loss=losses[name],
            optim=OptimConfig(epochs=epochs, batch_size=batch, lr=1e-3, warmup_epochs=1, amp="none"),
            run=RunConfig(seed=args.seed, save_every=10_000),
        )
        res = pretrain(cfg, out / name, max_steps=args.steps, progress=False)
        enc = PointEncoder(enc_cfg)
        from safetensors.torch import load_file

        enc.load_state_dict_strict(load_file(str(res.encoder_dir / "model.safetensors")))
        enc.eval()
        r = linear_svm_eval(extract_features(enc, train_pts), train_y, extract_features(enc, test_pts), test_y)
        results[name] = r.overall_accuracy
        print(f"{name}: {res.step} steps, last loss {res.last_loss:.4f}, SVM accuracy {r.overall_accuracy:.3f}", flush=True)

    print(f"\n{len(FAMILIES)} families, {len(train_pts)} pretraining/SVM-train shapes, {len(test_pts)} held-out test shapes, "
          f"{args.steps} pretraining steps per student, {time.time() - t0:.0f} s total\n")
    print("| encoder | linear-SVM accuracy (held-out shapes) |\n| --- | --- |")
    order = ["random init", "chamfer", "2d", "both", "teacher (2D, supervised)"]
    label = {"chamfer": "student, Chamfer only", "2d": "student, 3D-to-2D only", "both": "student, Chamfer + 3D-to-2D"}
    for k in order:
        if k in results:
            print(f"| {label.get(k, k)} | {results[k]:.3f} |")
    (out / "results.json").write_text(json.dumps({"results": results, "args": vars(args)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
