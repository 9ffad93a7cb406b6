"""The baseline of the encoder benchmark: a plain fp32 PyTorch model of the Point-MAE base
encoder, written the straightforward way.

Straightforward means, on purpose (this is what the optimised :class:`mv2d3d.PointEncoder`
is measured against):

- farthest point sampling as a sequential Python loop over samples, starting at index 0;
- kNN as ``torch.cdist`` + ``topk``;
- the mini-PointNet as ``Conv1d(kernel_size=1)`` layers on [BG, channels, K] with separate
  ``BatchNorm1d`` layers, the 256-channel global feature tiled to every point and
  concatenated (512-channel input);
- attention written out (``q @ k^T``, softmax, ``@ v``).

Layer for layer it is the Point-MAE encoder (mini-PointNet 3-128-256 / 512-512-C with
BatchNorm, centre MLP 3-128-C with GELU, position embedding added before every block,
pre-norm blocks, qkv without bias, final LayerNorm); global features are max- and
mean-pooled final tokens. :func:`copy_from_encoder` fills it with the weights of an mv2d3d
``PointEncoder`` so the two can be compared number for number (tests do that).

Shapes:
    B: batch, N: points, G: groups, K: group size, C: width.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn


def fps_loop(xyz: torch.Tensor, m: int) -> torch.Tensor:
    """Sequential farthest point sampling from index 0. Shapes: [B, N, 3] -> [B, m]."""
    B, N, _ = xyz.shape
    idx = torch.zeros(B, m, dtype=torch.long)
    dist = torch.full((B, N), 1e10)
    far = torch.zeros(B, dtype=torch.long)
    ar = torch.arange(B)
    for i in range(m):
        idx[:, i] = far
        c = xyz[ar, far].view(B, 1, 3)
        dist = torch.minimum(dist, ((xyz - c) ** 2).sum(-1))
        far = dist.max(-1)[1]
    return idx


def group(xyz: torch.Tensor, num_group: int, group_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """FPS centres, cdist+topk neighbours, relative coordinates.

    Shapes: [B, N, 3] -> (neighbourhoods [B, G, K, 3], centres [B, G, 3])
    """
    B = xyz.shape[0]
    ar = torch.arange(B)[:, None]
    center = xyz[ar, fps_loop(xyz, num_group)]
    idx = torch.cdist(center, xyz).topk(group_size, dim=-1, largest=False)[1]  # B G K
    nb = xyz[ar[:, :, None], idx]
    return nb - center.unsqueeze(2), center


class MiniPointNet(nn.Module):
    """Shapes: [B, G, K, 3] -> [B, G, C]"""

    def __init__(self, c: int):
        super().__init__()
        self.c = c
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Conv1d(512, c, 1))

    def forward(self, nb: torch.Tensor) -> torch.Tensor:
        B, G, K, _ = nb.shape
        x = nb.reshape(B * G, K, 3).transpose(2, 1)
        f = self.first_conv(x)  # BG 256 K
        g = torch.max(f, dim=2, keepdim=True)[0]
        f = torch.cat([g.expand(-1, -1, K), f], dim=1)  # BG 512 K
        f = self.second_conv(f)
        return torch.max(f, dim=2)[0].reshape(B, G, self.c)


class Attention(nn.Module):
    def __init__(self, c: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (c // heads) ** -0.5
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    def __init__(self, c: int, h: int):
        super().__init__()
        self.fc1 = nn.Linear(c, h)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(h, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, c: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(c)
        self.attn = Attention(c, heads)
        self.norm2 = nn.LayerNorm(c)
        self.mlp = Mlp(c, int(c * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PlainPointMAEEncoder(nn.Module):
    """The plain Point-MAE encoder (base: C=384, depth 12, 6 heads, 64 groups of 32).

    Shapes:
        points: [B, N, 3] (already normalised, as Point-MAE's data pipeline does) ->
        (global features [B, 2C], tokens [B, G, C], centres [B, G, 3])
    """

    def __init__(self, embed_dim: int = 384, depth: int = 12, num_heads: int = 6, num_groups: int = 64, group_size: int = 32, mlp_ratio: float = 4.0):
        super().__init__()
        self.num_groups, self.group_size = num_groups, group_size
        self.encoder = MiniPointNet(embed_dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, points: torch.Tensor):
        nb, center = group(points, self.num_groups, self.group_size)
        x = self.encoder(nb)
        pos = self.pos_embed(center)
        for blk in self.blocks:
            x = blk(x + pos)
        x = self.norm(x)
        return torch.cat([x.max(1)[0], x.mean(1)], dim=-1), x, center


@torch.no_grad()
def copy_from_encoder(plain: PlainPointMAEEncoder, enc: nn.Module) -> PlainPointMAEEncoder:
    """Fill ``plain`` with the weights of an mv2d3d ``PointEncoder`` of the same size
    (its Linear mini-PointNet weights become Conv1d kernels)."""
    src = enc.state_dict()
    dst = plain.state_dict()
    for k in dst:
        s = k.replace("encoder.", "patch_embed.", 1) if k.startswith("encoder.") else k
        v = src[s]
        if dst[k].dim() == 3:  # Conv1d kernel [out, in, 1]
            v = v.unsqueeze(-1)
        dst[k].copy_(v)
    return plain
