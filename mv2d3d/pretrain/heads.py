"""Reconstruction heads used only during pretraining (discarded afterwards).

* :class:`PointDecoder`: Point-MAE's light decoder: mask tokens placed at the masked centres
  join the visible tokens, a few transformer blocks (position embedding added before each),
  and a linear layer predicts the K points of every masked patch.
* :class:`Head2D`: the 3D-to-2D head: one learnable query per teacher patch per view (a view
  embedding plus a 2D row/column position embedding) cross-attends to the visible encoded 3D
  tokens and predicts the full teacher feature maps of all V views; plus an optional linear
  prediction of the pooled teacher features.

Shapes:
    B: clouds, Gv / Gm: visible / masked patches, K: points per patch, C: student width,
    V: views, P = h * w: teacher patches per view, Ct: teacher channels, Q = V * P queries.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block


def _centre_mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class PointDecoder(nn.Module):
    """Predicts the points of every masked patch from the visible tokens.

    Shapes:
        tokens [B, Gv, C], centers_vis [B, Gv, 3], centers_mask [B, Gm, 3] -> [B, Gm, K, 3]
    """

    def __init__(self, embed_dim: int, group_size: int, dim: int = 384, depth: int = 4, num_heads: int = 6):
        super().__init__()
        self.group_size = group_size
        self.proj = nn.Linear(embed_dim, dim) if dim != embed_dim else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = _centre_mlp(dim)
        self.blocks = nn.ModuleList(Block(dim, num_heads, qkv_bias=False, norm_layer=nn.LayerNorm) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, 3 * group_size)
        self.apply(_init)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, tokens: torch.Tensor, centers_vis: torch.Tensor, centers_mask: torch.Tensor) -> torch.Tensor:
        B, Gm = centers_mask.shape[:2]
        x_vis = self.proj(tokens)
        x = torch.cat([x_vis, self.mask_token.to(x_vis.dtype).expand(B, Gm, -1)], dim=1)
        pos = self.pos_embed(torch.cat([centers_vis, centers_mask], dim=1).to(x.dtype))
        for blk in self.blocks:
            x = blk(x + pos)
        # only the masked tokens are read out (the visible ones need no prediction)
        x = self.norm(x[:, -Gm:])
        return self.out(x).view(B, Gm, self.group_size, 3)


class CrossBlock(nn.Module):
    """Pre-norm cross-attention (queries -> memory) and MLP, with residuals.

    Shapes:
        x: [B or 1, Q, D], memory: [B, T, D] -> [B, Q, D]
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        B, T, D = memory.shape
        Q, H = x.shape[1], self.num_heads
        # for the first block x is the same for every cloud ([1, Q, D]): project it once
        q = self.q(self.norm_q(x)).view(x.shape[0], Q, H, D // H).transpose(1, 2).expand(B, -1, -1, -1)
        k, v = self.kv(self.norm_kv(memory)).view(B, T, 2, H, D // H).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, Q, D)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class Head2D(nn.Module):
    """The 3D-to-2D reconstruction head.

    Args:
        embed_dim: student width C.
        num_views: V.
        grid: teacher patch grid (h, w).
        teacher_dim: Ct.
        dim, depth, num_heads, mlp_ratio: width, cross-attention blocks, heads, MLP ratio.

    Shapes:
        tokens [B, Gv, C], centers_vis [B, Gv, 3] -> (maps [B, V, P, Ct], pooled [B, V, Ct])
    """

    def __init__(self, embed_dim: int, num_views: int, grid: Tuple[int, int], teacher_dim: int, *, dim: int = 192, depth: int = 2, num_heads: int = 3, mlp_ratio: float = 2.0):
        super().__init__()
        self.num_views, self.grid, self.teacher_dim = num_views, tuple(grid), teacher_dim
        h, w = self.grid
        self.view_embed = nn.Parameter(torch.randn(num_views, 1, dim) * 0.02)
        self.row_embed = nn.Parameter(torch.randn(h, 1, dim) * 0.02)
        self.col_embed = nn.Parameter(torch.randn(1, w, dim) * 0.02)
        self.mem_proj = nn.Linear(embed_dim, dim)
        self.mem_pos = _centre_mlp(dim)
        self.blocks = nn.ModuleList(CrossBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, teacher_dim)
        self.global_out = nn.Linear(2 * embed_dim, num_views * teacher_dim)
        self.apply(_init)

    def queries(self) -> torch.Tensor:
        """Shapes: -> [1, V * P, dim]."""
        pos = (self.row_embed + self.col_embed).reshape(1, -1, self.row_embed.shape[-1])  # [1, P, D]
        return (self.view_embed + pos).reshape(1, -1, pos.shape[-1])

    def forward(self, tokens: torch.Tensor, centers_vis: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        B = tokens.shape[0]
        mem = self.mem_proj(tokens) + self.mem_pos(centers_vis.to(tokens.dtype))
        x = self.queries().to(mem.dtype)
        for blk in self.blocks:
            x = blk(x, mem)
        if x.shape[0] != B:  # depth 0
            x = x.expand(B, -1, -1)
        maps = self.out(self.norm(x)).view(B, self.num_views, -1, self.teacher_dim)
        if self.global_out is None:  # built without the global term
            return maps, None
        pooled_in = torch.cat([tokens.amax(dim=1), tokens.mean(dim=1)], dim=-1)
        pooled = self.global_out(pooled_in).view(B, self.num_views, self.teacher_dim)
        return maps, pooled
