"""mv2d3d.ops: farthest point sampling, kNN, grouping, interpolation — against brute-force
references written here, on every backend, including the chunked paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mv2d3d.ops import farthest_point_sample, fps_start_index, gather_points, group_points, interpolate_features, knn
from mv2d3d.ops import neighbors as neighbors_mod


def _cloud(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def brute_fps(points: np.ndarray, m: int, start: int) -> list:
    """Textbook FPS in float64: each pick maximises the distance to the picks so far."""
    picks = [start]
    d = np.full(len(points), np.inf)
    for _ in range(m - 1):
        d = np.minimum(d, ((points - points[picks[-1]]) ** 2).sum(-1))
        picks.append(int(np.argmax(d)))
    return picks


def covering_radius(points: torch.Tensor, idx: torch.Tensor) -> float:
    return float(torch.cdist(points, points[idx]).min(dim=1).values.max())


@pytest.mark.parametrize("backend", ["torch", "fpsample"])
def test_fps_matches_brute_force(backend):
    pts = _cloud(2, 300, 3)
    got = farthest_point_sample(pts, 40, start="first", backend=backend)
    assert got.dtype == torch.long and got.shape == (2, 40)
    for b in range(2):
        assert got[b].tolist() == brute_fps(pts[b].double().numpy(), 40, 0)


def test_fps_start_is_order_independent():
    pts = _cloud(1, 500, 3)
    perm = torch.randperm(500, generator=torch.Generator().manual_seed(1))
    s, sp = fps_start_index(pts), fps_start_index(pts[:, perm])
    # the same point, wherever it sits in the array
    torch.testing.assert_close(pts[0, s[0]], pts[0, perm][sp[0]], rtol=0, atol=0)
    assert fps_start_index(pts, "first").tolist() == [0]
    with pytest.raises(ValueError, match="start mode"):
        fps_start_index(pts, "random")


@pytest.mark.parametrize("backend", ["torch", "fpsample", "bucket"])
def test_fps_permuted_cloud_gives_same_points(backend):
    n = 5000 if backend == "bucket" else 800
    pts = _cloud(1, n, 3, seed=2)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    a = gather_points(pts, farthest_point_sample(pts, 64, backend=backend))
    b = gather_points(pts[:, perm], farthest_point_sample(pts[:, perm], 64, backend=backend))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fpsample_backend_equals_torch_backend():
    pts = _cloud(3, 4000, 3, seed=4) * torch.tensor([3.0, 1.0, 0.5])  # anisotropic, 3 clouds
    a = farthest_point_sample(pts, 256, backend="torch")
    b = farthest_point_sample(pts, 256, backend="fpsample")
    assert torch.equal(a, b)


def test_bucket_fps_is_a_valid_fps_of_the_same_quality():
    # QuickFPS is not pick-for-pick identical to the exact loop (measured), but it starts at
    # the same point, never repeats a point, and covers the cloud as well.
    pts = _cloud(1, 20000, 3, seed=5)
    exact = farthest_point_sample(pts, 512, backend="fpsample")[0]
    bucket = farthest_point_sample(pts, 512, backend="bucket")[0]
    assert bucket.unique().numel() == 512
    assert int(fps_start_index(pts)[0]) in bucket.tolist()
    r_exact, r_bucket = covering_radius(pts[0], exact), covering_radius(pts[0], bucket)
    assert r_bucket <= 1.05 * r_exact, (r_bucket, r_exact)
    # and far better than picking at random
    rand = torch.randperm(20000, generator=torch.Generator().manual_seed(0))[:512]
    assert r_bucket < 0.8 * covering_radius(pts[0], rand)


def test_fps_auto_backend_picks_bucket_only_for_large_work(monkeypatch):
    from mv2d3d.ops import sampling

    calls = []
    real = sampling._fps_fpsample
    monkeypatch.setattr(sampling, "_fps_fpsample", lambda *a, bucket: calls.append(bucket) or real(*a, bucket=bucket))
    farthest_point_sample(_cloud(1, 2000, 3), 64)
    farthest_point_sample(_cloud(1, 300_000, 3), 512)  # 1.5e8 > 2**27 distance updates
    assert calls == [False, True]


def test_fps_rejects_bad_arguments():
    pts = _cloud(1, 10, 3)
    with pytest.raises(ValueError, match="num_samples"):
        farthest_point_sample(pts, 11)
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        farthest_point_sample(pts[0], 5)
    with pytest.raises(ValueError, match="unknown FPS backend"):
        farthest_point_sample(pts, 5, backend="cuda-magic")


def brute_knn(q: torch.Tensor, r: torch.Tensor, k: int):
    d = ((q[:, :, None, :].double() - r[:, None, :, :].double()) ** 2).sum(-1)
    dv, di = d.sort(dim=-1)
    return dv[..., :k], di[..., :k]


@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_knn_matches_brute_force(chunk_size):
    q, r = _cloud(2, 50, 3, seed=6), _cloud(2, 400, 3, seed=7)
    d, i = knn(q, r, 8, chunk_size=chunk_size)
    bd, bi = brute_knn(q, r, 8)
    assert d.shape == i.shape == (2, 50, 8)
    assert torch.equal(i, bi)
    torch.testing.assert_close(d.double(), bd, atol=1e-6, rtol=0)
    assert bool((d[..., 1:] >= d[..., :-1]).all())  # nearest first


def test_knn_memory_is_bounded_by_chunking(monkeypatch):
    # No O(M * N) distance matrix: with a budget of 5,000 entries, every distance block that
    # is formed stays within it, and the result equals the unchunked one.
    q, r = _cloud(1, 300, 3, seed=8), _cloud(1, 1000, 3, seed=9)
    full = knn(q, r, 4)
    blocks = []
    real = neighbors_mod._squared_dist
    monkeypatch.setattr(neighbors_mod, "_MAX_DIST_ENTRIES", 5000)
    monkeypatch.setattr(neighbors_mod, "_squared_dist", lambda a, b: blocks.append(a.shape[1] * b.shape[1]) or real(a, b))
    chunked = knn(q, r, 4, chunk_size=neighbors_mod.knn_chunk_size(1, 1000, 5000))
    assert max(blocks) <= 5000 and len(blocks) == 60
    assert torch.equal(full[1], chunked[1])
    # the default budget for a 1M-point reference: at most 2**24 entries (64 MB) per block
    assert neighbors_mod.knn_chunk_size(1, 1_000_000) * 1_000_000 <= 1 << 24
    assert neighbors_mod.knn_chunk_size(4, 10**9) == 1  # always makes progress


def test_knn_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        knn(_cloud(1, 5, 3), _cloud(1, 4, 3), 5)


def test_group_points_are_relative_to_their_centre():
    pts = _cloud(2, 200, 3, seed=10)
    centers = gather_points(pts, farthest_point_sample(pts, 16))
    nb = group_points(pts, centers, 8)
    assert nb.shape == (2, 16, 8, 3)
    # each centre is a cloud point, so its own offset (the nearest) is zero
    torch.testing.assert_close(nb[:, :, 0], torch.zeros(2, 16, 3), atol=1e-6, rtol=0)
    _, bi = brute_knn(centers, pts, 8)
    torch.testing.assert_close(nb, gather_points(pts, bi) - centers[:, :, None], atol=1e-6, rtol=0)


def test_interpolation_is_exact_at_reference_points_and_chunks_agree():
    ref = _cloud(2, 64, 3, seed=11)
    feats = torch.randn(2, 64, 5, generator=torch.Generator().manual_seed(12))
    torch.testing.assert_close(interpolate_features(ref, ref, feats), feats, atol=1e-5, rtol=0)
    q = _cloud(2, 300, 3, seed=13)
    a = interpolate_features(q, ref, feats, k=3)
    b = interpolate_features(q, ref, feats, k=3, chunk_size=17)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # inverse-distance weights sum to one: constant features stay constant
    const = torch.full((2, 64, 1), 2.5)
    torch.testing.assert_close(interpolate_features(q, ref, const), torch.full((2, 300, 1), 2.5))
    # a brute-force reference of the PointNet++ rule
    d, i = brute_knn(q, ref, 3)
    w = 1.0 / (d + 1e-8)
    w = w / w.sum(-1, keepdim=True)
    expect = (gather_points(feats.double(), i) * w[..., None]).sum(2)
    torch.testing.assert_close(a.double(), expect, atol=1e-5, rtol=1e-5)


def test_gather_points_shapes():
    pts = torch.arange(24.0).reshape(2, 4, 3)
    idx = torch.tensor([[3, 0], [1, 1]])
    assert gather_points(pts, idx).tolist() == [[pts[0, 3].tolist(), pts[0, 0].tolist()], [pts[1, 1].tolist()] * 2]
    assert gather_points(pts, idx[:, :, None].expand(2, 2, 3)).shape == (2, 2, 3, 3)


def test_canonical_order_handles_key_ties():
    from mv2d3d.ops.sampling import _KEY_DIRECTION, _canonical_order

    # points on one plane orthogonal to the key direction share a key: lexicographic fallback
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, -_KEY_DIRECTION[1] / _KEY_DIRECTION[2]])
    pts = np.stack([a * i + b * j for i in range(5) for j in range(5)]).astype(np.float64)
    perm = np.random.default_rng(0).permutation(len(pts))
    np.testing.assert_array_equal(pts[_canonical_order(pts)], pts[perm][_canonical_order(pts[perm])])
