"""k-nearest-neighbour search, grouping and inverse-distance interpolation.

All functions work on batches, on any device, in chunks of queries so that memory stays
O(B * chunk * N) instead of O(B * M * N).

Shapes:
    B: batch size, N: reference points, M: query points, K: neighbours, C: channels.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .sampling import gather_points

# Bound on B * chunk * N distance entries held at once (64 MB of fp32; 16k queries per
# chunk against 1024 references, large enough for efficient matmuls).
_MAX_DIST_ENTRIES = 1 << 24


def knn_chunk_size(batch: int, num_reference: int, max_entries: int = _MAX_DIST_ENTRIES) -> int:
    """Queries per chunk so that one [batch, chunk, num_reference] distance block holds at
    most ``max_entries`` values (at least one query per chunk)."""
    return max(1, max_entries // max(1, batch * num_reference))


def _squared_dist(q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    # |q|^2 + |r|^2 - 2 q.r as one batched matmul; clamp the tiny negatives it can produce.
    d = torch.baddbmm((q * q).sum(-1, keepdim=True), q, r.transpose(1, 2), alpha=-2.0)
    return d.add_((r * r).sum(-1).unsqueeze(1)).clamp_min_(0.0)  # in place: one block alive


def knn(
    query: torch.Tensor, reference: torch.Tensor, k: int, *, chunk_size: Optional[int] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest reference points of every query point, nearest first.

    Args:
        query: query coordinates.
        reference: reference coordinates.
        k: neighbours per query, at most N.
        chunk_size: queries processed at once (default: as many as keep the distance
            block under 64 MB).

    Shapes:
        query: [B, M, 3], reference: [B, N, 3] -> (squared distances [B, M, K] float32,
        indices [B, M, K] int64)
    """
    B, M, _ = query.shape
    N = reference.shape[1]
    if not 1 <= k <= N:
        raise ValueError(f"k must be in [1, {N}], got {k}")
    q = query.float()
    r = reference.float()
    if chunk_size is None:
        chunk_size = knn_chunk_size(B, N)
    if M <= chunk_size:
        return torch.topk(_squared_dist(q, r), k, dim=-1, largest=False, sorted=True)
    # results written into preallocated outputs: no list of chunks + concatenated copy
    dists = q.new_empty(B, M, k)
    idxs = torch.empty(B, M, k, dtype=torch.long, device=q.device)
    for s in range(0, M, chunk_size):
        d = _squared_dist(q[:, s : s + chunk_size], r)
        dists[:, s : s + chunk_size], idxs[:, s : s + chunk_size] = torch.topk(d, k, dim=-1, largest=False, sorted=True)
        del d
    return dists, idxs


def group_points(points: torch.Tensor, centers: torch.Tensor, group_size: int) -> torch.Tensor:
    """Local patches: the ``group_size`` nearest points of each centre, relative to it.

    Shapes:
        points: [B, N, 3], centers: [B, G, 3] -> neighbourhoods [B, G, K, 3]
    """
    _, idx = knn(centers, points, group_size)
    return gather_points(points, idx) - centers.unsqueeze(2)


def interpolate_features(
    query: torch.Tensor,
    reference: torch.Tensor,
    features: torch.Tensor,
    k: int = 3,
    *,
    eps: float = 1e-8,
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """Inverse-distance-weighted interpolation of ``features`` from reference points onto
    query points (PointNet++ feature propagation), using the ``k`` nearest references:
    weights ``1 / (d^2 + eps)``, normalised; a query that coincides with a reference point
    gets that point's features exactly.

    Shapes:
        query: [B, M, 3], reference: [B, N, 3], features: [B, N, C] -> [B, M, C]
    """
    k = min(k, reference.shape[1])
    B, M, _ = query.shape
    if chunk_size is None:
        # distance block and the gathered [chunk, k, C] features both stay bounded
        chunk_size = max(1, _MAX_DIST_ENTRIES // max(1, B * max(reference.shape[1], k * features.shape[-1])))
    out = features.new_empty(B, M, features.shape[-1])
    ref = reference.float()
    for s in range(0, M, chunk_size):
        q = query[:, s : s + chunk_size].float()
        _, idx = knn(q, ref, k)
        # Exact squared distances of the k picks (the expanded |q|^2 + |r|^2 - 2qr form of
        # knn is off by ~1e-7), and a query on a reference point takes its features exactly.
        d = (gather_points(ref, idx) - q.unsqueeze(2)).square().sum(-1)
        w = 1.0 / (d + eps)
        w = torch.where(d[..., :1] == 0, (torch.arange(k, device=d.device) == 0).to(w.dtype), w)
        w = (w / w.sum(-1, keepdim=True)).to(features.dtype)
        out[:, s : s + chunk_size] = (gather_points(features, idx) * w.unsqueeze(-1)).sum(2)
    return out
