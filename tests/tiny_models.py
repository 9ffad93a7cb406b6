"""Small models shared by the data/fine-tuning/evaluation tests (imported as a module: the
tests folder is on sys.path under pytest's default rootdir import mode)."""

from __future__ import annotations

from pathlib import Path

import torch

from mv2d3d import EncoderConfig, PointEncoder
from mv2d3d.data import make_dataset

TINY = EncoderConfig(embed_dim=64, depth=2, num_heads=2, num_points=256, num_groups=16, group_size=16, point_feature_layers=(0, 1))


def save_calibrated_tiny_encoder(folder: Path) -> Path:
    """A tiny random encoder saved as a model folder. Its BatchNorm statistics are measured on
    procedural shapes first, as a pretrained encoder's are: with the initial statistics
    (mean 0, var 1) every cloud gives nearly the same features in eval mode."""
    torch.manual_seed(0)
    enc = PointEncoder(TINY)
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: exact statistics
    pts, _, _ = make_dataset(4, 256, seed=5)
    enc.train()
    with torch.no_grad():
        for i in range(0, len(pts), 34):
            enc(torch.from_numpy(pts[i : i + 34]))
    for m in bns:
        m.momentum = 0.1
    enc.eval().save_pretrained(folder)
    return folder
