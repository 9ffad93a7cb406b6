"""``mv2d3d.convert``: import a published Point-MAE-family ``.pth`` checkpoint into an mv2d3d
model folder (``config.json`` + ``model.safetensors`` + model card).

>>> import mv2d3d
>>> mv2d3d.convert("pretrain.pth", "point-mae-pretrain")          # Point-MAE's pretrain.pth
>>> enc = mv2d3d.load("point-mae-pretrain")

The file is read with ``torch.load(..., weights_only=True)``: tensors and plain containers
only, nothing in the pickle is executed. The key maps live in
:mod:`mv2d3d.models.point_mae`. Everything is validated (layout, every tensor used or
dropped for a stated reason, shapes, a forward pass) before anything is written, and the
folder itself is written atomically by ``save_pretrained``.
"""

from __future__ import annotations

import hashlib
import logging
import numbers
import os
import sys
import types
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from .errors import CheckpointConversionError
from .models.point_mae import SOURCE_TITLES, SOURCE_URLS, SOURCES, ConvertedCheckpoint, build_model, checkpoint_filter_fn

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

# Wrappers the reference trainers put around the state dict, in the order they check them.
_STATE_DICT_KEYS = ("base_model", "model", "state_dict")


def _numpy_scalar_globals() -> list:
    # Training scripts often store metrics as numpy scalars. Rebuilding one only needs the
    # scalar constructor (dtype + raw bytes) and dtype classes: data, no code, so these few
    # names are allowed on top of torch's weights_only list. Nothing else is.
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with torch
        return []
    core = getattr(np, "_core", None) or np.core
    names = [core.multiarray.scalar, np.dtype]
    for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"):
        names.append(type(np.dtype(t)))
    return names


def read_checkpoint(path: PathLike) -> Any:
    """Load a ``.pth`` file safely (``weights_only=True``, on the CPU).

    Raises:
        CheckpointConversionError: missing file, not a torch checkpoint, or a pickle that
            holds anything besides tensors and plain containers (refused, never executed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointConversionError(f"{str(path)!r} is not a file. Give the path of the .pth checkpoint.")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        msg = str(e)
        # weights_only refuses classes/functions by name ("GLOBAL module.name"); other
        # failures (bad opcodes, truncated zip, text) mean the file is no checkpoint at all.
        if "Weights only load failed" in msg and "GLOBAL" in msg.upper():
            detail = next((line.strip() for line in msg.splitlines() if "GLOBAL" in line.upper()), "")
            raise CheckpointConversionError(
                f"Refused {str(path)!r}: it contains pickled objects other than tensors and plain containers "
                f"({detail or type(e).__name__}), and loading those could run arbitrary code, so mv2d3d never does. "
                "If you trust the file, re-save only its weights with the code that wrote it, e.g. "
                "torch.save({'base_model': ckpt['base_model']}, 'clean.pth'), and convert that."
            ) from e
        raise CheckpointConversionError(
            f"{str(path)!r} is not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(msg)}). "
            "Check that the download is complete and that this is the .pth file."
        ) from e


def _first_line(msg: str) -> str:
    # torch's weights_only message starts with generic advice; keep its specific last detail
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    specific = [ln for ln in lines if "WeightsUnpickler" not in ln and "weights_only" not in ln and "torch.load" not in ln]
    return (specific[-1] if specific else (lines[0] if lines else ""))[:200]


def unwrap_checkpoint(obj: Any, *, what: str = "checkpoint") -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Find the state dict in a loaded checkpoint and remove DataParallel ``module.`` prefixes.

    Accepts the trainers' ``{"base_model": state_dict, "optimizer": ..., "epoch": ...,
    "metrics": ...}`` (also ``"model"`` / ``"state_dict"``) or a bare state dict.

    Returns:
        (state_dict, meta): meta holds ``epoch`` and ``metrics`` when present, for the card.

    Raises:
        CheckpointConversionError: no state dict, non-tensor entries, clashing keys.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointConversionError(
            f"{what} holds a {type(obj).__name__}, not a dict of weights; expected a Point-MAE-family training checkpoint."
        )
    sd: Any = None
    for key in _STATE_DICT_KEYS:
        if isinstance(obj.get(key), Mapping):
            sd = obj[key]
            break
    if sd is None:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            sd = obj
        else:
            raise CheckpointConversionError(
                f"{what} has no 'base_model' (or 'model' / 'state_dict') entry and is not a state dict itself; "
                f"its top-level keys are {sorted(map(str, obj))[:10]}."
            )
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointConversionError(
                f"{what}: entry {k!r} of the state dict is a {type(v).__name__}, not a tensor; the file is not a weight checkpoint."
            )
        name = k
        while name.startswith("module."):  # (Distributed)DataParallel, possibly nested
            name = name[len("module.") :]
        if name in out:
            raise CheckpointConversionError(f"{what}: key {name!r} appears both with and without a 'module.' prefix.")
        out[name] = v
    meta: Dict[str, Any] = {}
    if obj is not sd:
        epoch = _scalar(obj.get("epoch"))
        if epoch is not None:
            meta["epoch"] = int(epoch)
        for mkey in ("metrics", "best_metrics"):
            m = obj.get(mkey)
            if isinstance(m, Mapping):
                vals = {str(a): _scalar(b) for a, b in m.items() if _scalar(b) is not None}
                if vals:
                    meta[mkey] = vals
    return out, meta


def _scalar(v: Any) -> Optional[float]:
    if isinstance(v, numbers.Real) and not isinstance(v, bool):  # numpy scalars included
        return float(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v)
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _smoke_test(model: torch.nn.Module, conv: ConvertedCheckpoint) -> None:
    # A forward pass on a fixed cloud: weights that load but produce NaN/Inf are refused.
    cfg = conv.encoder_config
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(1, cfg.num_points, 3, generator=g) * 2 - 1
    with torch.inference_mode():
        out = model(pts)
    t = out if isinstance(out, torch.Tensor) else out.patch_features
    if not bool(torch.isfinite(t).all()):
        raise CheckpointConversionError(
            f"{conv.title}: the converted model produces NaN/Inf on a test cloud; the weights are corrupt."
        )


def card_notes(conv: ConvertedCheckpoint, file_name: str, sha256: str, meta: Mapping[str, Any]) -> str:
    """Markdown for the model card: provenance, what was kept/dropped, compatibility settings."""
    title = SOURCE_TITLES[conv.source]
    lines = [
        f"### Converted from {title}",
        "",
        f"Imported with `mv2d3d convert --from {conv.source}` from the {conv.title} checkpoint "
        f"`{file_name}` (sha256 `{sha256}`), trained with the reference code at {SOURCE_URLS[conv.source]}.",
    ]
    if "epoch" in meta:
        lines.append(f"Checkpoint epoch: {meta['epoch']}.")
    for mkey in ("metrics", "best_metrics"):
        if mkey in meta:
            vals = ", ".join(f"{k} = {v:.4g}" for k, v in meta[mkey].items())
            lines.append(f"Reference {mkey.replace('_', ' ')} stored in the checkpoint (not re-measured): {vals}.")
    lines += ["", "#### Settings", ""]
    lines += [f"- `{k}`: {v}" for k, v in conv.settings.items()]
    lines += ["", "#### Compatibility with the reference code", ""]
    lines += [f"- {n}" for n in conv.notes]
    if conv.dropped:
        lines += ["", "#### Not imported", ""]
        lines += [f"- {reason}: {len(keys)} tensor(s)" for reason, keys in conv.dropped.items()]
    return "\n".join(lines) + "\n"


def convert(
    source_path: PathLike,
    out_dir: PathLike,
    *,
    source: str = "point-mae",
    num_heads: Optional[int] = None,
    num_groups: Optional[int] = None,
    group_size: Optional[int] = None,
    num_points: Optional[int] = None,
    normalize: bool = False,
    encoder_only: bool = False,
    class_names: Optional[Sequence[str]] = None,
    overwrite: bool = False,
) -> str:
    """Convert a Point-MAE / ACT / ReCon checkpoint into an mv2d3d model folder.

    Args:
        source_path: the ``.pth`` file (e.g. Point-MAE's ``pretrain.pth``).
        out_dir: folder to write (``config.json``, ``model.safetensors``, ``README.md``).
        source: ``"point-mae"``, ``"act"`` or ``"recon"``.
        num_heads: attention heads; not stored in checkpoints (default: width / 64 = 6 for 384).
        num_groups, group_size, num_points: grouping of the recipe that trained the model
            (defaults: read from the checkpoint where possible, else the reference recipe:
            64 x 32 of 1024 points; 128 x 32 of 2048 for 15-class ScanObjectNN heads).
        normalize: let the encoder centre and unit-scale each cloud (the reference model does
            not; its ModelNet/ShapeNet loaders do beforehand).
        encoder_only: from a fine-tuned classifier, import the encoder only.
        class_names: class names for a fine-tuned classifier's head.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        The folder path; load it with ``mv2d3d.load(path)`` (encoders) or
        ``mv2d3d.PointClassifier.from_pretrained(path)`` (classifiers).

    Raises:
        CheckpointConversionError: unreadable/unsafe file, unknown layout, missing, unknown or
            mis-shaped tensors, an existing output folder; nothing is written then.
    """
    src = Path(source_path)
    out = Path(out_dir)
    if source not in SOURCES:
        raise CheckpointConversionError(f"Unknown source {source!r}; supported: {', '.join(SOURCES)}.")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointConversionError(
            f"{str(out)!r} already exists and is not empty; choose another folder or pass overwrite=True (CLI: --overwrite)."
        )
    obj = read_checkpoint(src)
    state_dict, meta = unwrap_checkpoint(obj, what=src.name)
    del obj  # optimizer state and the like: free it before building the model
    conv = checkpoint_filter_fn(
        state_dict,
        source=source,
        num_heads=num_heads,
        num_groups=num_groups,
        group_size=group_size,
        num_points=num_points,
        normalize=normalize,
        encoder_only=encoder_only,
        class_names=tuple(class_names) if class_names else None,
    )
    model = build_model(conv)
    _smoke_test(model, conv)
    notes = card_notes(conv, src.name, _sha256(src), meta)
    command = f"mv2d3d convert --from {conv.source} {src.name} --out {out.name}" + "".join(
        f" --{flag} {val}"
        for flag, val in (("num-heads", num_heads), ("num-groups", num_groups), ("group-size", group_size), ("num-points", num_points))
        if val is not None
    ) + (" --normalize" if normalize else "") + (" --encoder-only" if encoder_only else "")
    path = model.save_pretrained(
        out,
        notes=notes,
        command=command,
        # the three reference repositories publish code and weights under the MIT license
        license="mit",
        tags=[conv.source, "converted", "point-mae-family"],
    )
    kept = len(conv.state_dict)
    dropped = sum(len(v) for v in conv.dropped.values())
    logger.info("%s -> %s: %d tensor(s) imported, %d dropped (%s)", src.name, path, kept, dropped, "; ".join(conv.dropped) or "none")
    return str(path)


class _CallableModule(types.ModuleType):
    # Importing the submodule ``mv2d3d.convert`` rebinds the attribute ``mv2d3d.convert``
    # from the function to this module; making the module callable keeps
    # ``mv2d3d.convert(path, out)`` working either way.
    def __call__(self, *args: Any, **kwargs: Any) -> str:
        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["convert", "read_checkpoint", "unwrap_checkpoint", "card_notes"]
