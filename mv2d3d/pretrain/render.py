"""Multi-view depth rendering of point clouds, batched over clouds and views.

Every cloud is centred on its centroid and scaled into the unit sphere, rotated into each
view, projected orthographically (with a margin) onto an H x W grid, and z-buffered with a
single ``scatter_reduce(amin)`` over all clouds, views and points at once: the nearest point
wins. Sparse clouds leave holes; a few passes fill empty pixels from their neighbours so
silhouettes come out solid, and replace pixels where a far surface shows through a gap of
a near one (see :func:`_fill_pass`).

Depth convention: the image holds *closeness*: 1.0 at the nearest possible depth, falling
linearly to 0.2 at the farthest; background pixels are 0.

Shapes:
    B: clouds, N: points per cloud, V: views, H = W: resolution.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F

DEFAULT_VIEWS: Tuple[Tuple[float, float], ...] = (
    (0.0, 20.0), (60.0, 20.0), (120.0, 20.0), (180.0, 20.0), (240.0, 20.0), (300.0, 20.0)
)
"""Six views around the up axis (+Y), 20 degrees above the horizon."""

_NEAR, _FAR = 1.0, 0.2  # image value of the nearest / farthest possible depth


def view_rotations(views: Sequence[Tuple[float, float]], *, device=None) -> torch.Tensor:
    """World-to-camera rotations for ``(azimuth, elevation)`` views in degrees.

    The camera looks down its -z axis from +z, with +y up in the image; azimuth turns about
    the world's +Y, elevation tilts the camera above the horizon.

    Shapes:
        -> [V, 3, 3]
    """
    mats = []
    for az, el in views:
        a, e = math.radians(az), math.radians(el)
        ry = torch.tensor([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]])
        rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(e), -math.sin(e)], [0.0, math.sin(e), math.cos(e)]])
        mats.append(rx @ ry)
    return torch.stack(mats).to(device=device, dtype=torch.float32)


def render_depth(
    points: torch.Tensor,
    views: Sequence[Tuple[float, float]] = DEFAULT_VIEWS,
    resolution: int = 224,
    *,
    margin: float = 0.1,
    fill_iters: int = 2,
    point_size: int = 0,
) -> torch.Tensor:
    """Render every cloud from every view into a closeness image (see module docstring).

    Args:
        points: clouds (any scale and position: each is normalised into the unit sphere).
        views: ``(azimuth, elevation)`` pairs in degrees.
        resolution: image side H = W.
        margin: empty border as a fraction of the unit radius.
        fill_iters: gap-filling passes; each fills empty pixels with the nearest depth of
            their 3x3 neighbourhood (0 turns it off).
        point_size: splat diameter in pixels (odd; 1 = one pixel per point): each point
            covers a square and the nearest still wins, so front surfaces hide the back ones
            between their points. 0 = automatic, about the spacing of the cloud's points at
            this resolution (``auto_point_size``).

    Shapes:
        points: [B, N, 3] -> images [B, V, H, W] float32 in [0, 1]
    """
    B, N, _ = points.shape
    p = points.float()
    p = p - p.mean(dim=1, keepdim=True)
    p = p / p.norm(dim=-1).amax(dim=1).clamp_min(1e-9).view(B, 1, 1)
    R = view_rotations(views, device=p.device)  # [V, 3, 3]
    V, H = R.shape[0], resolution
    cam = torch.einsum("vij,bnj->bvni", R, p)  # [B, V, N, 3]
    scale = 1.0 / (1.0 + margin)
    u = ((cam[..., 0] * scale + 1.0) * 0.5 * H).long().clamp_(0, H - 1)
    # image rows run top to bottom, camera +y is up
    v = ((1.0 - (cam[..., 1] * scale + 1.0) * 0.5) * H).long().clamp_(0, H - 1)
    depth = (1.0 - cam[..., 2]) * 0.5  # 0 nearest .. 1 farthest (camera at +z)
    base = torch.arange(B * V, device=p.device).view(B, V, 1) * (H * H)
    flat = (base + v * H + u).reshape(-1)
    zbuf = torch.full((B * V * H * H,), float("inf"), device=p.device)
    zbuf.scatter_reduce_(0, flat, depth.reshape(-1), reduce="amin", include_self=True)
    zbuf = zbuf.view(B * V, 1, H, H)
    size = point_size or auto_point_size(N, H)
    if size > 1:
        size += 1 - size % 2
        zbuf = _min_pool(zbuf, size)
    for _ in range(fill_iters):
        zbuf = _fill_pass(zbuf)
    img = torch.where(torch.isinf(zbuf), torch.zeros_like(zbuf), _NEAR - (_NEAR - _FAR) * zbuf.clamp(0, 1))
    return img.view(B, V, H, H)


def auto_point_size(num_points: int, resolution: int) -> int:
    """Splat diameter for ``num_points`` on a surface seen at ``resolution`` pixels: an object
    spans most of the image and shows about half its points, so points sit up to ~1.2 H / sqrt(N / 2)
    pixels apart... rounded to an odd size, at least 1."""
    spacing = 1.2 * resolution / math.sqrt(max(num_points, 1) / 2.0)
    size = int(round(spacing))
    return max(1, size + 1 - size % 2) if size > 1 else 1


def _min_pool(z: torch.Tensor, size: int) -> torch.Tensor:
    """Stride-1 ``size`` x ``size`` min filter of [n, 1, H, W], separable: a running minimum
    of shifted views along each axis (CPU max_pool2d / unfold are far slower for this)."""
    r = size // 2
    if r == 0:
        return z
    H, W = z.shape[-2:]
    p = F.pad(z, (r, r, r, r), value=float("inf"))
    rows = p[..., :, 0:W]
    for d in range(1, size):
        rows = torch.minimum(rows, p[..., :, d : d + W])
    out = rows[..., 0:H, :]
    for d in range(1, size):
        out = torch.minimum(out, rows[..., d : d + H, :])
    return out


def _fill_pass(zbuf: torch.Tensor, see_through: float = 0.1) -> torch.Tensor:
    """One gap-filling pass over [n, 1, H, W] depth buffers (inf = empty).

    Empty pixels take the nearest depth of their 3x3 neighbourhood. A drawn pixel with at
    least 5 of its 8 neighbours nearer by more than ``see_through`` is a gap in a front
    surface through which a farther surface shows: it takes the nearest neighbour's depth
    too. (Pixels beside a depth edge have at most ~3 nearer neighbours and are kept.)
    """
    H, W = zbuf.shape[-2:]
    pooled = _min_pool(zbuf, 3)
    p = F.pad(zbuf, (1, 1, 1, 1), value=float("inf"))
    limit = zbuf - see_through
    nearer = torch.zeros_like(zbuf, dtype=torch.uint8)
    for dy in range(3):
        for dx in range(3):
            if dy == 1 and dx == 1:
                continue
            nearer += p[..., dy : dy + H, dx : dx + W] < limit
    return torch.where(torch.isinf(zbuf) | (nearer >= 5), pooled, zbuf)


def to_teacher_input(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Depth images as the 3-channel, normalised input a 2D teacher expects.

    Shapes:
        images: [B, V, H, W] -> [B * V, 3, H, W]
    """
    B, V, H, W = images.shape
    x = images.reshape(B * V, 1, H, W).expand(-1, 3, -1, -1)
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def save_view_grid(images: torch.Tensor, path: Union[str, Path]) -> Path:
    """Write depth images as one PNG grid: a row per cloud, a column per view.

    Written to a temporary file and renamed, so a partial PNG never appears.

    Shapes:
        images: [B, V, H, W] (or [V, H, W]) values in [0, 1]
    """
    import numpy as np
    from PIL import Image

    if images.dim() == 3:
        images = images.unsqueeze(0)
    B, V, H, W = images.shape
    pad = 2
    grid = np.ones((B * (H + pad) + pad, V * (W + pad) + pad), dtype=np.uint8) * 255
    arr = (images.detach().float().clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    for b in range(B):
        for v in range(V):
            y, x = pad + b * (H + pad), pad + v * (W + pad)
            grid[y : y + H, x : x + W] = arr[b, v]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".incomplete.png")
    Image.fromarray(grid).save(tmp)
    tmp.replace(path)
    return path
