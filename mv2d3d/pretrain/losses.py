"""Pretraining losses, in plain PyTorch.

Shapes:
    B: batch, M / M2: points per set, V: views, P: teacher patches per view, Ct: channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def chamfer_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric Chamfer distance with squared L2, averaged over sets (Point-MAE's ``ChamferDistanceL2``).

    For each point of ``a`` the squared distance to its nearest point in ``b``, averaged, plus
    the same from ``b`` to ``a``. Zero for identical sets; symmetric. Computed in float32.

    Shapes:
        a: [S, M, 3], b: [S, M2, 3] -> scalar
    """
    a, b = a.float(), b.float()
    # |a|^2 + |b|^2 - 2ab in one batched matmul; clamp rounding negatives
    d = torch.baddbmm((a * a).sum(-1, keepdim=True), a, b.transpose(1, 2), alpha=-2.0)
    d = (d + (b * b).sum(-1).unsqueeze(1)).clamp_min(0.0)
    return d.amin(dim=2).mean() + d.amin(dim=1).mean()


def feature_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "smooth_l1") -> torch.Tensor:
    """Regression of teacher features.

    ``smooth_l1``: smooth-L1 between the prediction and the *layer-normed* target (each
    teacher token normalised over its channels, so every layer and teacher has unit scale).
    ``cosine``: 1 - cosine similarity, averaged over tokens.

    Shapes:
        pred, target: [..., Ct] -> scalar
    """
    pred, target = pred.float(), target.float()
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean()
    target = F.layer_norm(target, target.shape[-1:])
    return F.smooth_l1_loss(pred, target)
