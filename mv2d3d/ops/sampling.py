"""Farthest point sampling (FPS).

Shapes:
    B: batch size, N: points per cloud, M: samples per cloud.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

logger = logging.getLogger(__name__)

# Above this many points, a CPU batch is handed to the `fpsample` package (bucket/KD-tree
# FPS, exact, ~100x faster than the loop below at 1M points) when it is installed.
_FPSAMPLE_MIN_POINTS = 16384

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


def _fps_fpsample(points: torch.Tensor, num_samples: int, start: torch.Tensor) -> torch.Tensor:
    import fpsample
    import numpy as np

    out = []
    arr = points.detach().float().cpu().numpy()
    for b in range(arr.shape[0]):
        # h=7 is fpsample's recommended KD-tree height for ~1M points; it is exact FPS.
        h = 7 if arr.shape[1] > 100_000 else 5
        sel = fpsample.bucket_fps_kdline_sampling(arr[b], num_samples, h=h, start_idx=int(start[b]))
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
        backend: ``"torch"`` (batched loop over samples, runs anywhere), ``"fpsample"``
            (the compiled bucket-FPS package, CPU) or ``"auto"`` (fpsample for large clouds
            on CPU when installed, torch otherwise).

    Shapes:
        points: [B, N, 3] -> indices [B, M] (int64, on ``points.device``)

    Memory is O(B * N): no pairwise distance matrix is formed.
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
    use_fpsample = backend == "fpsample" or (
        backend == "auto" and points.device.type == "cpu" and N >= _FPSAMPLE_MIN_POINTS and _fpsample_available()
    )
    if use_fpsample:
        return _fps_fpsample(points, num_samples, start_idx)
    if backend not in ("auto", "torch"):
        raise ValueError(f"unknown FPS backend {backend!r}")
    return _fps_torch(points, num_samples, start_idx)


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather rows of ``points`` by index.

    Shapes:
        points: [B, N, C], idx: [B, M] or [B, M, K] -> [B, M, C] or [B, M, K, C]
    """
    B = points.shape[0]
    flat = idx.reshape(B, -1)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, points.shape[-1]))
    return out.reshape(*idx.shape, points.shape[-1])
