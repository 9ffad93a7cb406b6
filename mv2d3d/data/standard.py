"""Readers for the standard point-cloud benchmarks, in their published on-disk layouts.

Nothing is downloaded (the licences of these data sets ask users to fetch them
themselves) and nothing is unpickled: the text, HDF5 and ``.npy`` files are read directly,
never the pickled ``.dat`` caches some repositories distribute.

=========================  ===========================================================
name                       layout under ``root``
=========================  ===========================================================
``modelnet40``             ``modelnet40_normal_resampled/``: ``modelnet40_shape_names.txt``,
                           ``modelnet40_{train,test}.txt`` (one ``airplane_0001`` per line),
                           ``<class>/<class>_0001.txt`` (10,000 rows ``x,y,z,nx,ny,nz``)
``modelnet40-h5``          ``modelnet40_ply_hdf5_2048/``: ``ply_data_{train,test}<k>.h5``
                           ('data' [n, 2048, 3] float32, 'label' [n, 1]),
                           ``{train,test}_files.txt``, ``shape_names.txt``
``scanobjectnn-objbg``     ``h5_files/main_split/{training,test}_objectdataset.h5``
``scanobjectnn-objonly``   ``h5_files/main_split_nobg/{training,test}_objectdataset.h5``
``scanobjectnn-hardest``   ``h5_files/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5``
                           (PB-T50-RS; all three: 'data' [n, 2048, 3], 'label' [n])
``shapenet55``             ``ShapeNet55-34/``: ``shapenet_pc/<synset>-<model>.npy`` (8192 x 3),
                           ``ShapeNet-55/{train,test}.txt`` (one ``.npy`` name per line)
=========================  ===========================================================

``root`` may be the folder named in the table or its parent (e.g. ``data/`` holding
``modelnet40_normal_resampled/``); for ScanObjectNN, the folder holding ``main_split/``.

Shapes:
    S: samples, N: points per sample.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError
from .datasets import PointCache, PointCloudDataset
from .io import resample_points
from .transforms import Transform

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

SCANOBJECTNN_CLASSES = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
)
"""The 15 ScanObjectNN classes in label order."""

_SCANOBJECTNN_FILES = {
    "objbg": ("main_split", "{split}_objectdataset.h5"),
    "objonly": ("main_split_nobg", "{split}_objectdataset.h5"),
    "hardest": ("main_split", "{split}_objectdataset_augmentedrot_scale75.h5"),
}


def _check_split(split: str, name: str) -> str:
    if split not in ("train", "test"):
        raise DatasetError(f"{name} has the splits 'train' and 'test', got {split!r}.")
    return split


def _find_root(root: PathLike, name: str, marker: str, folder: str) -> Path:
    """``root`` itself or ``root/folder``, whichever holds ``marker``."""
    root = Path(root)
    for cand in (root, root / folder):
        if (cand / marker).exists():
            return cand
    raise DatasetError(
        f"{name}: no {marker!r} under {str(root)!r} (nor under {str(root / folder)!r}). Pass the folder "
        f"{folder!r} of the data set as published (see docs/finetune.md for the layout)."
    )


def _read_list(path: Path) -> List[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


# -- ModelNet40, normal_resampled text files --------------------------------------------------
def _read_modelnet_txt(path: Path) -> np.ndarray:
    try:
        arr = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as e:
        raise DatasetError(f"ModelNet40: cannot read {str(path)!r} ({e}); the download may be incomplete.") from e
    if arr.shape[1] < 3 or len(arr) == 0 or not np.isfinite(arr[:, :3]).all():
        raise DatasetError(f"ModelNet40: {str(path)!r} is not a table of x,y,z[,nx,ny,nz] rows.")
    return arr[:, :3]


def load_modelnet40(
    root: PathLike,
    split: str = "train",
    *,
    num_points: int = 1024,
    sampling: str = "fps",
    transform: Optional[Transform] = None,
    seed: int = 0,
    cache_dir: Optional[PathLike] = None,
    progress: bool = False,
) -> PointCloudDataset:
    """ModelNet40 from ``modelnet40_normal_resampled`` (9,843 train / 2,468 test shapes).

    Each file's 10,000 points are reduced to ``num_points`` by ``sampling``: ``"fps"``
    (farthest point sampling, the Point-BERT / Point-MAE protocol) or ``"first"`` (the
    first rows, PointNet++'s). Normals are dropped. Reading the text files takes minutes:
    pass ``cache_dir`` to do it once.

    Raises:
        DatasetError: layout not found, or a listed file missing or unreadable.
    """
    from tqdm.auto import tqdm

    _check_split(split, "ModelNet40")
    base = _find_root(root, "ModelNet40", "modelnet40_shape_names.txt", "modelnet40_normal_resampled")
    classes = _read_list(base / "modelnet40_shape_names.txt")
    index = {c: i for i, c in enumerate(classes)}
    split_file = base / f"modelnet40_{split}.txt"
    if not split_file.exists():
        raise DatasetError(f"ModelNet40: missing split list {str(split_file)!r}.")
    shapes = _read_list(split_file)
    cache = PointCache(cache_dir) if cache_dir is not None else None
    pts, labels, files = [], [], []
    for shape in tqdm(shapes, desc=f"modelnet40/{split}", unit="file", disable=not progress):
        cls = shape.rsplit("_", 1)[0]
        if cls not in index:
            raise DatasetError(f"ModelNet40: {shape!r} in {split_file.name} names an unknown class {cls!r}.")
        f = base / cls / f"{shape}.txt"
        if not f.exists():
            raise DatasetError(f"ModelNet40: {str(f)!r} is listed in {split_file.name} but missing.")
        key = cache.key(f, num_points, sampling, seed) if cache else None
        arr = cache.get(key) if cache else None
        if arr is None or len(arr) != num_points:
            arr = resample_points(_read_modelnet_txt(f), num_points, sampling=sampling, seed=seed)
            if cache:
                cache.put(key, arr)
        pts.append(arr)
        labels.append(index[cls])
        files.append(str(f))
    if not pts:
        raise DatasetError(f"ModelNet40: {split_file} lists no shapes.")
    return PointCloudDataset(
        np.stack(pts), np.asarray(labels), classes, transform=transform, seed=seed, files=files, name=f"modelnet40:{split}"
    )


# -- HDF5 readers ---------------------------------------------------------------------------
def _read_h5(path: Path, name: str) -> Tuple[np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            missing = [k for k in ("data", "label") if k not in h5]
            if missing:
                raise DatasetError(f"{name}: {str(path)!r} has no dataset(s) {missing} (found {list(h5.keys())}).")
            data = np.asarray(h5["data"][:], dtype=np.float32)
            label = np.asarray(h5["label"][:]).reshape(-1).astype(np.int64)
    except OSError as e:
        raise DatasetError(f"{name}: cannot open {str(path)!r} as HDF5 ({e}); the download may be incomplete.") from e
    if data.ndim != 3 or data.shape[-1] < 3 or len(data) != len(label):
        raise DatasetError(f"{name}: {str(path)!r} has data {data.shape} and label {label.shape}; expected [n, N, 3] and [n].")
    return data[..., :3], label


def _subsample(data: np.ndarray, num_points: Optional[int], sampling: str, seed: int, desc: str, progress: bool) -> np.ndarray:
    if num_points is None or num_points == data.shape[1]:
        return data
    if sampling == "first" and num_points <= data.shape[1]:
        return np.ascontiguousarray(data[:, :num_points])
    from tqdm.auto import tqdm

    return np.stack(
        [resample_points(c, num_points, sampling=sampling, seed=seed) for c in tqdm(data, desc=desc, disable=not progress)]
    )


def load_modelnet40_h5(
    root: PathLike,
    split: str = "train",
    *,
    num_points: Optional[int] = 1024,
    sampling: str = "first",
    transform: Optional[Transform] = None,
    seed: int = 0,
    progress: bool = False,
) -> PointCloudDataset:
    """ModelNet40 as PointNet's ``modelnet40_ply_hdf5_2048`` (9,840 train / 2,468 test).

    The h5 files named in ``{split}_files.txt`` (paths in it are resolved by file name, as
    distributed they point into PointNet's own tree) are concatenated; without the list,
    ``ply_data_{split}*.h5`` in name order. ``sampling="first"`` keeps the first
    ``num_points`` of the 2,048 points as PointNet and DGCNN do; ``"fps"`` is also offered.
    """
    _check_split(split, "ModelNet40-h5")
    base = _find_root(root, "ModelNet40-h5", "shape_names.txt", "modelnet40_ply_hdf5_2048")
    classes = _read_list(base / "shape_names.txt")
    listing = base / f"{split}_files.txt"
    if listing.exists():
        files = [base / Path(ln).name for ln in _read_list(listing)]
    else:
        files = sorted(base.glob(f"ply_data_{split}*.h5"))
    if not files:
        raise DatasetError(f"ModelNet40-h5: no ply_data_{split}*.h5 files under {str(base)!r}.")
    parts = []
    for f in files:
        if not f.exists():
            raise DatasetError(f"ModelNet40-h5: {str(f)!r} is listed in {listing.name} but missing.")
        parts.append(_read_h5(f, "ModelNet40-h5"))
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    data = _subsample(data, num_points, sampling, seed, f"modelnet40-h5/{split}", progress)
    return PointCloudDataset(data, labels, classes, transform=transform, seed=seed, name=f"modelnet40-h5:{split}")


def load_scanobjectnn(
    root: PathLike,
    variant: str = "hardest",
    split: str = "train",
    *,
    num_points: Optional[int] = 2048,
    sampling: str = "fps",
    transform: Optional[Transform] = None,
    seed: int = 0,
    progress: bool = False,
) -> PointCloudDataset:
    """ScanObjectNN, one of its three HDF5 variants.

    Args:
        root: the ``h5_files`` folder (holding ``main_split/`` and ``main_split_nobg/``)
            or its parent.
        variant: ``"objbg"`` (OBJ-BG), ``"objonly"`` (OBJ-ONLY) or ``"hardest"`` (PB-T50-RS).
        num_points: 2048 (all points, the Point-MAE protocol) by default.
    """
    _check_split(split, "ScanObjectNN")
    if variant not in _SCANOBJECTNN_FILES:
        raise DatasetError(f"ScanObjectNN variant must be one of {sorted(_SCANOBJECTNN_FILES)}, got {variant!r}.")
    folder, pattern = _SCANOBJECTNN_FILES[variant]
    name = pattern.format(split="training" if split == "train" else "test")
    base = _find_root(root, "ScanObjectNN", folder, "h5_files")
    path = base / folder / name
    if not path.exists():
        raise DatasetError(f"ScanObjectNN ({variant}): missing {str(path)!r}.")
    data, labels = _read_h5(path, f"ScanObjectNN ({variant})")
    data = _subsample(data, num_points, sampling, seed, f"scanobjectnn-{variant}/{split}", progress)
    return PointCloudDataset(
        data, labels, SCANOBJECTNN_CLASSES, transform=transform, seed=seed, name=f"scanobjectnn-{variant}:{split}"
    )


# -- ShapeNet-55 ----------------------------------------------------------------------------
class ShapeNet55(Dataset):
    """ShapeNet-55 as distributed by Point-BERT: 52,470 ``.npy`` clouds of 8,192 points.

    Clouds are read on access (the whole set does not need to fit in memory) and reduced to
    ``num_points``: ``"random"`` (a seeded random subset per epoch and sample, as
    Point-BERT/Point-MAE pretraining does) or ``"fps"``. Labels are the 55 synset ids,
    sorted (``class_names``).

    Shapes:
        item: (points [num_points, 3] float32 tensor, label int)
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        *,
        num_points: int = 1024,
        sampling: str = "random",
        transform: Optional[Transform] = None,
        seed: int = 0,
        progress: bool = False,  # accepted for a uniform signature; nothing is read up front
    ):
        _check_split(split, "ShapeNet-55")
        base = _find_root(root, "ShapeNet-55", "shapenet_pc", "ShapeNet55-34")
        lists = base / "ShapeNet-55"
        split_file = lists / f"{split}.txt"
        if not split_file.exists():
            raise DatasetError(f"ShapeNet-55: missing split list {str(split_file)!r}.")
        names = _read_list(split_file)
        synsets = set()
        for s in ("train", "test"):
            f = lists / f"{s}.txt"
            if f.exists():
                synsets.update(n.split("-", 1)[0] for n in _read_list(f))
        self.class_names = sorted(synsets)
        index = {c: i for i, c in enumerate(self.class_names)}
        self.files = [str(base / "shapenet_pc" / n) for n in names]
        self.labels = np.asarray([index[n.split("-", 1)[0]] for n in names], dtype=np.int64)
        self.num_points, self.sampling, self.transform, self.seed = num_points, sampling, transform, seed
        self.epoch = 0
        self.name = f"shapenet55:{split}"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        f = self.files[i]
        try:
            arr = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatasetError(f"ShapeNet-55: cannot read {f!r} ({e}).") from e
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] < 3:
            raise DatasetError(f"ShapeNet-55: {f!r} has shape {arr.shape}; expected [8192, 3].")
        rng_seed = int(np.random.default_rng((self.seed, self.epoch, int(i))).integers(2**31))
        arr = resample_points(arr[:, :3], self.num_points, sampling=self.sampling, seed=rng_seed)
        if self.transform is not None:
            arr = self.transform(arr.copy(), np.random.default_rng((self.seed, self.epoch, int(i), 1)))
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), int(self.labels[i])


# -- one door by name -----------------------------------------------------------------------
def _scan(variant: str) -> Callable[..., PointCloudDataset]:
    def load(root: PathLike, split: str = "train", **kw) -> PointCloudDataset:
        return load_scanobjectnn(root, variant, split, **kw)

    load.__doc__ = f"ScanObjectNN {variant} (see :func:`load_scanobjectnn`)."
    return load


STANDARD_DATASETS: Dict[str, Callable[..., Dataset]] = {
    "modelnet40": load_modelnet40,
    "modelnet40-h5": load_modelnet40_h5,
    "scanobjectnn-objbg": _scan("objbg"),
    "scanobjectnn-objonly": _scan("objonly"),
    "scanobjectnn-hardest": _scan("hardest"),
    "shapenet55": ShapeNet55,
}
"""Standard data sets by name: ``STANDARD_DATASETS[name](root, split, **options)``."""

DEFAULT_NUM_POINTS = {
    "modelnet40": 1024, "modelnet40-h5": 1024, "scanobjectnn-objbg": 2048,
    "scanobjectnn-objonly": 2048, "scanobjectnn-hardest": 2048, "shapenet55": 1024,
}
"""Points per cloud in the published protocols (Point-BERT / Point-MAE)."""


def load_standard(name: str, root: PathLike, split: str = "train", **options) -> Dataset:
    """Open a standard data set by name (a key of :data:`STANDARD_DATASETS`).

    Raises:
        DatasetError: unknown name (with the known ones), or any layout problem.
    """
    if name not in STANDARD_DATASETS:
        import difflib

        close = difflib.get_close_matches(name, list(STANDARD_DATASETS), n=3)
        raise DatasetError(
            f"Unknown data set {name!r}" + (f"; did you mean {close}?" if close else ".")
            + f" Known: {sorted(STANDARD_DATASETS)}."
        )
    options.setdefault("num_points", DEFAULT_NUM_POINTS[name])
    return STANDARD_DATASETS[name](root, split, **options)
