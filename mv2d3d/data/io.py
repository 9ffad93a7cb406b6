"""Reading point clouds and meshes from files.

Every mesh or scene format trimesh reads (obj, off, ply, stl, glb/gltf, ...) and the usual
point-cloud files (.ply without faces, .xyz/.txt/.csv/.pts tables, .npy/.npz arrays) come
back as one float32 array of xyz coordinates. Units and orientation are kept as they are in
the file: normalisation is the encoder's explicit step (``EncoderConfig.normalize``).

* Meshes (and scenes of several meshes, merged with their node transforms) are sampled on
  the surface in proportion to face area, with a seeded generator.
* Clouds are resampled to ``num_points`` by farthest point sampling (order-independent
  start, :func:`mv2d3d.ops.farthest_point_sample`) or uniformly at random.
* Anything unreadable, empty or degenerate (no faces with area, NaN/Inf, all points in one
  spot) raises :class:`~mv2d3d.errors.PointFileError` naming the file. Numpy files are read
  with ``allow_pickle=False``: nothing is ever unpickled.

Shapes:
    N: points.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import PointFileError

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

TABLE_SUFFIXES = {".xyz", ".txt", ".csv", ".pts"}
ARRAY_SUFFIXES = {".npy", ".npz"}
POINT_SUFFIXES = TABLE_SUFFIXES | ARRAY_SUFFIXES
MESH_SUFFIXES = {".obj", ".off", ".ply", ".stl", ".glb", ".gltf"}
SUPPORTED_SUFFIXES = POINT_SUFFIXES | MESH_SUFFIXES

MESH_DEFAULT_POINTS = 8192
"""Points sampled from a mesh surface when ``num_points`` is None."""

FPS_OVERSAMPLE = 4
"""A mesh read with ``sampling="fps"`` is first sampled at this many times ``num_points``
(area-weighted, random), then thinned by FPS: the result covers the surface evenly."""

_NPZ_KEYS = ("points", "xyz", "pos", "pc", "data", "vertices", "coords")


def _degenerate(path: Path, pts: np.ndarray) -> None:
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise PointFileError(str(path), f"expected an array of shape [N, 3+] (xyz first), got {pts.shape}")
    if len(pts) == 0:
        raise PointFileError(str(path), "the file holds no points")
    if not np.isfinite(pts[:, :3]).all():
        bad = int((~np.isfinite(pts[:, :3]).all(1)).sum())
        raise PointFileError(str(path), f"{bad} point(s) have NaN or Inf coordinates; clean the file first")
    if len(pts) > 1 and float(np.ptp(pts[:, :3], axis=0).max()) == 0.0:
        raise PointFileError(str(path), "degenerate: all points are at the same position")


def _read_table(path: Path) -> np.ndarray:
    # .xyz/.txt/.csv/.pts: whitespace- or comma-separated numbers, xyz in the first three
    # columns (normals, colours after them are dropped). One non-numeric header line (a
    # column header or a point count) is tolerated.
    try:
        text = path.read_text(errors="strict")
    except UnicodeDecodeError:
        raise PointFileError(str(path), "not a text file (binary content); expected rows of x y z numbers") from None
    lines = [ln.replace(",", " ").strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("#", "//"))]
    if not lines:
        raise PointFileError(str(path), "the file is empty")

    def numeric(ln: str) -> Optional[List[float]]:
        try:
            return [float(v) for v in ln.split()]
        except ValueError:
            return None

    rows = [numeric(ln) for ln in lines]
    if rows[0] is None or (len(rows[0]) < 3 and len(rows) > 1):
        rows = rows[1:]  # header line
    if not rows or any(r is None for r in rows):
        bad = next((i for i, r in enumerate(rows) if r is None), 0)
        raise PointFileError(str(path), f"line {bad + 1} is not numeric: not a table of x y z rows")
    width = min(len(r) for r in rows)
    if width < 3:
        raise PointFileError(str(path), f"rows have {width} column(s); need at least x y z")
    return np.asarray([r[:3] for r in rows], dtype=np.float64)


def _read_array(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:
        # numpy says "Object arrays cannot be loaded when allow_pickle=False" for pickles
        raise PointFileError(str(path), f"{e} (pickled data is never loaded; save plain float arrays)") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = list(data.files)
            key = next((k for k in _NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise PointFileError(
                    str(path), f"the .npz holds {keys}; name the point array one of {list(_NPZ_KEYS)} or save only one array"
                )
            data = data[key]
    arr = np.asarray(data)
    if arr.dtype.kind not in "fiu":
        raise PointFileError(str(path), f"array dtype {arr.dtype} is not numeric")
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    return arr.astype(np.float64, copy=False)


@dataclass
class _Geometry:
    mesh: Optional[object] = None  # trimesh.Trimesh with faces (merged)
    points: Optional[np.ndarray] = None  # vertices of point clouds / face-less meshes
    notes: List[str] = field(default_factory=list)


def _read_trimesh(path: Path) -> _Geometry:
    import trimesh

    try:
        scene = trimesh.load_scene(str(path))
    except Exception as e:  # trimesh raises many types (ValueError, IndexError, KeyError, ...)
        raise PointFileError(str(path), f"trimesh could not parse it ({type(e).__name__}: {e})") from e
    meshes, clouds = [], []
    # dump() applies every node's transform, so a scene of several meshes keeps its layout
    for geom in scene.dump(concatenate=False):
        if isinstance(geom, trimesh.Trimesh):
            if len(geom.faces):
                meshes.append(geom)
            elif len(geom.vertices):
                clouds.append(np.asarray(geom.vertices))
        elif isinstance(geom, trimesh.PointCloud) and len(geom.vertices):
            clouds.append(np.asarray(geom.vertices))
    out = _Geometry()
    if meshes:
        out.mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
        if clouds:
            out.notes.append(f"ignored {sum(len(c) for c in clouds)} loose vertices next to the meshes")
    elif clouds:
        out.points = np.concatenate(clouds).astype(np.float64)
    else:
        raise PointFileError(str(path), "the file holds no geometry (no faces, no vertices)")
    return out


def _sample_mesh(path: Path, mesh, count: int, seed: int) -> np.ndarray:
    import trimesh

    verts = np.asarray(mesh.vertices)
    if not np.isfinite(verts).all():
        raise PointFileError(str(path), "the mesh has NaN or Inf vertex coordinates")
    area = float(mesh.area)
    if not np.isfinite(area) or area <= 0.0:
        raise PointFileError(str(path), "degenerate mesh: its faces have zero total area")
    pts, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(pts, dtype=np.float64)


def resample_points(
    points: np.ndarray, num_points: int, *, sampling: str = "fps", seed: Optional[int] = None
) -> np.ndarray:
    """Resample a cloud to exactly ``num_points`` points.

    ``"fps"``: farthest point sampling, started at the point farthest from the centroid, so
    the result does not depend on the order of the input points. ``"random"``: a uniform
    random subset. ``"first"``: the first ``num_points`` rows (PointNet++ convention for
    pre-sampled benchmark files). A cloud with fewer points is padded with randomly
    repeated points (seeded), which leaves its shape unchanged.

    Shapes:
        points: [N, 3] -> [num_points, 3] (same dtype)
    """
    if sampling not in ("fps", "random", "first"):
        raise ValueError(f"sampling must be 'fps', 'random' or 'first', got {sampling!r}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    n = len(points)
    rng = np.random.default_rng(0 if seed is None else seed)
    if n < num_points:
        extra = rng.choice(n, num_points - n, replace=True)
        return np.concatenate([points, points[extra]])
    if n == num_points:
        return points
    if sampling == "first":
        return points[:num_points]
    if sampling == "random":
        return points[np.sort(rng.choice(n, num_points, replace=False))]
    import torch

    from ..ops import farthest_point_sample

    t = torch.from_numpy(np.ascontiguousarray(points[:, :3], dtype=np.float32)).unsqueeze(0)
    idx = farthest_point_sample(t, num_points)[0].numpy()
    return points[idx]


def load_points(
    path: PathLike,
    num_points: Optional[int] = None,
    *,
    sampling: str = "fps",
    seed: Optional[int] = None,
) -> np.ndarray:
    """Read a mesh or point-cloud file as xyz coordinates.

    Args:
        path: any format trimesh reads (obj, off, ply, stl, glb, gltf; scenes are merged
            with their transforms) or a point file (.ply vertices, .xyz/.txt/.csv/.pts,
            .npy/.npz; extra columns such as normals are dropped).
        num_points: points to return. Meshes are sampled on the surface in proportion to
            area (``MESH_DEFAULT_POINTS`` when None); clouds are resampled (all points kept
            when None).
        sampling: ``"fps"`` (even coverage, order independent) or ``"random"``; for
            clouds also ``"first"``.
        seed: seed of the surface sampler and of random resampling. ``None`` means the
            fixed default 0, so the same file always gives the same points.

    Shapes:
        -> [num_points, 3] float32 (or [N, 3] when ``num_points`` is None and the file is a cloud)

    Raises:
        PointFileError: missing, unreadable, unsupported, empty or degenerate file (the
            message names the file and the problem).
    """
    p = Path(path)
    seed = 0 if seed is None else int(seed)
    if sampling not in ("fps", "random", "first"):
        raise ValueError(f"sampling must be 'fps', 'random' or 'first', got {sampling!r}")
    if not p.exists():
        raise PointFileError(str(p), "no such file")
    if p.is_dir():
        raise PointFileError(str(p), "is a folder; use FolderDataset or find_point_files for folders")
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise PointFileError(str(p), f"unsupported file type {suffix or '(none)'!r}; supported: {sorted(SUPPORTED_SUFFIXES)}")
    if p.stat().st_size == 0:
        raise PointFileError(str(p), "the file is empty (0 bytes)")
    try:
        if suffix in TABLE_SUFFIXES:
            pts = _read_table(p)
        elif suffix in ARRAY_SUFFIXES:
            pts = _read_array(p)
        else:
            geom = _read_trimesh(p)
            for note in geom.notes:
                logger.info("%s: %s", p, note)
            if geom.mesh is not None:
                n = num_points or MESH_DEFAULT_POINTS
                count = n * FPS_OVERSAMPLE if sampling == "fps" else n
                pts = _sample_mesh(p, geom.mesh, count, seed)
            else:
                pts = geom.points
    except PointFileError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, MemoryError) as e:
        raise PointFileError(str(p), f"{type(e).__name__}: {e}") from e
    _degenerate(p, pts)
    pts = pts[:, :3]
    if num_points is not None:
        pts = resample_points(pts, num_points, sampling=sampling, seed=seed)
    return np.ascontiguousarray(pts, dtype=np.float32)


def find_point_files(inputs: Iterable[PathLike]) -> List[Path]:
    """Files given directly, plus every file with a supported suffix under given folders.

    Folders are searched recursively (sorted, hidden files and folders skipped). Files
    given directly are kept whatever their suffix, so that :func:`load_points` can report
    an unsupported one instead of it vanishing silently.
    """
    out: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in SUPPORTED_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            out.append(p)
    return out


@dataclass
class LoadReport:
    """What :func:`load_many` read and what it skipped.

    Attributes:
        points: one [num_points, 3] array per readable file, in input order.
        files: the readable files, aligned with ``points``.
        skipped: (file, reason) for every file that could not be read.
    """

    points: List[np.ndarray]
    files: List[Path]
    skipped: List[Tuple[Path, str]]


def load_many(
    files: Sequence[PathLike],
    num_points: int,
    *,
    sampling: str = "fps",
    seed: Optional[int] = None,
    progress: bool = False,
    desc: str = "reading",
) -> LoadReport:
    """Read many files, skipping (and logging) the ones that cannot be read.

    One bad file never stops a long run: each :class:`PointFileError` is logged as a
    warning and listed in ``skipped``.
    """
    from tqdm.auto import tqdm

    pts, ok, bad = [], [], []
    for f in tqdm(list(files), desc=desc, unit="file", disable=not progress):
        try:
            pts.append(load_points(f, num_points, sampling=sampling, seed=seed))
            ok.append(Path(f))
        except PointFileError as e:
            logger.warning("skipping %s", e)
            bad.append((Path(f), e.reason))
    if bad:
        logger.warning("skipped %d of %d file(s) that could not be read", len(bad), len(bad) + len(ok))
    return LoadReport(pts, ok, bad)
