"""Everything that trains, in one module: masked student + point decoder + 3D-to-2D head.

One ``nn.Module`` so DistributedDataParallel wraps it whole; only the heads whose loss weight
is non-zero are built (DDP needs every parameter to receive a gradient).

Shapes:
    B: clouds, n: points, G: patches, Gm: masked patches, K: points per patch,
    V: views, P: teacher patches per view, Ct: teacher channels.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..models.encoder import PointEncoder
from ..ops import gather_points
from .config import PretrainConfig
from .heads import Head2D, PointDecoder
from .losses import chamfer_l2, feature_loss
from .student import MaskedStudent


class PretrainModel(nn.Module):
    """Student + heads + losses.

    Args:
        cfg: the recipe.
        teacher_grid, teacher_dim, num_views: the teacher's patch grid (h, w), channels and
            the number of views (needed only when a 2D loss weight is non-zero).

    Shapes:
        points [B, n, 3], noise [B, G], teacher_maps [B, V, P, Ct], teacher_pooled [B, V, Ct]
        -> (loss scalar, {"chamfer", "loss2d", "global"} scalars)
    """

    def __init__(self, cfg: PretrainConfig, teacher_grid: Optional[Tuple[int, int]] = None, teacher_dim: int = 0, num_views: int = 0):
        super().__init__()
        self.cfg = cfg
        enc = cfg.encoder
        self.student = MaskedStudent(PointEncoder(enc), cfg.mask.ratio, cfg.mask.mode)
        h = cfg.heads
        self.decoder = PointDecoder(enc.embed_dim, enc.group_size, h.decoder_dim, h.decoder_depth, h.decoder_heads) if cfg.loss.w3d > 0 else None
        self.uses_teacher = cfg.loss.w2d > 0 or cfg.loss.w_global > 0
        self.head2d = None
        if self.uses_teacher:
            if teacher_grid is None or not teacher_dim or not num_views:
                raise ValueError("a 2D loss weight is set: teacher_grid, teacher_dim and num_views are required")
            self.head2d = Head2D(enc.embed_dim, num_views, teacher_grid, teacher_dim, dim=h.head2d_dim, depth=h.head2d_depth, num_heads=h.head2d_heads, mlp_ratio=h.head2d_mlp_ratio)
            if cfg.loss.w_global <= 0:
                self.head2d.global_out = None  # unused parameters would stall DDP
            if cfg.loss.w2d <= 0:
                self.head2d.blocks = nn.ModuleList()

    @property
    def encoder(self) -> PointEncoder:
        return self.student.encoder

    def forward(self, points: torch.Tensor, noise: torch.Tensor, teacher_maps: Optional[torch.Tensor] = None, teacher_pooled: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        cfg = self.cfg.loss
        s = self.student(points, noise)
        zero = s.tokens.new_zeros((), dtype=torch.float32)
        parts = {"chamfer": zero, "loss2d": zero, "global": zero}
        loss = zero
        c_vis = gather_points(s.centers, s.visible)
        if self.decoder is not None:
            pred = self.decoder(s.tokens, c_vis, gather_points(s.centers, s.masked))
            K = s.neighborhoods.shape[2]
            target = s.neighborhoods.gather(1, s.masked.view(*s.masked.shape, 1, 1).expand(-1, -1, K, 3))
            parts["chamfer"] = chamfer_l2(pred.reshape(-1, K, 3), target.reshape(-1, K, 3))
            loss = loss + cfg.w3d * parts["chamfer"]
        if self.head2d is not None:
            if teacher_maps is None:
                raise ValueError("this model has a 2D head: pass teacher_maps and teacher_pooled")
            hd = self.head2d
            if cfg.w2d > 0:
                parts["loss2d"] = self._loss2d(s.tokens, c_vis, teacher_maps)
                loss = loss + cfg.w2d * parts["loss2d"]
            if cfg.w_global > 0:
                pooled_in = torch.cat([s.tokens.amax(dim=1), s.tokens.mean(dim=1)], dim=-1)
                pooled = hd.global_out(pooled_in).view(points.shape[0], hd.num_views, hd.teacher_dim)
                parts["global"] = feature_loss(pooled, teacher_pooled, cfg.loss2d)
                loss = loss + cfg.w_global * parts["global"]
        return loss, parts


    def _loss2d(self, tokens: torch.Tensor, centers_vis: torch.Tensor, teacher_maps: torch.Tensor) -> torch.Tensor:
        """3D-to-2D loss, one view at a time under activation checkpointing.

        The predictions and targets of all views are large (B x V x P x Ct: 116 MB of fp32 for
        the base recipe's 6 x 196 x 768 at batch 32) and the head's activations more so; a
        view's predictions are recomputed in backward instead of stored, so peak memory grows
        with one view, not V. Same value and gradients as the unchunked loss.

        Shapes:
            tokens [B, Gv, C], centers_vis [B, Gv, 3], teacher_maps [B, V, P, Ct] -> scalar
        """
        hd, kind = self.head2d, self.cfg.loss.loss2d
        B, V, P, Ct = teacher_maps.shape
        mem = hd.mem_proj(tokens) + hd.mem_pos(centers_vis.to(tokens.dtype))
        queries = hd.queries().to(mem.dtype).view(1, V, P, -1)

        def one_view(q: torch.Tensor, mem: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            x = q
            for blk in hd.blocks:
                x = blk(x, mem)
            if x.shape[0] != B:
                x = x.expand(B, -1, -1)
            pred = hd.out(hd.norm(x))
            return feature_loss(pred, target, kind) * (pred.shape[:-1].numel() if kind == "cosine" else pred.numel())

        total = tokens.new_zeros((), dtype=torch.float32)
        use_ckpt = self.cfg.heads.checkpoint_2d and torch.is_grad_enabled()
        for v in range(V):
            args = (queries[:, v], mem, teacher_maps[:, v])
            if use_ckpt:
                total = total + checkpoint(one_view, *args, use_reentrant=False)
            else:
                total = total + one_view(*args)
        return total / (B * V * P if kind == "cosine" else B * V * P * Ct)


class _DistBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics span all processes (works with gloo on CPU,
    where torch's SyncBatchNorm does not). Same parameters and buffers as BatchNorm1d.

    Statistics are gathered with the differentiable ``torch.distributed.nn.all_reduce`` in two
    passes (mean, then centred second moment), so gradients match a single process holding
    the whole global batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        xf = x.float()
        n = torch.tensor([float(xf.shape[0])], device=x.device)
        tot = all_reduce(torch.cat([xf.sum(0), n]))
        count = tot[-1]
        mean = tot[:-1] / count
        var = all_reduce((xf - mean).square().sum(0)) / count
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean.mul_(1 - m).add_(mean.detach() * m)
            self.running_var.mul_(1 - m).add_(var.detach() * (count / (count - 1).clamp_min(1)) * m)
            self.num_batches_tracked.add_(1)
        y = (xf - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Make every BatchNorm1d of ``module`` synchronise its statistics across processes (in place)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm1d:
            new = _DistBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.to(child.weight.device)
            setattr(module, name, new)
        else:
            sync_batchnorm(child)
    return module
