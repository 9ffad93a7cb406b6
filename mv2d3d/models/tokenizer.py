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


# Rows (patch points) per chunk of the inference path: small enough that the [rows, 512]
# activations stay in cache and are reused, large enough that each matmul stays efficient.
_INFER_CHUNK_ROWS = 4096


class PatchEmbed(nn.Module):
    """Mini-PointNet: one token per patch (Point-MAE's ``Encoder``, layer for layer).

    ``first_conv``: 3 -> 128 (BN, ReLU) -> 256; max-pool over the patch gives a global
    feature; ``second_conv`` takes [global, per-point] (512) -> 512 (BN, ReLU) -> C; max-pool.
    The layers are ``nn.Linear`` on channel-last rows, which is the reference's
    ``Conv1d(kernel_size=1)`` (the Point-MAE importer reshapes the kernels).

    Same maths as the reference, less work:

    - the global half of the 512-channel input is multiplied once per patch instead of
      once per point (it is the same for all K points): -27% of the FLOPs;
    - in eval mode BatchNorm is folded into the preceding linear layer;
    - without autograd (``torch.no_grad``/``inference_mode``) in eval mode, the per-point half
      ``W_local @ (W1 r + b1)`` is computed as ``(W_local W1) r + W_local b1``: one
      128 -> 512 matmul instead of 256 -> 512 (the 256-channel ``f`` is still needed for
      its max). The folded weights are computed in float32 on every call (cheap);
      activations are processed in cache-sized chunks, in place.
      Together: ~40% fewer FLOPs than the reference mini-PointNet.

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

    # -- inference path ------------------------------------------------------------------------
    @torch.no_grad()
    def folded_weights(self) -> Tuple[torch.Tensor, ...]:
        """The eval-mode weights of the inference path, BatchNorm and ``W_local W1`` folded
        (computed in float32, returned in the parameters' dtype).

        Not cached on purpose: folding costs ~17 MFLOP (under 3% of one 1024-point cloud),
        and a cache could go stale when weights are edited through ``.data``.

        Returns:
            (W0 [128, 3], b0, W1 [256, 128], b1, W2g [512, 256], W2l [512, 128], b2,
            W3 [C, 512], b3)
        """
        l0, bn0, _, l1 = self.first_conv
        l2, bn1, _, l3 = self.second_conv
        dt = l0.weight.dtype
        f32 = lambda t: t.float()  # noqa: E731
        s0 = f32(bn0.weight) * torch.rsqrt(f32(bn0.running_var) + bn0.eps)
        w0 = f32(l0.weight) * s0[:, None]
        b0 = (f32(l0.bias) - f32(bn0.running_mean)) * s0 + f32(bn0.bias)
        s1 = f32(bn1.weight) * torch.rsqrt(f32(bn1.running_var) + bn1.eps)
        w2 = f32(l2.weight) * s1[:, None]
        w2g, w2l = w2[:, :256], w2[:, 256:]
        w1, b1 = f32(l1.weight), f32(l1.bias)
        b2 = (f32(l2.bias) - f32(bn1.running_mean)) * s1 + f32(bn1.bias) + w2l @ b1
        return tuple(
            t.to(dt).contiguous()
            for t in (w0, b0, w1, b1, w2g, w2l @ w1, b2, f32(l3.weight), f32(l3.bias))
        )

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        # x: [P, K, 3] in the network dtype; no autograd here.
        w0, b0, w1, b1, w2g, w2l, b2, w3, b3 = self.folded_weights()
        P, K, _ = x.shape
        out = x.new_empty(P, self.embed_dim)
        step = max(1, _INFER_CHUNK_ROWS // K)
        for s in range(0, P, step):
            r = F.linear(x[s : s + step], w0, b0).relu_()  # [p, K, 128]
            g = F.linear(r, w1, b1).amax(dim=1)  # [p, 256]: the patch's global feature
            h = torch.matmul(r, w2l.t())  # [p, K, 512]: per-point half, via W_local W1
            h.add_(F.linear(g, w2g, b2).unsqueeze(1)).relu_()  # + global half, once per patch
            torch.amax(F.linear(h, w3, b3), dim=1, out=out[s : s + step])
        return out

    def forward(self, neighborhoods: torch.Tensor) -> torch.Tensor:
        B, G, K, _ = neighborhoods.shape
        x = neighborhoods.reshape(B * G, K, 3).to(self.first_conv[0].weight.dtype)
        if not self.training and not torch.is_grad_enabled():
            return self._forward_inference(x).reshape(B, G, self.embed_dim)
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
