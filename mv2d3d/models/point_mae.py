"""The Point-MAE family: key maps from published checkpoints onto mv2d3d models.

Point-MAE, ACT and ReCon all build on the same point transformer (Conv1d mini-PointNet,
centre-MLP position embedding added before every block, pre-norm blocks with a bias-free
qkv, final LayerNorm), which is the layout of :class:`~mv2d3d.models.PointEncoder`. Their
training code saves ``torch.save({"base_model": model.state_dict(), "optimizer": ...,
"epoch": ..., "metrics": ...})``, with a ``module.`` prefix on every key when the model was
wrapped in (Distributed)DataParallel.

The file reads top-down like a timm family file: the layouts, one
:func:`checkpoint_filter_fn` that spots the source layout by its telltale keys, one
``_convert_*`` per source layout, and :func:`build_model`, which instantiates and strictly
loads the result. Reading files and writing folders lives in :mod:`mv2d3d.convert`.

Source layouts (keys after removing ``module.``):

=====================  =====================================  ===============================
source / layout        telltale key                           kept
=====================  =====================================  ===============================
Point-MAE pretrain     ``MAE_encoder.encoder.first_conv.*``   ``MAE_encoder.*`` -> encoder
Point-MAE fine-tune    ``encoder.*`` + ``cls_head_finetune.*``  encoder, cls token, head
ACT pretrain           ``ACT_encoder.encoder.first_conv.*``   ``ACT_encoder.*`` (+ cls token)
ACT fine-tune          same as Point-MAE fine-tune            encoder, cls token, head
ReCon pretrain         ``MAE_encoder.img_token``              patch branch of ``MAE_encoder``
=====================  =====================================  ===============================

Compatibility settings written into every converted config (so that the converted model
reproduces the reference forward pass, not an approximation of it):

* ``fps_start="pointnet2_ops"``: the reference FPS (``pointnet2_ops`` CUDA kernel) starts at
  point 0 and never picks points within ~0.032 of the origin; a cloud of exactly
  ``num_points`` points is FPS-resampled too (the reference ``misc.fps(points, npoints)``).
* ``normalize=False``: the reference model does not normalise clouds (its ModelNet/ShapeNet
  datasets do, ScanObjectNN's do not); feed the coordinates you would feed the reference.
* ``block_style="recon"`` for ReCon (its patch tokens add each residual to the normed input).

Shapes:
    C: token width, K: points per patch, L: number of classes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch

from ..config import ClassifierConfig, EncoderConfig
from ..errors import CheckpointConversionError, CheckpointMismatchError

logger = logging.getLogger(__name__)

SOURCES: Tuple[str, ...] = ("point-mae", "act", "recon")
SOURCE_TITLES: Dict[str, str] = {"point-mae": "Point-MAE", "act": "ACT", "recon": "ReCon"}
SOURCE_URLS: Dict[str, str] = {
    "point-mae": "https://github.com/Pang-Yatian/Point-MAE",
    "act": "https://github.com/RunpeiDong/ACT",
    "recon": "https://github.com/qizekun/ReCon",
}

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_BLOCK_KEYS = (
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.proj.weight",
    "attn.proj.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)
_HELP_SETTINGS = (
    "Point-MAE-family checkpoints do not store the grouping; pass num_groups / group_size / "
    "num_points (CLI: --num-groups / --group-size / --num-points) as in the recipe that trained it."
)


@dataclass
class ConvertedCheckpoint:
    """A foreign checkpoint mapped onto an mv2d3d model, not yet instantiated.

    Attributes:
        source: ``"point-mae"``, ``"act"`` or ``"recon"``.
        layout: ``"pretrain"`` or ``"finetune"``.
        architecture: ``"PointEncoder"`` or ``"PointClassifier"``.
        config: the architecture config (compatibility settings included).
        state_dict: tensors under mv2d3d names.
        dropped: reason -> source keys deliberately not carried over.
        settings: setting name -> how its value was chosen (inferred / given / assumed).
        notes: compatibility notes for the model card.
    """

    source: str
    layout: str
    architecture: str
    config: Union[EncoderConfig, ClassifierConfig]
    state_dict: Dict[str, torch.Tensor]
    dropped: Dict[str, List[str]] = field(default_factory=dict)
    settings: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def encoder_config(self) -> EncoderConfig:
        return self.config.encoder if isinstance(self.config, ClassifierConfig) else self.config

    @property
    def title(self) -> str:
        return f"{SOURCE_TITLES[self.source]} {'fine-tuned classifier' if self.layout == 'finetune' else 'pretrained encoder'}"


class _Ledger:
    """Every source key is either taken (mapped), dropped (with a reason) or an error."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor], what: str):
        self.sd = state_dict
        self.what = what
        self.used: set = set()
        self.missing: List[str] = []
        self.dropped: Dict[str, List[str]] = {}

    def take(self, key: str, *, optional: bool = False) -> Optional[torch.Tensor]:
        if key in self.sd:
            self.used.add(key)
            return self.sd[key]
        if not optional:
            self.missing.append(key)
        return None

    def drop(self, reason: str, keys: Iterable[str]) -> None:
        keys = sorted(k for k in keys if k in self.sd and k not in self.used)
        if keys:
            self.dropped.setdefault(reason, []).extend(keys)
            self.used.update(keys)

    def drop_prefixes(self, reason: str, prefixes: Iterable[str]) -> None:
        pre = tuple(prefixes)
        self.drop(reason, [k for k in self.sd if k.startswith(pre)])

    def check_missing(self) -> None:
        if self.missing:
            raise CheckpointConversionError(
                f"{self.what}: {len(self.missing)} required tensor(s) missing: {_preview(self.missing)}. "
                "The file is truncated or comes from a different model; re-export it from the training code."
            )

    def finish(self) -> None:
        """Raise if a needed key was missing or a key was neither used nor dropped."""
        self.check_missing()
        left = sorted(k for k in self.sd if k not in self.used)
        if left:
            raise CheckpointConversionError(
                f"{self.what}: {len(left)} tensor(s) this converter does not know what to do with: "
                f"{_preview(left)}. mv2d3d refuses to drop weights silently; this variant of the "
                "architecture is not supported (please open an issue with the key list)."
            )


def _preview(keys: List[str], n: int = 8) -> str:
    return str(keys[:n]) + (f" ... (+{len(keys) - n} more)" if len(keys) > n else "")


# -- the one filter ---------------------------------------------------------------------------
def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> Tuple[str, str]:
    """Spot a Point-MAE-family layout by its telltale keys (``module.`` already removed).

    Returns:
        (family, layout): family ``"point-mae"``, ``"act"`` or ``"recon"``; layout
        ``"pretrain"`` or ``"finetune"``. Point-MAE and ACT fine-tuned classifiers share one
        layout and are reported as ``"point-mae"``.

    Raises:
        CheckpointConversionError: no known layout.
    """
    if "MAE_encoder.encoder.first_conv.0.weight" in state_dict:
        return ("recon" if "MAE_encoder.img_token" in state_dict else "point-mae"), "pretrain"
    if "ACT_encoder.encoder.first_conv.0.weight" in state_dict:
        return "act", "pretrain"
    if "encoder.first_conv.0.weight" in state_dict:
        if "img_token" in state_dict:
            return "recon", "finetune"
        if "cls_head_finetune.0.weight" in state_dict or "cls_token" in state_dict:
            return "point-mae", "finetune"
    keys = sorted(state_dict)
    raise CheckpointConversionError(
        "No Point-MAE-family layout recognised: expected one of the keys "
        "'MAE_encoder.encoder.first_conv.0.weight' (Point-MAE/ReCon pretraining), "
        "'ACT_encoder.encoder.first_conv.0.weight' (ACT pretraining) or "
        "'encoder.first_conv.0.weight' + 'cls_head_finetune.0.weight' (fine-tuned classifier); "
        f"the checkpoint has {len(keys)} tensor(s), e.g. {keys[:6]}. Is this the right file?"
    )


def checkpoint_filter_fn(
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "point-mae",
    num_heads: Optional[int] = None,
    num_groups: Optional[int] = None,
    group_size: Optional[int] = None,
    num_points: Optional[int] = None,
    normalize: bool = False,
    encoder_only: bool = False,
    class_names: Optional[Tuple[str, ...]] = None,
) -> ConvertedCheckpoint:
    """Map a Point-MAE-family state dict (``module.`` prefixes removed) onto mv2d3d.

    Widths, depth, MLP ratio, class count and head widths are read from tensor shapes; what
    the shapes cannot tell (heads, grouping, points) comes from the arguments or from the
    reference recipes, and :attr:`ConvertedCheckpoint.settings` says which.

    Args:
        source: the family the user says the file comes from (``"point-mae"``, ``"act"``,
            ``"recon"``); a file of another family is refused with the right name.
        num_heads: attention heads (default: width / 64, i.e. 6 for 384 as in all recipes).
        num_groups, group_size, num_points: grouping (defaults: the recipe of the layout).
        normalize: let the converted encoder centre + unit-sphere-scale clouds itself.
        encoder_only: from a fine-tuned checkpoint, keep only the encoder (head dropped).
        class_names: names of the classes of a fine-tuned head.

    Raises:
        CheckpointConversionError: unknown layout, wrong family, missing or unknown tensors,
            malformed shapes, unsupported variants.
    """
    if source not in SOURCES:
        raise CheckpointConversionError(f"Unknown source {source!r}; supported: {', '.join(SOURCES)}.")
    family, layout = detect_layout(state_dict)
    if layout == "finetune" and family == "point-mae" and source == "act":
        family = "act"  # ACT fine-tunes with Point-MAE's classifier layout, key for key
    if family != source:
        raise CheckpointConversionError(
            f"This looks like a {SOURCE_TITLES[family]} {layout} checkpoint, not {SOURCE_TITLES[source]}: "
            f"convert it with source={family!r} (CLI: --from {family})."
        )
    opts = dict(
        num_heads=num_heads, num_groups=num_groups, group_size=group_size, num_points=num_points, normalize=normalize
    )
    if family == "point-mae" and layout == "pretrain":
        conv = _convert_point_mae_pretrain(state_dict, **opts)
    elif layout == "finetune" and family in ("point-mae", "act"):
        conv = _convert_point_mae_finetune(state_dict, source=family, encoder_only=encoder_only, class_names=class_names, **opts)
    elif family == "act":
        conv = _convert_act(state_dict, **opts)
    elif layout == "pretrain":
        conv = _convert_recon(state_dict, **opts)
    else:
        if not encoder_only:
            raise CheckpointConversionError(
                "ReCon fine-tuned classifiers feed their head with three global tokens (cls, image, text; "
                "a 4C-wide input), which mv2d3d's PointClassifier does not have. Import the backbone "
                "with encoder_only=True (CLI: --encoder-only); the head is then dropped."
            )
        conv = _convert_recon(state_dict, finetuned=True, **opts)
    for reason, keys in conv.dropped.items():
        logger.info("%s: dropped %d tensor(s) (%s): %s", conv.title, len(keys), reason, _preview(keys, 4))
    return conv


# -- shared pieces ----------------------------------------------------------------------------
def _conv1x1(ledger: _Ledger, key: str) -> Optional[torch.Tensor]:
    # Conv1d(kernel_size=1) weight [out, in, 1] == Linear weight [out, in]
    w = ledger.take(key)
    if w is None:
        return None
    if w.dim() != 3 or w.shape[-1] != 1:
        raise CheckpointConversionError(
            f"{ledger.what}: {key} has shape {tuple(w.shape)}, expected a Conv1d kernel-1 weight [out, in, 1]. "
            "The file is corrupt or from a different architecture."
        )
    return w[..., 0]


def _map_encoder(ledger: _Ledger, prefix: str, *, with_cls: bool) -> Tuple[Dict[str, torch.Tensor], int]:
    """Map the shared point transformer under ``prefix``; returns (tensors, depth)."""
    sd = ledger.sd
    out: Dict[str, Optional[torch.Tensor]] = {}
    if f"{prefix}reduce_dim.weight" in sd:
        raise CheckpointConversionError(
            f"{ledger.what}: this encoder has a reduce_dim layer (mini-PointNet width != transformer width), "
            "which mv2d3d's PointEncoder does not have. Only encoder_dims == trans_dim checkpoints (all "
            "published Point-MAE/ACT/ReCon models) are supported."
        )
    for seq in ("first_conv", "second_conv"):
        for i in (0, 3):
            out[f"patch_embed.{seq}.{i}.weight"] = _conv1x1(ledger, f"{prefix}encoder.{seq}.{i}.weight")
            out[f"patch_embed.{seq}.{i}.bias"] = ledger.take(f"{prefix}encoder.{seq}.{i}.bias")
        for k in _BN_KEYS:
            t = ledger.take(f"{prefix}encoder.{seq}.1.{k}", optional=k == "num_batches_tracked")
            # checkpoints from before BatchNorm counted batches lack the counter; eval ignores it
            out[f"patch_embed.{seq}.1.{k}"] = torch.zeros((), dtype=torch.long) if t is None else t
    for i in (0, 2):
        for k in ("weight", "bias"):
            out[f"pos_embed.{i}.{k}"] = ledger.take(f"{prefix}pos_embed.{i}.{k}")
    pat = re.compile(re.escape(f"{prefix}blocks.blocks.") + r"(\d+)\.")
    idx = sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})
    if not idx:
        ledger.missing.append(f"{prefix}blocks.blocks.0.*")
    elif idx != list(range(len(idx))):
        raise CheckpointConversionError(
            f"{ledger.what}: transformer blocks {idx} are not numbered 0..{len(idx) - 1}; the file is incomplete."
        )
    for i in idx:
        for k in _BLOCK_KEYS:
            out[f"blocks.{i}.{k}"] = ledger.take(f"{prefix}blocks.blocks.{i}.{k}")
    for k in ("weight", "bias"):
        out[f"norm.{k}"] = ledger.take(f"{prefix}norm.{k}")
    if with_cls:
        out["cls_token"] = ledger.take(f"{prefix}cls_token")
        out["cls_pos"] = ledger.take(f"{prefix}cls_pos")
    ledger.check_missing()
    return {k: v for k, v in out.items() if v is not None}, len(idx)


def _infer_encoder_config(
    tensors: Mapping[str, torch.Tensor],
    depth: int,
    *,
    what: str,
    settings: Dict[str, str],
    num_heads: Optional[int],
    num_groups: Optional[int],
    group_size: Optional[int],
    num_points: Optional[int],
    normalize: bool,
    use_cls_token: bool,
    block_style: str = "pre_norm",
    recipe: Tuple[int, int, int] = (64, 32, 1024),
    recipe_name: str = "the Point-MAE pretraining recipe",
    inferred_group_size: Optional[int] = None,
) -> EncoderConfig:
    width = tensors["norm.weight"]
    if width.dim() != 1:
        raise CheckpointConversionError(f"{what}: norm.weight has shape {tuple(width.shape)}, expected [C].")
    C = int(width.shape[0])
    out_c = int(tensors["patch_embed.second_conv.3.weight"].shape[0])
    if out_c != C:
        raise CheckpointConversionError(
            f"{what}: the mini-PointNet outputs {out_c} channels but the transformer is {C} wide "
            "(encoder_dims != trans_dim needs a reduce_dim layer that mv2d3d does not have)."
        )
    hidden = tensors["blocks.0.mlp.fc1.weight"].shape[0] if depth else 4 * C
    mlp_ratio = float(hidden) / C
    settings["embed_dim"] = f"{C} (from tensor shapes)"
    settings["depth"] = f"{depth} (number of blocks)"
    settings["mlp_ratio"] = f"{mlp_ratio:g} (from tensor shapes)"
    if num_heads is None:
        if C % 64:
            raise CheckpointConversionError(
                f"{what}: the number of attention heads cannot be read from the weights, and width {C} is not "
                "a multiple of the usual head size 64; pass num_heads (CLI: --num-heads) as in the training recipe."
            )
        num_heads = C // 64
        settings["num_heads"] = (
            f"{num_heads} (not stored in checkpoints; assumed head width 64 as in every published recipe, "
            "384 wide with 6 heads; override with --num-heads)"
        )
    else:
        settings["num_heads"] = f"{num_heads} (given)"
    if C % num_heads:
        raise CheckpointConversionError(f"{what}: width {C} is not divisible by num_heads={num_heads}.")
    G, K, N = recipe
    if inferred_group_size is not None:
        if group_size is not None and group_size != inferred_group_size:
            raise CheckpointConversionError(
                f"{what}: group_size={group_size} was given, but the checkpoint's reconstruction head "
                f"predicts {inferred_group_size} points per patch; drop the option or fix it."
            )
        settings["group_size"] = f"{inferred_group_size} (from the reconstruction head's shape)"
        group_size = inferred_group_size
    elif group_size is None:
        group_size = K
        settings["group_size"] = f"{K} ({recipe_name}; not stored in the checkpoint, override with --group-size)"
    else:
        settings["group_size"] = f"{group_size} (given)"
    for name, given, default in (("num_groups", num_groups, G), ("num_points", num_points, N)):
        if given is None:
            settings[name] = f"{default} ({recipe_name}; not stored in the checkpoint, override with --{name.replace('_', '-')})"
        else:
            settings[name] = f"{given} (given)"
    num_groups = G if num_groups is None else num_groups
    num_points = N if num_points is None else num_points
    if num_points < num_groups:
        raise CheckpointConversionError(f"num_points={num_points} is smaller than num_groups={num_groups}.")
    settings["fps_start"] = "pointnet2_ops (reference FPS: starts at point 0, skips points within 0.032 of the origin)"
    settings["normalize"] = (
        "True (given: the encoder centres and unit-scales every cloud itself)"
        if normalize
        else "False (the reference model does not normalise; feed the coordinates you would feed it)"
    )
    if block_style != "pre_norm":
        settings["block_style"] = f"{block_style} (ReCon's patch-token blocks)"
    # point_features taps the blocks at 1/3, 2/3 and the end (3, 7, 11 for depth 12, as Point-MAE's segmentation)
    layers = tuple(sorted({max(0, round(depth * f) - 1) for f in (1 / 3, 2 / 3, 1.0)}))
    try:
        return EncoderConfig(
            embed_dim=C,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_points=num_points,
            num_groups=num_groups,
            group_size=group_size,
            drop_path_rate=0.1,
            normalize=normalize,
            fps_start="pointnet2_ops",
            use_cls_token=use_cls_token,
            block_style=block_style,
            point_feature_layers=layers,
        )
    except ValueError as e:
        raise CheckpointConversionError(f"{what}: the inferred configuration is invalid: {e}. {_HELP_SETTINGS}") from e


def _common_notes(cfg: EncoderConfig) -> List[str]:
    notes = [
        "FPS reproduces the `pointnet2_ops` CUDA kernel of the reference code (`fps_start=\"pointnet2_ops\"`): "
        "it starts at point index 0 (so features depend on point order, as in the reference) and never "
        "picks points within 0.032 of the origin; clouds with num_points or more points are first "
        "FPS-resampled to num_points, as the reference evaluation does with `misc.fps(points, npoints)`.",
    ]
    if cfg.normalize:
        notes.append("The encoder normalises every cloud (centroid at the origin, farthest point at radius 1) first.")
    else:
        notes.append(
            "The encoder does not normalise clouds (`normalize=false`), like the reference model: the reference "
            "ModelNet/ShapeNet loaders centre and unit-scale each cloud beforehand (ScanObjectNN's do not), so do "
            "the same to your inputs, or convert with `--normalize`."
        )
    notes.append(
        "`global_features` are mv2d3d's max- and mean-pooled patch tokens; the reference has no such output."
    )
    return notes


# -- one converter per source layout ----------------------------------------------------------
def _convert_point_mae_pretrain(sd: Mapping[str, torch.Tensor], **opts: Any) -> ConvertedCheckpoint:
    """Point-MAE pretraining (``Point_MAE``): keep ``MAE_encoder``, drop the decoder."""
    ledger = _Ledger(sd, "Point-MAE pretraining checkpoint")
    tensors, depth = _map_encoder(ledger, "MAE_encoder.", with_cls=False)
    inc = sd.get("increase_dim.0.weight")
    k_inferred = int(inc.shape[0]) // 3 if inc is not None and inc.dim() >= 1 and inc.shape[0] % 3 == 0 else None
    ledger.drop(
        "masked-point decoder, used only for pretraining",
        [k for k in sd if k.startswith(("MAE_decoder.", "decoder_pos_embed.", "increase_dim.")) or k == "mask_token"],
    )
    ledger.finish()
    settings: Dict[str, str] = {}
    cfg = _infer_encoder_config(
        tensors, depth, what=ledger.what, settings=settings, use_cls_token=False, inferred_group_size=k_inferred, **opts
    )
    return ConvertedCheckpoint(
        "point-mae", "pretrain", "PointEncoder", cfg, tensors, ledger.dropped, settings, _common_notes(cfg)
    )


def _convert_point_mae_finetune(
    sd: Mapping[str, torch.Tensor],
    *,
    source: str = "point-mae",
    encoder_only: bool = False,
    class_names: Optional[Tuple[str, ...]] = None,
    **opts: Any,
) -> ConvertedCheckpoint:
    """Point-MAE / ACT fine-tuned classifier (``PointTransformer``): encoder, class token and
    ``cls_head_finetune`` (Linear/BN/ReLU/Dropout x n + Linear on [cls, max-pooled tokens])."""
    title = SOURCE_TITLES[source]
    ledger = _Ledger(sd, f"{title} fine-tuned checkpoint")
    tensors, depth = _map_encoder(ledger, "", with_cls=True)
    settings: Dict[str, str] = {}
    head_keys = sorted(k for k in sd if k.startswith("cls_head_finetune."))
    try:
        num_classes, hidden = _parse_head(sd, head_keys, ledger.what)
    except CheckpointConversionError:
        if not encoder_only:
            raise
        num_classes, hidden = 0, ()  # the head is dropped anyway; only the recipe guess needs it
    if encoder_only:
        ledger.drop("classification head (encoder_only)", head_keys)
    else:
        for k in head_keys:
            tensors["head." + k[len("cls_head_finetune.") :]] = ledger.take(k)  # type: ignore[assignment]
    if any(k.startswith(("side.", "side_alpha", "side_projection.")) for k in sd):
        raise CheckpointConversionError(
            f"{ledger.what}: side-tuning branches (side.*) are not supported; convert a fully fine-tuned checkpoint."
        )
    ledger.finish()
    # ScanObjectNN (15 classes) recipes group 2048 points into 128 patches; the others 1024 into 64.
    scan = num_classes == 15
    recipe = (128, 32, 2048) if scan else (64, 32, 1024)
    recipe_name = f"the {title} ScanObjectNN recipe (15 classes)" if scan else f"the {title} ModelNet40 recipe"
    cfg = _infer_encoder_config(
        tensors, depth, what=ledger.what, settings=settings, use_cls_token=True, recipe=recipe, recipe_name=recipe_name, **opts
    )
    notes = _common_notes(cfg)
    if encoder_only:
        notes.append("Imported as an encoder only: the fine-tuned classification head was dropped.")
        return ConvertedCheckpoint(source, "finetune", "PointEncoder", cfg, tensors, ledger.dropped, settings, notes)
    settings["num_classes"] = f"{num_classes} (from the head's shape)"
    settings["hidden_dims"] = f"{list(hidden)} (from the head's shapes)"
    try:
        ccfg = ClassifierConfig(
            encoder=cfg,
            num_classes=num_classes,
            class_names=tuple(class_names) if class_names else None,
            hidden_dims=hidden,
            dropout=0.5,
            pooling="cls_max",
        )
    except ValueError as e:
        raise CheckpointConversionError(f"{ledger.what}: invalid classifier settings: {e}") from e
    notes.append(
        "Logits reproduce the reference `cls_head_finetune` on [class token, max-pooled patch tokens] (`pooling=\"cls_max\"`)."
    )
    return ConvertedCheckpoint(source, "finetune", "PointClassifier", ccfg, tensors, ledger.dropped, settings, notes)


def _parse_head(sd: Mapping[str, torch.Tensor], head_keys: List[str], what: str) -> Tuple[int, Tuple[int, ...]]:
    """Read (num_classes, hidden widths) from ``cls_head_finetune.*`` and check that its
    module indices are those of mv2d3d's head (Linear at 4i, BatchNorm at 4i+1)."""
    mods = sorted({int(k.split(".")[1]) for k in head_keys if k.split(".")[1].isdigit()})
    if not mods:
        raise CheckpointConversionError(f"{what}: no classification head (cls_head_finetune.*) found.")
    last = mods[-1]
    n_hidden = last // 4
    expected = sorted([4 * i for i in range(n_hidden + 1)] + [4 * i + 1 for i in range(n_hidden)])
    if last % 4 or mods != expected:
        raise CheckpointConversionError(
            f"{what}: head modules {mods} do not follow the Point-MAE pattern (Linear, BatchNorm, ReLU, Dropout) x n "
            "+ Linear; this head variant is not supported."
        )
    hidden = []
    for i in range(n_hidden + 1):
        w = sd.get(f"cls_head_finetune.{4 * i}.weight")
        if w is None or w.dim() != 2:
            raise CheckpointConversionError(
                f"{what}: cls_head_finetune.{4 * i}.weight is missing or not a Linear weight [out, in]."
            )
        hidden.append(int(w.shape[0]))
    return hidden[-1], tuple(hidden[:-1])


def _convert_act(sd: Mapping[str, torch.Tensor], **opts: Any) -> ConvertedCheckpoint:
    """ACT pretraining (``ACT_PointDistillation``): keep the student ``ACT_encoder`` with its
    class token; drop the dVAE teacher, decoder, projection and pretraining heads."""
    ledger = _Ledger(sd, "ACT pretraining checkpoint")
    tensors, depth = _map_encoder(ledger, "ACT_encoder.", with_cls=True)
    ledger.drop_prefixes("frozen cross-modal teacher (dVAE + ViT)", ("dvae_tokenizer.",))
    ledger.drop(
        "feature-distillation decoder and projection, used only for pretraining",
        [
            k
            for k in sd
            if k.startswith(("ACT_decoder.", "decoder_pos_embed.", "proj_head.")) or k in ("mask_token", "cls_pos")
        ],
    )
    ledger.drop_prefixes("student pretraining heads", ("ACT_encoder.lm_head.", "ACT_encoder.cls_head."))
    ledger.finish()
    settings: Dict[str, str] = {}
    cfg = _infer_encoder_config(
        tensors, depth, what=ledger.what, settings=settings, use_cls_token=True,
        recipe_name="the ACT pretraining recipe", **opts,
    )
    notes = _common_notes(cfg)
    notes.append(
        "ACT's student prepends a class token; it is kept (`use_cls_token=true`), so patch tokens match the "
        "reference `ACT_encoder(..., noaug=True)` output."
    )
    return ConvertedCheckpoint("act", "pretrain", "PointEncoder", cfg, tensors, ledger.dropped, settings, notes)


def _convert_recon(sd: Mapping[str, torch.Tensor], *, finetuned: bool = False, **opts: Any) -> ConvertedCheckpoint:
    """ReCon (``ReCon`` pretraining, or the backbone of a fine-tuned ``PointTransformer``):
    keep the patch-token branch. ReCon's three global tokens (cls, image, text) only read the
    patch tokens through their own cross-attention (``*_contrast``), never the other way, so
    the patch tokens are exactly reproduced without them."""
    prefix = "" if finetuned else "MAE_encoder."
    ledger = _Ledger(sd, f"ReCon {'fine-tuned' if finetuned else 'pretraining'} checkpoint")
    contrast = re.compile(re.escape(prefix + "blocks.blocks.") + r"\d+\.(norm1_contrast|norm2_contrast|mlp_contrast|attn_contrast)\.")
    ledger.drop(
        "global-token branch (cls/image/text tokens and their cross-attention), not part of the patch features",
        [k for k in sd if contrast.match(k)]
        + [prefix + t for t in ("cls_token", "cls_pos", "img_token", "text_token", "img_pos", "text_pos")],
    )
    tensors, depth = _map_encoder(ledger, prefix, with_cls=False)
    k_inferred = None
    if finetuned:
        ledger.drop_prefixes("classification head (encoder_only)", ("cls_head_finetune.",))
    else:
        inc = sd.get("increase_dim.0.weight")
        k_inferred = int(inc.shape[0]) // 3 if inc is not None and inc.dim() >= 1 and inc.shape[0] % 3 == 0 else None
        ledger.drop(
            "masked-point decoder, used only for pretraining",
            [k for k in sd if k.startswith(("MAE_decoder.", "decoder_pos_embed.", "increase_dim.")) or k == "mask_token"],
        )
        ledger.drop_prefixes(
            "frozen image/text teachers and contrastive projections, used only for pretraining",
            ("img_encoder.", "text_encoder.", "img_proj.", "text_proj.", "cls_proj."),
        )
    ledger.finish()
    settings: Dict[str, str] = {}
    cfg = _infer_encoder_config(
        tensors, depth, what=ledger.what, settings=settings, use_cls_token=False, block_style="recon",
        recipe_name="the ReCon pretraining recipe", inferred_group_size=k_inferred, **opts,
    )
    notes = _common_notes(cfg)
    notes.append(
        "ReCon's patch-token blocks add each residual to the *normed* input (`block_style=\"recon\"`); its "
        "cls/image/text tokens were dropped (they never influence the patch tokens)."
    )
    if finetuned:
        notes.append("Imported as an encoder only: the fine-tuned classification head was dropped.")
    return ConvertedCheckpoint("recon", "finetune" if finetuned else "pretrain", "PointEncoder", cfg, tensors, ledger.dropped, settings, notes)


# -- instantiate ------------------------------------------------------------------------------
def build_model(conv: ConvertedCheckpoint):
    """Instantiate the converted model and load its tensors strictly (eval mode, CPU).

    Raises:
        CheckpointConversionError: a tensor has the wrong shape or dtype for the inferred
            architecture (the message lists them).
    """
    from .classifier import PointClassifier
    from .encoder import PointEncoder

    bad = sorted(k for k, v in conv.state_dict.items() if not v.is_floating_point() and not k.endswith("num_batches_tracked"))
    if bad:
        raise CheckpointConversionError(f"{conv.title}: non-float weight tensor(s) {_preview(bad)}; the file is corrupt.")
    if isinstance(conv.config, ClassifierConfig):
        model = PointClassifier(conv.config)
        sd = {"encoder." + k if not k.startswith("head.") else k: v for k, v in conv.state_dict.items()}
    else:
        model = PointEncoder(conv.config)
        sd = dict(conv.state_dict)
    own = model.state_dict()
    # float32 copies: half-precision training checkpoints import as float32 weights
    sd = {k: (v.detach().to(own[k].dtype) if k in own else v).contiguous() for k, v in sd.items()}
    try:
        model.load_state_dict_strict(sd, source=conv.title)
    except CheckpointMismatchError as e:
        raise CheckpointConversionError(
            f"{conv.title}: tensor shapes do not fit the architecture inferred from the checkpoint "
            f"({model.config_summary()}): {e}"
        ) from e
    return model.eval()
