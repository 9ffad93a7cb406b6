"""Classification model: a :class:`PointEncoder` plus an MLP head (Point-MAE layout).

Shapes:
    B: batch size, N: points, D: pooled feature width, L: number of classes.
"""

from __future__ import annotations

from typing import Any, List, Sequence

import torch
import torch.nn as nn

from ..config import ClassifierConfig
from .base import PretrainedModel
from .encoder import PointEncoder


def _build_head(in_dim: int, hidden_dims: Sequence[int], num_classes: int, dropout: float) -> nn.Sequential:
    # Linear, BN, ReLU, Dropout per hidden layer: with (256, 256) the module indices match
    # Point-MAE's `cls_head_finetune` (0, 1, 4, 5, 8), so its heads import by index.
    layers: List[nn.Module] = []
    d = in_dim
    for h in hidden_dims:
        layers += [nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        d = h
    layers.append(nn.Linear(d, num_classes))
    return nn.Sequential(*layers)


class PointClassifier(PretrainedModel):
    """Point-cloud classifier.

    ``PointClassifier.from_pretrained(name, num_classes=..., class_names=...)`` loads a
    pretrained encoder strictly and adds a new head (logged by tensor name); loading a saved
    classifier restores its head and class names.

    Shapes:
        points: [B, N, 3] (or [N, 3]) -> logits [B, L] (or [L])
    """

    architecture = "PointClassifier"
    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        self.encoder = PointEncoder(config.encoder)
        C = config.encoder.embed_dim
        in_dim = 2 * C  # max_mean: [max, mean]; cls_max: [cls, max]
        self.head = _build_head(in_dim, config.hidden_dims, config.num_classes, config.dropout)

    @property
    def class_names(self) -> List[str]:
        names = self.config.class_names
        return list(names) if names else [str(i) for i in range(self.config.num_classes)]

    def forward_features(self, points: Any) -> torch.Tensor:
        """Pooled features fed to the head. Shapes: [B, N, 3] -> [B, 2C]."""
        enc = self.encoder
        pts, _, _, unbatched = enc.prepare_points(points)
        neigh, centers = enc.group(enc.resample(pts))
        tokens, pos = enc.embed(neigh, centers)
        x, _ = enc.encode_tokens(tokens, pos)
        if self.config.pooling == "cls_max":
            feats = torch.cat([x[:, 0], x[:, 1:].amax(dim=1)], dim=-1)
        else:
            feats = enc.pool(x[:, 1:] if enc.config.use_cls_token else x)
        return feats[0:1] if unbatched else feats

    def forward(self, points: Any) -> torch.Tensor:
        unbatched = getattr(points, "dim", lambda: getattr(points, "ndim", 3))() == 2
        logits = self.head(self.forward_features(points))
        return logits[0] if unbatched else logits

    @torch.no_grad()
    def predict(self, points: Any) -> torch.Tensor:
        """Class probabilities (softmax), in eval mode. Shapes: [B, N, 3] -> [B, L]."""
        was_training = self.training
        self.eval()
        try:
            return self(points).float().softmax(-1)
        finally:
            self.train(was_training)
