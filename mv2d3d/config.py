"""Dataclass configs that round-trip through ``config.json``.

A saved model folder holds one ``config.json``: ``{"architecture": ..., **fields}``. The
``architecture`` key says which config class (and so which model class) to build. Unknown
fields are an error, never silently dropped, so a config written by a newer mv2d3d fails
loudly on an older one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type, TypeVar, Union

from .errors import ConfigError

T = TypeVar("T")


def _coerce(value: Any, annotation: Any) -> Any:
    # JSON has no tuples: turn lists back into tuples where the field is a tuple.
    if isinstance(value, list) and "Tuple" in str(annotation):
        return tuple(_coerce(v, "") for v in value)
    return value


def config_from_dict(cls: Type[T], data: Dict[str, Any], *, source: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown fields with a clear error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}.")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"{source}: unknown field(s) {unknown} for {cls.__name__}. Known fields: "
            f"{sorted(names)}. The file may come from a newer mv2d3d: upgrade with "
            "`pip install -U mv2d3d`, or remove the fields."
        )
    kwargs = {k: _coerce(v, names[k].type) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: invalid {cls.__name__}: {e}") from e


def config_to_dict(cfg: Any) -> Dict[str, Any]:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a :class:`~mv2d3d.models.PointEncoder`.

    Args:
        embed_dim: token width C.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: hidden width of each block's MLP, as a multiple of ``embed_dim``.
        num_points: clouds with more points are first resampled to this many by farthest
            point sampling (the density the encoder was trained at).
        num_groups: number of patches G (farthest-point centres).
        group_size: points per patch k (nearest neighbours of each centre).
        drop_path_rate: stochastic depth, only active in training.
        normalize: centre every cloud on its centroid and scale it into the unit sphere
            before anything else (see :func:`mv2d3d.models.normalize_points`).
        fps_start: ``"farthest_from_centroid"`` (default: the same cloud in any point order
            gives the same centres) or ``"first"`` (start at point 0, as the Point-MAE
            reference code does) or ``"pointnet2_ops"`` (start at point 0 and never pick
            points within ~0.032 of the origin, exactly like the ``pointnet2_ops`` CUDA kernel
            of Point-MAE/ACT/ReCon; set by ``mv2d3d convert`` to reproduce them exactly; with
            it a cloud of exactly ``num_points`` points is FPS-resampled too, as the reference
            pipeline does).
        use_cls_token: prepend a learnable class token (Point-MAE fine-tuned layout).
        block_style: ``"pre_norm"`` (default: ``x + f(norm(x))`` per sub-layer, Point-MAE) or
            ``"recon"`` (ReCon's patch branch: ``n + f(n)`` with ``n = norm(x)``; same
            parameters, used by converted ReCon checkpoints).
        point_feature_layers: blocks (0-based) whose outputs ``point_features`` concatenates.
    """

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    num_points: int = 1024
    num_groups: int = 64
    group_size: int = 32
    drop_path_rate: float = 0.1
    normalize: bool = True
    fps_start: str = "farthest_from_centroid"
    use_cls_token: bool = False
    block_style: str = "pre_norm"
    point_feature_layers: Tuple[int, ...] = (3, 7, 11)

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}.")
        if self.fps_start not in ("farthest_from_centroid", "first", "pointnet2_ops"):
            raise ConfigError(
                f"fps_start must be 'farthest_from_centroid', 'first' or 'pointnet2_ops', got {self.fps_start!r}."
            )
        if self.block_style not in ("pre_norm", "recon"):
            raise ConfigError(f"block_style must be 'pre_norm' or 'recon', got {self.block_style!r}.")
        if self.group_size < 1 or self.num_groups < 1 or self.num_points < self.group_size:
            raise ConfigError("Need num_groups >= 1 and num_points >= group_size >= 1.")
        bad = [i for i in self.point_feature_layers if not 0 <= i < self.depth]
        if bad:
            raise ConfigError(f"point_feature_layers {bad} out of range for depth {self.depth}.")

    @property
    def global_dim(self) -> int:
        """Width D of ``global_features`` (max- and mean-pooled tokens concatenated)."""
        return 2 * self.embed_dim

    @property
    def point_feature_dim(self) -> int:
        """Width C' of ``point_features``."""
        return self.embed_dim * len(self.point_feature_layers)


@dataclass(frozen=True)
class ClassifierConfig:
    """A :class:`~mv2d3d.models.PointClassifier`: an encoder plus a classification head.

    Args:
        encoder: the encoder's architecture.
        num_classes: number of output classes.
        class_names: optional names, one per class (saved with the model).
        hidden_dims: widths of the head's hidden layers (Point-MAE: 256, 256).
        dropout: dropout between hidden layers.
        pooling: ``"max_mean"`` (the encoder's global features) or ``"cls_max"`` (class
            token + max-pooled tokens, the Point-MAE fine-tuning head; needs use_cls_token).
        base_model: the checkpoint this classifier was fine-tuned from, for its model card.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    num_classes: int = 40
    class_names: Optional[Tuple[str, ...]] = None
    hidden_dims: Tuple[int, ...] = (256, 256)
    dropout: float = 0.5
    pooling: str = "max_mean"
    base_model: Optional[str] = None

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            object.__setattr__(self, "encoder", config_from_dict(EncoderConfig, self.encoder, source="encoder"))
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}.")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"class_names has {len(self.class_names)} names but num_classes is {self.num_classes}."
            )
        if self.pooling not in ("max_mean", "cls_max"):
            raise ConfigError(f"pooling must be 'max_mean' or 'cls_max', got {self.pooling!r}.")
        if self.pooling == "cls_max" and not self.encoder.use_cls_token:
            raise ConfigError("pooling='cls_max' needs an encoder with use_cls_token=True.")


ARCHITECTURES: Dict[str, type] = {"PointEncoder": EncoderConfig, "PointClassifier": ClassifierConfig}


def save_config(cfg: Union[EncoderConfig, ClassifierConfig], architecture: str, path: Union[str, Path], extra: Optional[Dict[str, Any]] = None) -> None:
    """Write ``{"architecture": architecture, **fields}`` as JSON to ``path``."""
    data: Dict[str, Any] = {"architecture": architecture}
    data.update(config_to_dict(cfg))
    if extra:
        data.update(extra)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def parse_model_config(data: Dict[str, Any], *, source: str = "config.json") -> Tuple[str, Any]:
    """Return ``(architecture, config)`` from a loaded ``config.json`` dict.

    Raises:
        ConfigError: no or unknown ``architecture``, unknown or invalid fields.
    """
    if not isinstance(data, dict) or "architecture" not in data:
        raise ConfigError(
            f"{source} has no 'architecture' key; expected one of {sorted(ARCHITECTURES)}. "
            "Is this an mv2d3d model folder? Foreign checkpoints are imported with `mv2d3d convert`."
        )
    data = dict(data)
    arch = data.pop("architecture")
    data.pop("mv2d3d_version", None)
    if arch not in ARCHITECTURES:
        raise ConfigError(
            f"{source} names architecture {arch!r}, which this mv2d3d does not know "
            f"(known: {sorted(ARCHITECTURES)}). Upgrade mv2d3d or check the file."
        )
    return arch, config_from_dict(ARCHITECTURES[arch], data, source=source)


def load_config_file(path: Union[str, Path]) -> Tuple[str, Any]:
    """Read and parse a ``config.json`` (see :func:`parse_model_config`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"Cannot read {path}: {e}. The folder may be incomplete; re-download or re-save it.") from e
    return parse_model_config(data, source=str(path))
