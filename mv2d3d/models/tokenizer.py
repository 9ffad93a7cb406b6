"""Point tokenizer: grouping into local patches and the mini-PointNet patch embedding.

Shapes:
    B: batch size, N: points, G: groups (patches), K: points per group, C: token width.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import farthest_point_sample, gather_points, group_points


def group_cloud(points: torch.Tensor, num_groups: int, group_size: int, fps_start: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cut clouds into ``num_groups`` patches of ``group_size`` points.

    Centres are farthest-point samples; each patch holds the centre's nearest points,
    expressed relative to the centre.

    Shapes:
        points: [B, N, 3] -> (neighbourhoods [B, G, K, 3], centres [B, G, 3])
    """
    G = min(num_groups, points.shape[1])
    idx = farthest_point_sample(points, G, start=fps_start)
    centers = gather_points(points, idx)
    return group_points(points, centers, group_size), centers


def _bn_affine(bn: nn.BatchNorm1d) -> Tuple[torch.Tensor, torch.Tensor]:
    # Eval-mode BatchNorm as y = x * scale + shift, to fold into the preceding linear layer.
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class PatchEmbed(nn.Module):
    """Mini-PointNet: one token per patch (Point-MAE's ``Encoder``, layer for layer).

    ``first_conv``: 3 -> 128 (BN, ReLU) -> 256; max-pool over the patch gives a global
    feature; ``second_conv`` takes [global, per-point] (512) -> 512 (BN, ReLU) -> C; max-pool.

    Two savings over the reference, same maths: the global half of the 512-channel input is
    multiplied once per patch instead of once per point (it is the same for all K points),
    and in eval mode BatchNorm is folded into the preceding linear layer.

    Shapes:
        neighborhoods: [B, G, K, 3] -> tokens [B, G, C]
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        self.embed_dim = embed_dim
        # Linear on channel-last rows == Conv1d(kernel_size=1) of the reference.
        self.first_conv = nn.Sequential(nn.Linear(3, 128), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Linear(128, 256))
        self.second_conv = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, embed_dim))

    def _linear_bn(self, x: torch.Tensor, lin: nn.Linear, bn: nn.BatchNorm1d, extra: Optional[torch.Tensor] = None, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        w = lin.weight if weight is None else weight
        if self.training:
            y = F.linear(x, w, lin.bias)
            if extra is not None:
                y = y + extra
            shape = y.shape
            return bn(y.reshape(-1, shape[-1])).reshape(shape)
        scale, shift = _bn_affine(bn)
        y = F.linear(x, w * scale[:, None], lin.bias * scale + shift)
        if extra is not None:
            y = y + extra * scale
        return y

    def forward(self, neighborhoods: torch.Tensor) -> torch.Tensor:
        B, G, K, _ = neighborhoods.shape
        x = neighborhoods.reshape(B * G, K, 3).to(self.first_conv[0].weight.dtype)
        l0, bn0, _, l1 = self.first_conv
        f = l1(F.relu(self._linear_bn(x, l0, bn0)))  # [BG, K, 256]
        g = f.amax(dim=1, keepdim=True)  # [BG, 1, 256]
        l2, bn1, _, l3 = self.second_conv
        w_global, w_local = l2.weight[:, :256], l2.weight[:, 256:]
        # reference input order is cat([global, local]); split the weight instead of the input
        h = self._linear_bn(f, l2, bn1, extra=F.linear(g, w_global), weight=w_local)
        return l3(F.relu(h)).amax(dim=1).reshape(B, G, self.embed_dim)


class CenterEmbed(nn.Sequential):
    """Position embedding of a patch centre: MLP 3 -> 128 (GELU) -> C.

    Shapes:
        centers: [B, G, 3] -> [B, G, C]
    """

    def __init__(self, embed_dim: int):
        super().__init__(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, embed_dim))
