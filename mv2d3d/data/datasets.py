"""Datasets of labelled point clouds: in-memory arrays and class-per-folder trees.

:class:`PointCloudDataset` holds sampled clouds in memory and applies a seeded transform;
:class:`FolderDataset` fills it from a folder with one subfolder per class (any mix of
file formats), skipping unreadable files with a warning, optionally caching the sampled
points on disk so later runs do not re-read meshes. The standard benchmarks
(:mod:`mv2d3d.data.standard`) return :class:`PointCloudDataset` too.

An item is ``(points, label)``: a float32 tensor [N, 3] and an int.

Shapes:
    S: samples, N: points per sample.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError, PointFileError
from .io import SUPPORTED_SUFFIXES, load_points
from .transforms import Transform

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
SPLITS = ("train", "val", "test", "all")
_CACHE_VERSION = 1


class PointCloudDataset(Dataset):
    """Labelled clouds held in memory.

    Args:
        points: [S, N, 3] float32 (every cloud has the same N).
        labels: [S] integer class indices in ``[0, len(class_names))``.
        class_names: one name per class.
        transform: a seeded augmentation (:mod:`mv2d3d.data.transforms`), or None.
        seed: base seed of the augmentation; sample i in epoch e uses ``(seed, e, i)``, so
            the result does not depend on the number of workers or processes.
        files: optional source file of each sample (for reports).

    Shapes:
        item: (points [N, 3] float32 tensor, label int)
    """

    def __init__(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        class_names: Sequence[str],
        *,
        transform: Optional[Transform] = None,
        seed: int = 0,
        files: Optional[Sequence[str]] = None,
        name: str = "dataset",
    ):
        points = np.asarray(points, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if points.ndim != 3 or points.shape[-1] != 3:
            raise DatasetError(f"{name}: points must have shape [S, N, 3], got {points.shape}.")
        if len(points) != len(labels):
            raise DatasetError(f"{name}: {len(points)} clouds but {len(labels)} labels.")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise DatasetError(
                f"{name}: labels span [{labels.min()}, {labels.max()}] but there are {len(class_names)} class names."
            )
        self.points = points
        self.labels = labels
        self.class_names = [str(c) for c in class_names]
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.files = [str(f) for f in files] if files is not None else None
        self.name = name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])

    def class_counts(self) -> np.ndarray:
        """Samples per class. Shapes: -> [num_classes] int64."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call once per epoch, before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        pts = self.points[i]
        if self.transform is not None:
            rng = np.random.default_rng((self.seed, self.epoch, int(i)))
            pts = self.transform(pts.copy(), rng)
        return torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32)), int(self.labels[i])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, samples={len(self)}, classes={self.num_classes}, points={self.num_points})"


# -- class-per-folder trees -------------------------------------------------------------------
@dataclass
class FolderLayout:
    """What :func:`scan_folder` found.

    Attributes:
        root: the folder.
        class_names: sorted union of class folder names (label i = class_names[i]).
        files: (file, label) per split present: ``"all"`` for a flat tree; ``"train"``,
            ``"test"`` and maybe ``"val"`` for a tree with those subfolders.
        presplit: True when the tree has ``train/`` and ``test/`` (or ``val/``) subfolders.
    """

    root: Path
    class_names: List[str]
    files: Dict[str, List[Tuple[Path, int]]]
    presplit: bool
    ignored: List[Path] = field(default_factory=list)


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".") or p.name.startswith("__")


def _class_dirs(folder: Path) -> List[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not _is_hidden(d))


def _files_under(d: Path) -> List[Path]:
    # Every regular file counts (not only known suffixes): a stray file in a class folder is
    # reported as skipped rather than silently ignored.
    return sorted(
        f for f in d.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(d).parts)
    )


def scan_folder(root: PathLike, class_names: Optional[Sequence[str]] = None) -> FolderLayout:
    """Find classes and files of a class-per-folder tree.

    Two layouts are understood: ``root/<class>/<files>`` and
    ``root/{train,test[,val]}/<class>/<files>`` (files may sit in nested folders below the
    class folder).

    Args:
        class_names: impose this label order (e.g. a trained classifier's); a class folder
            not in it is an error.

    Raises:
        DatasetError: missing folder, no class folders, fewer than two classes, unknown class.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"Dataset folder {str(root)!r} does not exist. Check the path.")
    if not root.is_dir():
        raise DatasetError(
            f"{str(root)!r} is a file, not a folder. A dataset is a folder with one subfolder per class "
            "(e.g. my_parts/bolt/*.obj, my_parts/nut/*.stl)."
        )
    top = {d.name: d for d in _class_dirs(root)}
    presplit = "train" in top and ("test" in top or "val" in top)
    groups = {s: top[s] for s in ("train", "val", "test") if s in top} if presplit else {"all": root}
    found: Dict[str, List[str]] = {s: [d.name for d in _class_dirs(g)] for s, g in groups.items()}
    names = sorted(set().union(*found.values()))
    ignored = [f for f in root.iterdir() if f.is_file() and not _is_hidden(f)]
    if class_names is not None:
        unknown = sorted(set(names) - set(class_names))
        if unknown:
            raise DatasetError(
                f"{str(root)!r} has class folder(s) {unknown} that are not among the model's classes "
                f"{list(class_names)}. Remove them or evaluate a model trained on these classes."
            )
        names = [str(c) for c in class_names]
    if not names:
        raise DatasetError(
            f"{str(root)!r} has no class subfolders. Put the files of each class in its own folder: "
            f"{root}/<class name>/<files> (or {root}/train/<class>/ and {root}/test/<class>/)."
        )
    if len(names) < 2 and class_names is None:
        raise DatasetError(
            f"{str(root)!r} has only one class ({names[0]!r}); classification needs at least two class folders."
        )
    index = {n: i for i, n in enumerate(names)}
    files: Dict[str, List[Tuple[Path, int]]] = {}
    for split, g in groups.items():
        items: List[Tuple[Path, int]] = []
        for d in _class_dirs(g):
            items += [(f, index[d.name]) for f in _files_under(d)]
        ignored += [f for f in g.iterdir() if f.is_file() and not _is_hidden(f) and g is not root]
        files[split] = items
    return FolderLayout(root, names, files, presplit, ignored)


def stratified_split(
    items: Sequence[Tuple[Path, int]], val_fraction: float, seed: int
) -> Tuple[List[Tuple[Path, int]], List[Tuple[Path, int]]]:
    """Split (file, label) pairs into train and val, class by class, reproducibly.

    Each class with at least two files gives ``round(n * val_fraction)`` of them (at least
    one, at most n - 1) to val, chosen by a generator seeded with ``seed`` and the class
    label; the choice depends only on the sorted file names, not on which files turn out to
    be readable.
    """
    if not 0 <= val_fraction < 1:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    by_class: Dict[int, List[Tuple[Path, int]]] = {}
    for f, y in items:
        by_class.setdefault(y, []).append((f, y))
    train, val = [], []
    for y in sorted(by_class):
        group = sorted(by_class[y], key=lambda t: str(t[0]))
        n = len(group)
        k = 0
        if val_fraction > 0 and n >= 2:
            k = int(min(n - 1, max(1, round(n * val_fraction))))
        rng = np.random.default_rng((int(seed), int(y)))
        chosen = set(rng.permutation(n)[:k].tolist())
        for j, it in enumerate(group):
            (val if j in chosen else train).append(it)
    return train, val


class PointCache:
    """On-disk cache of sampled clouds, one ``.npy`` per (file, sampling settings).

    The key hashes the file's absolute path, modification time (ns) and size with the
    sampling settings, so an edited file is re-read. Entries are written to a temporary
    name and renamed into place: concurrent processes (DDP ranks, workers) and interrupted
    runs never leave a half-written entry.
    """

    def __init__(self, cache_dir: PathLike):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def key(self, path: Path, num_points: int, sampling: str, seed: int) -> str:
        st = path.stat()
        raw = f"v{_CACHE_VERSION}|{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{num_points}|{sampling}|{seed}"
        return hashlib.sha1(raw.encode()).hexdigest()

    def get(self, key: str) -> Optional[np.ndarray]:
        f = self.dir / f"{key}.npy"
        if not f.exists():
            return None
        try:
            arr = np.load(f, allow_pickle=False)
        except (OSError, ValueError):
            logger.warning("ignoring unreadable cache entry %s", f)
            return None
        return arr if arr.ndim == 2 and arr.shape[1] == 3 else None

    def put(self, key: str, points: np.ndarray) -> None:
        final = self.dir / f"{key}.npy"
        tmp = self.dir / f".{key}.{os.getpid()}.incomplete.npy"
        np.save(tmp, np.ascontiguousarray(points, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, final)


def _read_items(
    items: Sequence[Tuple[Path, int]],
    num_points: int,
    sampling: str,
    seed: int,
    cache: Optional[PointCache],
    progress: bool,
    desc: str,
) -> Tuple[List[np.ndarray], List[int], List[str], List[Tuple[str, str]]]:
    from tqdm.auto import tqdm

    pts, labels, files, skipped = [], [], [], []
    hits = 0
    for f, y in tqdm(items, desc=desc, unit="file", disable=not progress):
        try:
            key = cache.key(f, num_points, sampling, seed) if cache else None
            arr = cache.get(key) if cache else None
            if arr is not None and len(arr) == num_points:
                hits += 1
            else:
                arr = load_points(f, num_points, sampling=sampling, seed=seed)
                if cache:
                    cache.put(key, arr)
        except PointFileError as e:
            logger.warning("skipping %s", e)
            skipped.append((str(f), e.reason))
            continue
        pts.append(arr)
        labels.append(y)
        files.append(str(f))
    if cache:
        logger.debug("%s: %d of %d clouds from the cache", desc, hits, len(items))
    return pts, labels, files, skipped


class FolderDataset(PointCloudDataset):
    """A class-per-folder tree of meshes and point clouds, sampled into memory.

    Layouts: ``root/<class>/...`` (train/val split drawn by seed, stratified per class) or
    ``root/train/<class>/...`` + ``root/test/<class>/...`` (+ optional ``root/val/``; without
    it, val is drawn from ``train/`` so that model selection never sees the test split).
    Any mix of formats :func:`~mv2d3d.data.load_points` reads; unreadable, empty or
    degenerate files are skipped with a warning and listed in :attr:`skipped`.

    Args:
        root: the folder.
        num_points: points sampled per file (N).
        split: ``"train"``, ``"val"``, ``"test"`` (only with a ``test/`` folder) or ``"all"``.
        val_fraction: share of each class held out for ``"val"`` (when the tree has no
            ``val/`` folder). Use the same value and seed for the train and val datasets.
        seed: seed of the split, of the surface sampling and of the augmentation.
        cache_dir: keep sampled clouds here (see :class:`PointCache`); later runs skip reading.
        transform: seeded augmentation applied on access.
        sampling: ``"fps"`` or ``"random"`` (see :func:`~mv2d3d.data.load_points`).
        class_names: impose a label order (e.g. a trained classifier's classes).
        progress: show a progress bar while reading.

    Attributes:
        skipped: (file, reason) for each file that could not be read.

    Raises:
        DatasetError: missing folder, fewer than two classes, unknown split, or no readable
            file in the requested split.
    """

    def __init__(
        self,
        root: PathLike,
        num_points: int = 1024,
        *,
        split: str = "train",
        val_fraction: float = 0.2,
        seed: int = 0,
        cache_dir: Optional[PathLike] = None,
        transform: Optional[Transform] = None,
        sampling: str = "fps",
        class_names: Optional[Sequence[str]] = None,
        progress: bool = False,
    ):
        if split not in SPLITS:
            raise DatasetError(f"split must be one of {SPLITS}, got {split!r}.")
        if num_points < 1:
            raise DatasetError(f"num_points must be >= 1, got {num_points}.")
        layout = scan_folder(root, class_names)
        items = self._select(layout, split, val_fraction, seed)
        self.root = layout.root
        self.layout = layout
        self.split = split
        for f in layout.ignored:
            logger.warning("%s: ignoring %s (not inside a class folder)", layout.root, f)
        cache = PointCache(cache_dir) if cache_dir is not None else None
        pts, labels, files, skipped = _read_items(
            items, num_points, sampling, seed, cache, progress, desc=f"{layout.root.name}/{split}"
        )
        self.skipped: List[Tuple[str, str]] = skipped
        if skipped:
            logger.warning(
                "%s (%s): skipped %d of %d file(s) that could not be read", layout.root, split, len(skipped), len(items)
            )
        if not pts:
            raise DatasetError(
                f"{str(layout.root)!r} split {split!r} has no readable files ({len(items)} found, "
                f"{len(skipped)} unreadable). Supported: {sorted(SUPPORTED_SUFFIXES)}."
            )
        super().__init__(
            np.stack(pts), np.asarray(labels), layout.class_names,
            transform=transform, seed=seed, files=files, name=f"{layout.root}:{split}",
        )
        empty = [self.class_names[c] for c, n in enumerate(self.class_counts()) if n == 0]
        if empty:
            logger.warning("%s (%s): no readable files for class(es) %s", layout.root, split, empty)

    @staticmethod
    def _select(layout: FolderLayout, split: str, val_fraction: float, seed: int) -> List[Tuple[Path, int]]:
        f = layout.files
        if not layout.presplit:
            if split == "test":
                raise DatasetError(
                    f"{str(layout.root)!r} has no train/ and test/ subfolders, so there is no test split. "
                    "Use split='val' (a seeded, stratified hold-out), or arrange the files as "
                    "train/<class>/... and test/<class>/...."
                )
            if split == "all":
                return f["all"]
            train, val = stratified_split(f["all"], val_fraction, seed)
            return train if split == "train" else val
        if split == "test":
            if "test" not in f:
                raise DatasetError(f"{str(layout.root)!r} has no test/ subfolder.")
            return f["test"]
        if split == "all":
            return [it for s in ("train", "val", "test") for it in f.get(s, [])]
        if "val" in f:
            return f[split]
        train, val = stratified_split(f["train"], val_fraction, seed)
        return train if split == "train" else val

    def report(self) -> str:
        """One line per skipped file, for the command line."""
        return "\n".join(f"{f}: {r}" for f, r in self.skipped)
