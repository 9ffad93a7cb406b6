"""Point clouds for pretraining, and the deterministic, shardable batch plan.

Sources (``DataConfig.source``): seeded procedural shapes (no download), the ShapeNet-55
point format (Point-MAE layout: a folder of ``.npy`` clouds plus ``train.txt``/``test.txt``
split lists) and a plain ``.npz`` file with a ``points`` array.

The whole set is held in memory as one [S, N, 3] float32 array: it is fixed for the run so
teacher features can be cached per cloud; the student gets a fresh random subset of
``sample_points`` points of every cloud each time it is drawn.

Batches: epoch ``e`` visits the clouds in a permutation seeded by ``(seed, e)``; global step
``t`` takes the ``t``-th slice of ``global_batch`` clouds (the last incomplete slice is
dropped) and process ``r`` of ``W`` takes rows ``[r * b, (r + 1) * b)`` of it, ``b =
global_batch / W``. All per-sample randomness (point subsets, masks) is drawn for the global
batch from a generator seeded by ``(seed, t)`` and then sliced, so 2 processes x batch b see
exactly what 1 process x batch 2b sees, and a resumed run continues exactly from ``t``.

Shapes:
    S: clouds, N: stored points per cloud, n: points given to the student, G: patches.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

from ..errors import ConfigError, DatasetError
from .config import DataConfig

logger = logging.getLogger(__name__)


def _subsample(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if points.shape[0] == n:
        return points
    if points.shape[0] < n:
        idx = rng.choice(points.shape[0], n, replace=True)
    else:
        idx = rng.choice(points.shape[0], n, replace=False)
    return points[idx]


def _read_shapenet55(cfg: DataConfig) -> np.ndarray:
    root = Path(cfg.path)
    candidates = [root / f"{cfg.split}.txt", root / "ShapeNet-55" / f"{cfg.split}.txt"]
    split = next((c for c in candidates if c.is_file()), None)
    if split is None:
        raise DatasetError(
            f"No split list {cfg.split}.txt in {root} or {root / 'ShapeNet-55'}. The ShapeNet-55 layout is a "
            "folder of .npy clouds (optionally in shapenet_pc/) plus train.txt / test.txt listing them."
        )
    names = [ln.strip() for ln in split.read_text().splitlines() if ln.strip()]
    if cfg.limit:
        names = names[: cfg.limit]
    pc_dirs = [root / "shapenet_pc", root, split.parent]
    rng = np.random.default_rng(cfg.seed)
    out = []
    from tqdm.auto import tqdm

    for name in tqdm(names, desc="ShapeNet-55", unit="cloud", disable=len(names) < 1000):
        f = next((d / name for d in pc_dirs if (d / name).is_file()), None)
        if f is None:
            raise DatasetError(f"{split} lists {name!r} but it is not in {[str(d) for d in pc_dirs]}.")
        arr = np.load(f, allow_pickle=False).astype(np.float32)
        if arr.ndim != 2 or arr.shape[1] < 3:
            raise DatasetError(f"{f} holds shape {arr.shape}; expected [N, 3].")
        out.append(_subsample(arr[:, :3], cfg.stored_points, rng))
    return np.stack(out)


def load_pretrain_points(cfg: DataConfig) -> np.ndarray:
    """The fixed pretraining set.

    Shapes:
        -> [S, stored_points, 3] float32

    Raises:
        ConfigError: unknown procedural family; DatasetError: missing or malformed files.
    """
    if cfg.source == "procedural":
        from ..data.procedural import FAMILIES, make_dataset

        fams = list(cfg.families) if cfg.families else list(FAMILIES)
        unknown = [f for f in fams if f not in FAMILIES]
        if unknown:
            raise ConfigError(f"data.families: unknown {unknown}; known families: {list(FAMILIES)}.")
        pts, _, _ = make_dataset(cfg.num_per_family, cfg.stored_points, families=fams, seed=cfg.seed)
    elif cfg.source == "shapenet55":
        pts = _read_shapenet55(cfg)
    else:
        path = Path(cfg.path)
        if not path.is_file():
            raise DatasetError(f"data.path {str(path)!r} does not exist; give a .npz file with a 'points' array [S, N, 3].")
        with np.load(path, allow_pickle=False) as z:
            if "points" not in z:
                raise DatasetError(f"{path} has no 'points' array (keys: {list(z.keys())}).")
            raw = z["points"]
        if raw.ndim != 3 or raw.shape[2] < 3:
            raise DatasetError(f"{path}: 'points' has shape {raw.shape}; expected [S, N, 3].")
        if cfg.limit:
            raw = raw[: cfg.limit]
        rng = np.random.default_rng(cfg.seed)
        if raw.shape[1] != cfg.stored_points:
            pts = np.stack([_subsample(np.asarray(c[:, :3], np.float32), cfg.stored_points, rng) for c in raw])
        else:
            pts = np.ascontiguousarray(raw[:, :, :3], dtype=np.float32)
    if cfg.limit:
        pts = pts[: cfg.limit]
    if not np.isfinite(pts).all():
        raise DatasetError("The pretraining clouds contain NaN/Inf; clean the data first.")
    return np.ascontiguousarray(pts, dtype=np.float32)


def fingerprint(points: np.ndarray) -> str:
    """sha256 of the clouds' bytes (keys the teacher-feature cache)."""
    h = hashlib.sha256()
    h.update(str(points.shape).encode())
    h.update(np.ascontiguousarray(points).tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BatchPlan:
    """Which clouds and which random draws make global step ``t`` (see the module docstring)."""

    num_clouds: int
    global_batch: int
    seed: int
    world_size: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        if self.global_batch % self.world_size:
            raise ConfigError(
                f"optim.batch_size {self.global_batch} is the global batch and must be divisible by the "
                f"number of processes ({self.world_size})."
            )
        if self.num_clouds < self.global_batch:
            raise ConfigError(
                f"The data set has {self.num_clouds} clouds, fewer than one batch ({self.global_batch}); "
                "use more data or a smaller optim.batch_size."
            )

    @property
    def steps_per_epoch(self) -> int:
        return self.num_clouds // self.global_batch

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.world_size

    def global_indices(self, step: int) -> np.ndarray:
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_clouds)
        return perm[pos * self.global_batch : (pos + 1) * self.global_batch]

    def local_rows(self) -> slice:
        return slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)

    def draw(self, step: int, stored_points: int, sample_points: int, num_groups: int) -> Tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """This process's share of step ``t``.

        Returns:
            (cloud indices [b], point subset indices [b, n], mask noise [b, G])
        """
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        GB = self.global_batch
        if sample_points >= stored_points:
            sub = torch.arange(stored_points).expand(GB, -1)
        else:
            sub = torch.rand(GB, stored_points, generator=g).argsort(dim=1)[:, :sample_points]
        noise = torch.rand(GB, num_groups, generator=g)
        rows = self.local_rows()
        return self.global_indices(step)[rows], sub[rows], noise[rows]
