"""Models: tokenizer, :class:`PointEncoder`, task heads. Knows nothing of training or the Hub
(its ``save_pretrained``/``from_pretrained`` methods import :mod:`mv2d3d.hub` lazily)."""

from .base import PretrainedModel as PretrainedModel
from .classifier import PointClassifier as PointClassifier
from .encoder import EncoderOutput as EncoderOutput
from .encoder import PointEncoder as PointEncoder
from .inputs import as_point_batch as as_point_batch
from .inputs import normalize_points as normalize_points
from .tokenizer import PatchEmbed as PatchEmbed
from .tokenizer import group_cloud as group_cloud

MODEL_CLASSES = {cls.architecture: cls for cls in (PointEncoder, PointClassifier)}

__all__ = [
    "PretrainedModel",
    "PointEncoder",
    "PointClassifier",
    "EncoderOutput",
    "PatchEmbed",
    "as_point_batch",
    "normalize_points",
    "group_cloud",
    "MODEL_CLASSES",
]
