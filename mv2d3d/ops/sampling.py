"""Farthest point sampling (FPS).

Shapes:
    B: batch size, N: points per cloud, M: samples per cloud.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

logger = logging.getLogger(__name__)

# On CPU, FPS runs in the compiled `fpsample` package when it is installed: its plain
# O(N*M) loop (`fps_sampling`, the same picks as the torch loop below) up to this many
# distance updates per cloud, its bucket/KD-tree FPS (QuickFPS, `bucket_fps_kdline_sampling`)
# above. The torch loop costs ~6 tensor ops per sample: slow for large M on CPU, where a
# 1M -> 8192 resample takes about a minute, against ~0.3 s for the bucket FPS.
_EXACT_MAX_WORK = 1 << 27

# pointnet2_ops' furthest_point_sampling_kernel skips points with |p|^2 <= 1e-3.
_POINTNET2_OPS_MIN_SQ_NORM = 1e-3


def fps_start_index(points: torch.Tensor, mode: str = "farthest_from_centroid") -> torch.Tensor:
    """Index of the first FPS sample for each cloud.

    ``"farthest_from_centroid"`` picks the point farthest from the cloud's centroid, which
    depends on the geometry only, so a permuted cloud starts at the same point. ``"first"``
    picks index 0 (the Point-MAE reference code). ``"pointnet2_ops"`` also starts at index 0;
    :func:`farthest_point_sample` then additionally never picks points near the origin
    (see there).

    Shapes:
        points: [B, N, 3] -> [B] (int64)
    """
    if mode in ("first", "pointnet2_ops"):
        return torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    if mode != "farthest_from_centroid":
        raise ValueError(f"unknown FPS start mode {mode!r}")
    p = points.float()
    d = (p - p.mean(dim=1, keepdim=True)).square().sum(-1)
    return d.argmax(dim=1)


def _fps_torch(
    points: torch.Tensor, num_samples: int, start: torch.Tensor, exclude: Optional[torch.Tensor] = None
) -> torch.Tensor:
    B, N, _ = points.shape
    p = points.float()
    idx = torch.empty(B, num_samples, dtype=torch.long, device=points.device)
    dist = torch.full((B, N), float("inf"), device=points.device)
    if exclude is not None:
        # -1 stays below every real distance through the running minimum: never picked
        # (unless nothing else is left, where argmax returns index 0, like the kernel).
        dist.masked_fill_(exclude, -1.0)
    batch = torch.arange(B, device=points.device)
    cur = start
    for i in range(num_samples):
        idx[:, i] = cur
        c = p[batch, cur].unsqueeze(1)  # [B, 1, 3]
        torch.minimum(dist, (p - c).square().sum(-1), out=dist)
        cur = dist.argmax(dim=1)
    return idx


def _fpsample_available() -> bool:
    try:
        import fpsample  # noqa: F401
    except ImportError:
        return False
    return True


# Generic weights for the canonical sort key: distinct points get distinct keys unless they
# lie on one plane orthogonal to this direction (then lexicographic order decides).
_KEY_DIRECTION = (1.0, 0.7548776662466927, 0.5698402909980532)


def _canonical_order(points):
    """An order of the points that depends on their coordinates only (not on the input
    order): sort by a float64 projection, falling back to lexicographic x, y, z when two
    distinct points share a key. Shapes: [N, 3] numpy -> [N] int64."""
    import numpy as np

    key = points.astype(np.float64) @ np.asarray(_KEY_DIRECTION)
    order = np.argsort(key, kind="stable")
    k = key[order]
    same = k[1:] == k[:-1]
    if same.any() and (points[order[1:]][same] != points[order[:-1]][same]).any():
        order = np.lexsort((points[:, 2], points[:, 1], points[:, 0]))
    return order


def _fps_fpsample(points: torch.Tensor, num_samples: int, start: torch.Tensor, bucket: bool) -> torch.Tensor:
    import fpsample
    import numpy as np

    out = []
    arr = np.ascontiguousarray(points.detach().float().cpu().numpy())
    N = arr.shape[1]
    for b in range(arr.shape[0]):
        if bucket:
            # KD-tree height (bucket size 2**h <= N): about log2(N)/2 - 1. Measured at
            # 1M -> 8192 here: h=5 4.3 s, 7 2.2 s, 9 1.0 s, 11 1.7 s (loaded machine).
            h = max(1, min(N.bit_length() // 2 - 1, 11))
            # The KD-tree's picks depend on the input order (measured: 76 of 512 picks in
            # common for a permuted 5k cloud), so the cloud is first put in a canonical
            # order (see _canonical_order): the same cloud in any order gives the same
            # points. Costs one O(N log N) sort, ~0.2 s at 1M points.
            order = _canonical_order(arr[b])
            rank = np.empty_like(order)
            rank[order] = np.arange(N)
            sel = fpsample.bucket_fps_kdline_sampling(arr[b][order], num_samples, h=h, start_idx=int(rank[int(start[b])]))
            sel = order[np.asarray(sel, dtype=np.int64)]
        else:
            sel = fpsample.fps_sampling(arr[b], num_samples, start_idx=int(start[b]))
        out.append(torch.from_numpy(np.asarray(sel, dtype=np.int64)))
    return torch.stack(out).to(points.device)


def farthest_point_sample(
    points: torch.Tensor,
    num_samples: int,
    *,
    start: str = "farthest_from_centroid",
    backend: str = "auto",
) -> torch.Tensor:
    """Farthest point sampling: ``num_samples`` indices per cloud, each new sample the point
    farthest from all samples taken so far.

    Args:
        points: coordinates, any float dtype, any device.
        num_samples: M, at most N.
        start: how the first sample is chosen (see :func:`fps_start_index`).
            ``"pointnet2_ops"`` reproduces the CUDA kernel of the ``pointnet2_ops`` package
            that Point-MAE, ACT and ReCon use: start at index 0, and points with
            ``x*x + y*y + z*z <= 1e-3`` (within ~0.032 of the origin) are never picked after
            the start. Always runs the torch backend.
        backend: ``"torch"`` (batched loop over samples, any device), ``"fpsample"``
            (the compiled ``fpsample`` package's exact loop, CPU: the same picks as
            ``"torch"``), ``"bucket"`` (``fpsample``'s bucket/KD-tree FPS, CPU: a valid
            farthest point sampling from the same start, of the same coverage, but its picks
            can differ from the exact loop's, and they come in a canonical order of the
            points, not in pick order) or ``"auto"`` (on CPU with
            ``fpsample`` installed: ``"fpsample"`` while N * M <= 2**27, ``"bucket"`` above;
            ``"torch"`` otherwise).

    Shapes:
        points: [B, N, 3] -> indices [B, M] (int64, on ``points.device``)

    Memory is O(B * N) for every backend: no pairwise distance matrix is formed.
    Every backend's result is a function of the geometry alone (the start is), so a
    permuted cloud gives the same sampled points, barring exact distance ties.
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be [B, N, 3], got {tuple(points.shape)}")
    N = points.shape[1]
    if not 1 <= num_samples <= N:
        raise ValueError(f"num_samples must be in [1, {N}], got {num_samples}")
    start_idx = fps_start_index(points, start)
    if start == "pointnet2_ops":
        near_origin = points.float().square().sum(-1) <= _POINTNET2_OPS_MIN_SQ_NORM
        return _fps_torch(points, num_samples, start_idx, exclude=near_origin)
    if backend not in ("auto", "torch", "fpsample", "bucket"):
        raise ValueError(f"unknown FPS backend {backend!r}; use 'auto', 'torch', 'fpsample' or 'bucket'")
    if backend == "auto":
        if points.device.type == "cpu" and _fpsample_available():
            backend = "fpsample" if N * num_samples <= _EXACT_MAX_WORK else "bucket"
        else:
            backend = "torch"
    if backend == "torch":
        return _fps_torch(points, num_samples, start_idx)
    if not _fpsample_available():
        raise ImportError(f"FPS backend {backend!r} needs the fpsample package: pip install fpsample")
    return _fps_fpsample(points, num_samples, start_idx, bucket=backend == "bucket")


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather rows of ``points`` by index.

    Shapes:
        points: [B, N, C], idx: [B, M] or [B, M, K] -> [B, M, C] or [B, M, K, C]
    """
    B = points.shape[0]
    flat = idx.reshape(B, -1)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, points.shape[-1]))
    return out.reshape(*idx.shape, points.shape[-1])
