"""The encoder's input contract: validation at the public edge and explicit normalisation.

Shapes:
    B: batch size, N: points per cloud.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch

from ..errors import InvalidPointCloudError

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_point_batch(points: Any, *, min_points: int = 1, name: str = "points") -> Tuple[torch.Tensor, bool]:
    """Check a user's cloud(s) and return them as a float32 ``[B, N, 3]`` tensor.

    Accepts a torch tensor or numpy array of shape [N, 3] or [B, N, 3] in float16,
    bfloat16, float32 or float64, on any device (the device is kept).

    Returns:
        (points [B, N, 3] float32, was_unbatched) — ``was_unbatched`` is True for [N, 3] input.

    Raises:
        InvalidPointCloudError: not numeric/float, wrong rank, not 3 columns, empty, fewer
            than ``min_points`` points, or NaN/Inf values.
    """
    if isinstance(points, np.ndarray):
        # integer coordinates are rejected like integer tensors: quantised input is almost
        # always a mistake (voxel indices, a wrong column), and the fix is one cast away
        if points.dtype.kind != "f":
            raise InvalidPointCloudError(
                f"{name} has numpy dtype {points.dtype}; expected floating point coordinates. "
                "Convert with np.asarray(points, dtype=np.float32)."
            )
        points = torch.from_numpy(np.ascontiguousarray(points))
    if not isinstance(points, torch.Tensor):
        raise InvalidPointCloudError(
            f"{name} must be a torch.Tensor or numpy array of shape [N, 3] or [B, N, 3], got "
            f"{type(points).__name__}. Load files with mv2d3d.data.load_points(path)."
        )
    if points.dtype not in _FLOAT_DTYPES:
        raise InvalidPointCloudError(
            f"{name} has dtype {points.dtype}; expected float16/bfloat16/float32/float64 coordinates. "
            "Convert with points.float()."
        )
    if points.dim() not in (2, 3):
        raise InvalidPointCloudError(
            f"{name} must have shape [N, 3] or [B, N, 3], got {tuple(points.shape)} ({points.dim()} dims)."
        )
    unbatched = points.dim() == 2
    if unbatched:
        points = points.unsqueeze(0)
    C = points.shape[-1]
    if C != 3:
        extra = (
            f" It has {C - 3} extra column(s) (normals, colour, ...): the encoder uses xyz only, and "
            "does not drop columns silently. Pass points[..., :3] if that is what you want."
            if C > 3
            else ""
        )
        raise InvalidPointCloudError(f"{name} must have 3 coordinates per point (x, y, z), got {C}.{extra}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise InvalidPointCloudError(f"{name} is empty (shape {tuple(points.shape)}); give at least {min_points} points.")
    if points.shape[1] < min_points:
        raise InvalidPointCloudError(
            f"{name} has {points.shape[1]} points but this encoder needs at least {min_points} "
            "(its group size). Sample more points from the surface, e.g. "
            "mv2d3d.data.load_points(path, num_points=1024)."
        )
    points = points.float()
    finite = torch.isfinite(points)
    if not bool(finite.all()):
        bad = int((~finite.all(-1)).sum())
        raise InvalidPointCloudError(
            f"{name} contains NaN or Inf in {bad} point(s). Remove them first, e.g. "
            "points[torch.isfinite(points).all(-1)]."
        )
    return points, unbatched


def normalize_points(points: torch.Tensor, eps: float = 1e-9) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre each cloud on its centroid and scale it so the farthest point is at radius 1.

    This is the normalisation every mv2d3d encoder applies first (``EncoderConfig.normalize``);
    the training data of the zoo was normalised the same way. It is invariant to point order.

    Shapes:
        points: [B, N, 3] -> (normalised [B, N, 3], centroid [B, 1, 3], radius [B, 1, 1])
    """
    centroid = points.mean(dim=1, keepdim=True)
    centred = points - centroid
    radius = centred.norm(dim=-1).amax(dim=1).clamp_min(eps).view(-1, 1, 1)
    return centred / radius, centroid, radius
