"""The point encoder of the zoo: tokenizer + pre-norm transformer (Point-MAE layout).

Shapes:
    B: batch size, N: input points, G: patches, K: points per patch,
    C: token width (``embed_dim``), D: global feature width (2C), C': point feature width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..config import EncoderConfig
from ..ops import farthest_point_sample, gather_points, interpolate_features
from .base import PretrainedModel
from .inputs import as_point_batch, normalize_points
from .tokenizer import CenterEmbed, PatchEmbed, group_cloud


@dataclass
class EncoderOutput:
    """What :class:`PointEncoder` returns.

    Attributes:
        global_features: [B, D] max- and mean-pooled final tokens, concatenated (D = 2C).
        patch_features: [B, G, C] final (layer-normed) patch tokens.
        centers: [B, G, 3] patch centres, in the input's own coordinate frame.
    """

    global_features: torch.Tensor
    patch_features: torch.Tensor
    centers: torch.Tensor


def _block_classes() -> Tuple[type, type]:
    """timm's ViT ``Block`` and :class:`NormedResidualBlock`, imported on first use.

    timm is imported here, not at module level: ``import timm`` pulls in torchvision and
    torch._dynamo (~3 s), and ``import mv2d3d`` must stay fast. Building a model pays it once.
    """
    global _BLOCKS
    if _BLOCKS is None:
        from timm.models.vision_transformer import Block

        class NormedResidualBlock(Block):
            """ReCon's patch-token block (``EncoderConfig.block_style="recon"``): each sub-layer's
            residual starts from its *normed* input, ``n = norm1(x); x = n + attn(n)``, then
            ``m = norm2(x); x = m + mlp(m)``. Same parameters and state-dict keys as timm's Block.

            Shapes:
                x: [B, T, C] -> [B, T, C]
            """

            def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False) -> torch.Tensor:
                x = self.norm1(x)
                x = x + self.drop_path1(self.ls1(self.attn(x, attn_mask=attn_mask, is_causal=is_causal)))
                x = self.norm2(x)
                return x + self.drop_path2(self.ls2(self.mlp(x)))

        NormedResidualBlock.__module__ = __name__
        NormedResidualBlock.__qualname__ = "NormedResidualBlock"
        _BLOCKS = (Block, NormedResidualBlock)
    return _BLOCKS


_BLOCKS: Optional[Tuple[type, type]] = None


def __getattr__(name: str) -> Any:
    # `from mv2d3d.models.encoder import NormedResidualBlock` (or Block) still works, lazily.
    if name in ("Block", "NormedResidualBlock"):
        return _block_classes()[name == "NormedResidualBlock"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class PointEncoder(PretrainedModel):
    """Masked-point-transformer encoder distilled from multi-view 2D teachers.

    Input handling, in order (all of it explicit and tested):

    1. validation (:func:`~mv2d3d.models.inputs.as_point_batch`): [N, 3] or [B, N, 3],
       float16/bfloat16/float32/float64, finite, at least ``group_size`` points;
    2. normalisation (``config.normalize``): centre on the centroid, scale into the unit
       sphere (:func:`~mv2d3d.models.inputs.normalize_points`);
    3. clouds with more than ``config.num_points`` points are resampled to that many by
       farthest point sampling (order-independent start);
    4. ``num_groups`` FPS centres, ``group_size`` nearest points each, mini-PointNet tokens,
       centre MLP position embedding added before every block, final LayerNorm.

    Geometry runs in float32; the network runs in the dtype of the parameters (e.g. after
    ``mv2d3d.load(..., dtype=torch.bfloat16)``).

    Example:
        >>> enc = mv2d3d.load("mv-m3ae-tiny")
        >>> out = enc(torch.rand(2, 2048, 3))
        >>> out.global_features.shape   # [2, 384]
    """

    architecture = "PointEncoder"
    config_class = EncoderConfig

    def __init__(self, config: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.config = config
        C = config.embed_dim
        self.patch_embed = PatchEmbed(C)
        self.pos_embed = CenterEmbed(C)
        if config.use_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
            self.cls_pos = nn.Parameter(torch.randn(1, 1, C) * 0.02)
        dpr = torch.linspace(0, config.drop_path_rate, config.depth).tolist()
        Block, NormedResidualBlock = _block_classes()
        block_cls = NormedResidualBlock if config.block_style == "recon" else Block
        self.blocks = nn.ModuleList(
            block_cls(C, config.num_heads, mlp_ratio=config.mlp_ratio, qkv_bias=False, drop_path=dpr[i], norm_layer=nn.LayerNorm)
            for i in range(config.depth)
        )
        self.norm = nn.LayerNorm(C)
        self.apply(_init_weights)

    # -- pieces, reused by the masked student in pretraining ---------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    def prepare_points(self, points: Any) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """Validate and normalise input clouds.

        Shapes:
            points: [N, 3] or [B, N, 3] -> (normalised [B, N, 3] float32 on the model's
            device, centroid [B, 1, 3], radius [B, 1, 1], was_unbatched)
        """
        pts, unbatched = as_point_batch(points, min_points=self.config.group_size)
        pts = pts.to(self.device)
        if self.config.normalize:
            pts, centroid, radius = normalize_points(pts)
        else:
            centroid = pts.new_zeros(pts.shape[0], 1, 3)
            radius = pts.new_ones(pts.shape[0], 1, 1)
        return pts, centroid, radius, unbatched

    def resample(self, points: torch.Tensor) -> torch.Tensor:
        """FPS-resample clouds with more than ``config.num_points`` points.

        Shapes:
            points: [B, N, 3] -> [B, min(N, num_points), 3]
        """
        n = points.shape[1]
        # pointnet2_ops mode resamples an exactly-num_points cloud too: the reference pipeline
        # does (misc.fps(points, npoints)), and its kernel swaps near-origin points for repeats.
        if n < self.config.num_points or (n == self.config.num_points and self.config.fps_start != "pointnet2_ops"):
            return points
        idx = farthest_point_sample(points, self.config.num_points, start=self.config.fps_start)
        return gather_points(points, idx)

    def group(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Shapes: points [B, N, 3] -> (neighbourhoods [B, G, K, 3], centres [B, G, 3])."""
        return group_cloud(points, self.config.num_groups, self.config.group_size, self.config.fps_start)

    def embed(self, neighborhoods: torch.Tensor, centers: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Shapes: [B, G, K, 3], [B, G, 3] -> (tokens [B, G, C], position embeddings [B, G, C])."""
        return self.patch_embed(neighborhoods), self.pos_embed(centers.to(self.dtype))

    def encode_tokens(
        self, tokens: torch.Tensor, pos: torch.Tensor, *, collect: Sequence[int] = ()
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run the transformer; the position embedding is added before every block.

        Args:
            collect: block indices whose (layer-normed) outputs are returned as well.

        Shapes:
            tokens, pos: [B, T, C] -> (final normed tokens [B, T', C], list of [B, T', C]),
            T' = T + 1 with a class token (it comes first).
        """
        if self.config.use_cls_token:
            B = tokens.shape[0]
            tokens = torch.cat([self.cls_token.expand(B, -1, -1).to(tokens.dtype), tokens], 1)
            pos = torch.cat([self.cls_pos.expand(B, -1, -1).to(pos.dtype), pos], 1)
        x = tokens
        kept: List[torch.Tensor] = []
        want = set(collect)
        for i, blk in enumerate(self.blocks):
            x = blk(x + pos)
            if i in want:
                kept.append(self.norm(x))
        return self.norm(x), kept

    @staticmethod
    def pool(tokens: torch.Tensor) -> torch.Tensor:
        """Global feature: max- and mean-pooled tokens. Shapes: [B, G, C] -> [B, 2C]."""
        return torch.cat([tokens.amax(dim=1), tokens.mean(dim=1)], dim=-1)

    # -- public -------------------------------------------------------------------------------
    def _run(self, points: Any, collect: Sequence[int] = ()):
        pts, centroid, radius, unbatched = self.prepare_points(points)
        sampled = self.resample(pts)
        neigh, centers = self.group(sampled)
        tokens, pos = self.embed(neigh, centers)
        x, kept = self.encode_tokens(tokens, pos, collect=collect)
        if self.config.use_cls_token:
            x = x[:, 1:]
            kept = [k[:, 1:] for k in kept]
        return pts, centers, centroid, radius, unbatched, x, kept

    def forward(self, points: Any) -> EncoderOutput:
        """Encode point clouds.

        Args:
            points: [N, 3] or [B, N, 3] tensor or numpy array.

        Shapes:
            points: [B, N, 3] -> EncoderOutput(global_features [B, D], patch_features [B, G, C],
            centers [B, G, 3]); an unbatched [N, 3] input gives the same without B.

        Raises:
            InvalidPointCloudError: see :func:`~mv2d3d.models.inputs.as_point_batch`.
        """
        _, centers, centroid, radius, unbatched, x, _ = self._run(points)
        out = EncoderOutput(self.pool(x), x, centers * radius + centroid)
        if unbatched:
            out = EncoderOutput(out.global_features[0], out.patch_features[0], out.centers[0])
        return out

    def point_features(self, points: Any) -> torch.Tensor:
        """Per-point features for segmentation: the layer-normed outputs of the blocks in
        ``config.point_feature_layers`` concatenated, interpolated from the patch centres
        back to *every* input point (3 nearest centres, inverse distance weights).

        Shapes:
            points: [B, N, 3] -> [B, N, C'] with C' = C * len(point_feature_layers)
            ([N, 3] -> [N, C'])
        """
        pts, centers, _, _, unbatched, _, kept = self._run(points, collect=self.config.point_feature_layers)
        feats = torch.cat(kept, dim=-1)
        out = interpolate_features(pts, centers, feats, k=3)
        return out[0] if unbatched else out


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
