"""The masked student: the zoo's :class:`~mv2d3d.models.PointEncoder`, run on visible patches only.

Masking picks, per cloud, ``round(ratio * G)`` patches to hide (the same count for every
cloud, so visible and masked patches stay dense tensors). Hidden patches are never embedded
or encoded: the mini-PointNet and the transformer see the visible ones only, which is where
most of the speed of masked pretraining comes from.

Shapes:
    B: clouds, N: points, G: patches, Gv / Gm: visible / masked patches, K: points per patch,
    C: token width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..models.encoder import PointEncoder
from ..ops import gather_points


@dataclass
class StudentOutput:
    """Attributes:
    tokens: [B, Gv, C] encoded visible tokens (final LayerNorm applied).
    neighborhoods: [B, G, K, 3] all patches (relative to their centres), in the encoder's frame.
    centers: [B, G, 3] all patch centres.
    visible: [B, Gv] indices of visible patches; masked: [B, Gm] indices of hidden ones.
    """

    tokens: torch.Tensor
    neighborhoods: torch.Tensor
    centers: torch.Tensor
    visible: torch.Tensor
    masked: torch.Tensor


def make_mask(centers: torch.Tensor, ratio: float, mode: str, noise: torch.Tensor) -> torch.Tensor:
    """Indices of masked-first patch order.

    ``random``: the patches with the ``Gm`` smallest noise values are hidden. ``block``: a
    seed patch (the one with the smallest noise) and its ``Gm - 1`` nearest centres are hidden,
    so the student must fill a contiguous hole (Point-MAE's block mask).

    Args:
        noise: uniform random values, one per patch (drawn by the caller so that the masks
            of a global batch are identical however it is sharded over processes).

    Shapes:
        centers: [B, G, 3], noise: [B, G] -> order [B, G] (first Gm are masked)
    """
    B, G, _ = centers.shape
    if mode == "random":
        return noise.argsort(dim=1)
    seed = noise.argmin(dim=1)  # [B]
    c0 = centers.gather(1, seed.view(B, 1, 1).expand(B, 1, 3))
    dist = (centers - c0).square().sum(-1)
    return dist.argsort(dim=1)


def num_masked(num_groups: int, ratio: float) -> int:
    """Masked patches per cloud: round(ratio * G), keeping at least one visible and one masked."""
    return int(min(max(round(ratio * num_groups), 1), num_groups - 1))


class MaskedStudent(nn.Module):
    """Wraps a :class:`PointEncoder`; its ``encoder`` is what pretraining produces.

    Shapes:
        points: [B, N, 3], noise: [B, G] -> StudentOutput
    """

    def __init__(self, encoder: PointEncoder, ratio: float = 0.6, mode: str = "random"):
        super().__init__()
        self.encoder = encoder
        self.ratio = ratio
        self.mode = mode

    @property
    def num_groups(self) -> int:
        return self.encoder.config.num_groups

    def forward(self, points: torch.Tensor, noise: torch.Tensor) -> StudentOutput:
        enc = self.encoder
        pts, _, _, _ = enc.prepare_points(points)
        pts = enc.resample(pts)
        neigh, centers = enc.group(pts)
        B, G = centers.shape[:2]
        gm = num_masked(G, self.ratio)
        order = make_mask(centers, self.ratio, self.mode, noise[:, :G])
        masked, visible = order[:, :gm], order[:, gm:].sort(dim=1).values
        K = neigh.shape[2]
        neigh_vis = neigh.gather(1, visible.view(B, -1, 1, 1).expand(-1, -1, K, 3))
        tokens, pos = enc.embed(neigh_vis, gather_points(centers, visible))
        x, _ = enc.encode_tokens(tokens, pos)
        if enc.config.use_cls_token:
            x = x[:, 1:]
        return StudentOutput(x, neigh, centers, visible, masked)
