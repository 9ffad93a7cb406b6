"""Reading point clouds and meshes from files (first version; the data-layer issue extends it).

Shapes:
    N: points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import PointFileError

POINT_SUFFIXES = {".npy", ".xyz", ".txt", ".pts"}
MESH_SUFFIXES = {".obj", ".off", ".ply", ".stl", ".glb", ".gltf"}


def _read_raw(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif suffix in (".xyz", ".txt", ".pts"):
        arr = np.loadtxt(path, ndmin=2)[:, :3]
    else:
        import trimesh

        geom = trimesh.load(path, force="mesh")
        if isinstance(geom, trimesh.Trimesh) and len(geom.faces):
            pts, _ = trimesh.sample.sample_surface(geom, 65536, seed=0)
            return np.asarray(pts)
        arr = np.asarray(getattr(geom, "vertices", np.empty((0, 3))))
    return np.asarray(arr, dtype=np.float64)


def load_points(path: Union[str, Path], num_points: Optional[int] = None, *, seed: Optional[int] = 0) -> np.ndarray:
    """Read a point cloud or mesh file as float32 points [N, 3] (N = num_points if given)."""
    path = Path(path)
    try:
        pts = _read_raw(path)
    except PointFileError:
        raise
    except Exception as e:
        raise PointFileError(str(path), f"{type(e).__name__}: {e}") from e
    if pts.ndim != 2 or pts.shape[1] < 3 or len(pts) == 0:
        raise PointFileError(str(path), "no points found")
    pts = pts[:, :3]
    if num_points is not None:
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(pts), num_points, replace=len(pts) < num_points)
        pts = pts[idx]
    return pts.astype(np.float32)


def find_point_files(inputs) -> list:
    """Files given directly, plus every file with a known suffix under given folders (sorted)."""
    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in POINT_SUFFIXES | MESH_SUFFIXES)
        else:
            out.append(p)
    return out
