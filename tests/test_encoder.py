"""PointEncoder: shapes for every zoo config, the input contract, invariances, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mv2d3d
from mv2d3d import EncoderConfig, PointEncoder
from mv2d3d.errors import InvalidPointCloudError
from mv2d3d.models import normalize_points

SMALL = EncoderConfig(embed_dim=64, depth=2, num_heads=2, num_points=256, num_groups=16, group_size=16, point_feature_layers=(0, 1))


def _cloud(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    # fresh BatchNorm stats are the identity; real checkpoints are not
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    enc = PointEncoder(SMALL).eval()
    _randomise_bn(enc)
    return enc


@pytest.mark.parametrize("name", mv2d3d.list_models())
def test_zoo_shapes_forward_backward(name):
    enc = mv2d3d.load(name, pretrained=False)
    cfg = enc.config
    assert not enc.training
    n = 2 * cfg.group_size  # few points keep base/large fast: G = min(num_groups, N)
    x = _cloud(2, n, 3)
    G = min(cfg.num_groups, n)
    with torch.no_grad():
        out = enc(x)
        pf = enc.point_features(x)
    assert out.global_features.shape == (2, cfg.global_dim) == (2, 2 * cfg.embed_dim)
    assert out.patch_features.shape == (2, G, cfg.embed_dim)
    assert out.centers.shape == (2, G, 3)
    assert pf.shape == (2, n, cfg.point_feature_dim)
    enc.train()
    out = enc(x)
    (out.global_features.square().mean() + enc.point_features(x).mean()).backward()
    no_grad = [k for k, p in enc.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, no_grad


def test_unbatched_input_gives_unbatched_output(small):
    x = _cloud(300, 3)
    out = small(x)
    assert out.global_features.shape == (128,) and out.patch_features.shape == (16, 64) and out.centers.shape == (16, 3)
    assert small.point_features(x).shape == (300, 128)


@pytest.mark.parametrize("n", [200, 700])  # without and with FPS resampling (num_points 256)
def test_shuffled_points_give_same_features(small, n):
    x = _cloud(n, 3, seed=1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = small(x), small(x[perm])
        pa, pb = small.point_features(x), small.point_features(x[perm])
    torch.testing.assert_close(a.global_features, b.global_features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.patch_features, b.patch_features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.centers, b.centers, atol=1e-6, rtol=0)
    torch.testing.assert_close(pa[perm], pb, atol=1e-5, rtol=1e-5)  # per point follows its point


def test_shuffled_large_cloud_gives_same_features(small):
    # 200k points: resampled by the bucket FPS backend (N * M > 2**27), in canonical order
    x = _cloud(200_000, 3, seed=3)
    perm = torch.randperm(200_000, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a, b = small(x), small(x[perm])
    torch.testing.assert_close(a.global_features, b.global_features, atol=1e-5, rtol=1e-5)


def test_alone_and_in_batch_give_same_features(small):
    x = _cloud(3, 400, 3, seed=5)
    x[1] = x[1] * 5 + 3  # the neighbours in the batch differ in scale and position
    with torch.no_grad():
        batch = small(x)
        alone = small(x[2])
        pf_alone, pf_batch = small.point_features(x[2]), small.point_features(x)[2]
    torch.testing.assert_close(alone.global_features, batch.global_features[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone.patch_features, batch.patch_features[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pf_alone, pf_batch, atol=1e-5, rtol=1e-5)


def test_eval_mode_is_deterministic(small):
    x = _cloud(2, 500, 3, seed=6)
    a, b = small(x), small(x)
    assert torch.equal(a.global_features, b.global_features) and torch.equal(a.patch_features, b.patch_features)


def test_inference_path_equals_autograd_path(small):
    # eval without autograd folds BN and W_local W1 (PatchEmbed._forward_inference); with
    # autograd it runs the layers as they are: same function.
    x = _cloud(2, 300, 3, seed=7)
    with torch.no_grad():
        fast = small(x).global_features
    slow = small(x).global_features
    assert slow.requires_grad
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=1e-5)


def test_normalisation_is_explicit_and_makes_features_pose_scale_free(small):
    x = _cloud(2, 300, 3, seed=8)
    y, c, r = normalize_points(x * 4 + torch.tensor([1.0, -2.0, 3.0]))
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(y.norm(dim=-1).amax(1), torch.ones(2))
    assert c.shape == (2, 1, 3) and r.shape == (2, 1, 1)
    with torch.no_grad():
        a = small(x)
        b = small(x * 4 + torch.tensor([1.0, -2.0, 3.0]))
    torch.testing.assert_close(a.global_features, b.global_features, atol=1e-4, rtol=1e-4)
    # centres come back in the input's own frame
    torch.testing.assert_close(b.centers, a.centers * 4 + torch.tensor([1.0, -2.0, 3.0]), atol=1e-4, rtol=1e-4)
    raw = PointEncoder(EncoderConfig(**{**SMALL.__dict__, "normalize": False})).eval()
    with torch.no_grad():
        assert not torch.allclose(raw(x).global_features, raw(x * 4).global_features, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_input(small, dtype):
    x = _cloud(2, 300, 3, seed=9).to(dtype)
    with torch.no_grad():
        out = small(x)
        ref = small(x.float())  # the same coordinates, already in float32
    assert out.global_features.dtype == torch.float32
    torch.testing.assert_close(out.global_features, ref.global_features, atol=0, rtol=0)
    # numpy input works too
    with torch.no_grad():
        torch.testing.assert_close(small(x.float().numpy()).global_features, ref.global_features, atol=0, rtol=0)


def test_bfloat16_model_runs_end_to_end_and_stays_close(small):
    enc16 = PointEncoder(SMALL).to(torch.bfloat16).eval()
    enc16.load_state_dict(small.state_dict())
    assert enc16.dtype == torch.bfloat16
    x = _cloud(4, 500, 3, seed=10)
    with torch.no_grad():
        a, b = small(x), enc16(x)
        pf = enc16.point_features(x)
    assert b.global_features.dtype == torch.bfloat16 and pf.dtype == torch.bfloat16
    assert b.centers.dtype == torch.float32  # geometry stays in float32
    torch.testing.assert_close(b.centers, a.centers)  # the same patches
    cos = F.cosine_similarity(a.global_features, b.global_features.float(), dim=-1)
    assert float(cos.min()) > 0.999, cos


def test_load_with_dtype(small):
    enc = mv2d3d.load("mv-m3ae-tiny", pretrained=False, dtype=torch.bfloat16)
    assert enc.dtype == torch.bfloat16 and not enc.training
    with torch.no_grad():
        assert enc(_cloud(1, 64, 3)).global_features.shape == (1, 384)


BAD_INPUTS = [
    (torch.tensor([[0.0, 0.0, float("nan")]] * 20), "NaN or Inf"),
    (torch.tensor([[0.0, float("inf"), 0.0]] * 20), "NaN or Inf"),
    (torch.empty(0, 3), "empty"),
    (torch.empty(2, 0, 3), "empty"),
    (torch.rand(10, 3), "at least 16"),
    (torch.rand(30), "shape"),
    (torch.rand(1, 2, 30, 3), "shape"),
    (torch.rand(30, 6), "extra column"),
    (torch.rand(30, 4), "extra column"),
    (torch.rand(30, 2), "3 coordinates"),
    (torch.randint(0, 5, (30, 3)), "dtype"),
    (torch.zeros(30, 3, dtype=torch.bool), "dtype"),
    (np.array([["a", "b", "c"]] * 30), "dtype"),
    ("points.ply", "load_points"),
    ([[0.0, 0.0, 0.0]] * 30, "torch.Tensor or numpy array"),
    (None, "torch.Tensor or numpy array"),
]


@pytest.mark.parametrize("bad,match", BAD_INPUTS, ids=[f"{i}-{m.split()[0]}" for i, (_, m) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_typed_error(small, bad, match):
    with pytest.raises(InvalidPointCloudError, match=match) as e:
        small(bad)
    assert isinstance(e.value, ValueError)  # callers may catch the builtin
    with pytest.raises(InvalidPointCloudError):
        small.point_features(bad)


def test_extra_column_message_says_what_to_do(small):
    with pytest.raises(InvalidPointCloudError) as e:
        small(torch.rand(40, 6))
    msg = str(e.value)
    assert "3 extra column(s)" in msg and "points[..., :3]" in msg


def test_integer_numpy_coordinates_are_rejected(small):
    x = np.random.default_rng(0).integers(-50, 50, size=(200, 3))
    with pytest.raises(InvalidPointCloudError, match="np.float32"):
        small(x)
    with torch.no_grad():
        assert small(x.astype(np.float32)).global_features.shape == (128,)
