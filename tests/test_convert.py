"""``mv2d3d.convert``: Point-MAE-family checkpoints in, reference outputs out.

Checkpoints are built in the exact reference layouts (key names and shapes of Point-MAE's
``Point_MAE`` / ``PointTransformer``, ACT's ``ACT_PointDistillation``, ReCon's ``ReCon``;
random values) and saved the way the reference trainers save them (``tools/builder.py``:
``{"base_model", "optimizer", "epoch", "metrics", "best_metrics"}``, ``module.`` keys under
DataParallel). Outputs are compared with ``tests/reference_point_mae.py``, an independent
re-implementation of the reference forward pass (pointnet2_ops FPS rules, Conv1d
mini-PointNet, attention written out). Small widths keep this fast on a CPU.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mv2d3d
from mv2d3d.errors import CheckpointConversionError
from mv2d3d.models import PointClassifier, PointEncoder
from mv2d3d.models.point_mae import build_model, checkpoint_filter_fn

sys.path.insert(0, str(Path(__file__).parent))
import reference_point_mae as R  # noqa: E402

HEADS, GROUPS, K, NPOINTS = 2, 16, 16, 256
OPTS = dict(num_heads=HEADS, num_groups=GROUPS, num_points=NPOINTS)
TOL = dict(atol=1e-5, rtol=1e-5)

BUILDERS = {
    "point-mae-pretrain": ("point-mae", R.point_mae_pretrain_state_dict),
    "finetune": ("point-mae", R.finetune_state_dict),
    "act-pretrain": ("act", R.act_pretrain_state_dict),
    "recon-pretrain": ("recon", R.recon_pretrain_state_dict),
}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _reference(sd, pts, kind):
    return R.reference_forward(sd, pts, kind=kind, num_heads=HEADS, num_group=GROUPS, group_size=K, npoints=NPOINTS)


def _only(folder: Path):
    return sorted(p.name for p in folder.iterdir())


# -- output for output ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(BUILDERS))
@pytest.mark.parametrize("data_parallel", [False, True], ids=["plain", "module."])
def test_converted_model_reproduces_reference(tmp_path, kind, data_parallel, caplog):
    source, build = BUILDERS[kind]
    sd = build()
    ckpt = tmp_path / "ckpt.pth"
    R.save_reference_checkpoint(sd, ckpt, data_parallel=data_parallel)
    # 300 > num_points: the cloud is FPS-resampled first, as the reference evaluation does;
    # 12 points lie within 0.032 of the origin, where the reference FPS never picks.
    pts = R.cloud(2, 300, seed=7, near_origin=12)
    with caplog.at_level(logging.INFO, logger="mv2d3d"):
        out = mv2d3d.convert(ckpt, tmp_path / "out", source=source, group_size=None if "pretrain" in kind and source != "act" else K, **OPTS)
    ref = _reference(sd, pts, kind)

    enc = mv2d3d.load(out)  # a classifier folder gives its encoder
    assert isinstance(enc, PointEncoder) and not enc.training
    cfg = enc.config
    assert (cfg.fps_start, cfg.normalize, cfg.group_size, cfg.embed_dim, cfg.depth) == ("pointnet2_ops", False, K, 64, 2)
    with torch.no_grad():
        o = enc(pts)
    torch.testing.assert_close(o.centers, ref["center"], **TOL)
    torch.testing.assert_close(o.patch_features, ref["tokens"], **TOL)
    if kind == "finetune":
        clf = PointClassifier.from_pretrained(out)
        assert clf.config.pooling == "cls_max" and clf.config.num_classes == 40 and clf.config.hidden_dims == (256, 256)
        with torch.no_grad():
            torch.testing.assert_close(clf(pts), ref["logits"], **TOL)
    else:
        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert dropped and any("decoder" in m or "teacher" in m for m in dropped), dropped
    card = (Path(out) / "README.md").read_text()
    assert "pointnet2_ops" in card and "ckpt.pth" in card and "library_name: mv2d3d" in card


def test_cloud_of_exactly_num_points_is_resampled_like_the_reference(tmp_path):
    # misc.fps(points, npoints) on a cloud of npoints points still drops near-origin points
    # (the kernel repeats another point instead), so the converted model must resample too.
    sd = R.finetune_state_dict(seed=11)
    pts = R.cloud(2, NPOINTS, seed=3, near_origin=30)
    conv = checkpoint_filter_fn(sd, group_size=K, **OPTS)
    clf = build_model(conv)
    ref = _reference(sd, pts, "finetune")
    with torch.no_grad():
        torch.testing.assert_close(clf(pts), ref["logits"], **TOL)
        # the compatibility setting is what makes it match: plain "start at 0" FPS does not
        plain = PointClassifier(dataclasses.replace(clf.config, encoder=dataclasses.replace(clf.config.encoder, fps_start="first")))
        plain.load_state_dict(clf.state_dict())
        assert (plain.eval()(pts) - ref["logits"]).abs().max() > 1e-3


def test_every_key_is_accounted_for():
    for kind, (source, build) in BUILDERS.items():
        sd = build()
        conv = checkpoint_filter_fn(sd, source=source, group_size=None if kind != "finetune" and source != "act" else K, **OPTS)
        dropped = {k for keys in conv.dropped.values() for k in keys}
        model = build_model(conv)
        own = model.state_dict()
        kept = {("encoder." + k if conv.architecture == "PointClassifier" and not k.startswith("head.") else k) for k in conv.state_dict}
        assert kept == set(own), kind  # every parameter filled
        assert len(conv.state_dict) + len(dropped) == len(sd), kind  # every source tensor used or dropped
        assert not dropped & {k for k in sd if k.endswith("encoder.first_conv.0.weight") and "dvae" not in k}
        if kind == "point-mae-pretrain":
            assert dropped == {k for k in sd if not k.startswith("MAE_encoder.")}
        if kind == "finetune":
            assert not dropped
            torch.testing.assert_close(own["head.8.weight"], sd["cls_head_finetune.8.weight"])
            torch.testing.assert_close(own["encoder.patch_embed.second_conv.3.weight"], sd["encoder.second_conv.3.weight"][..., 0])


def test_settings_not_in_the_checkpoint_are_inferred_or_recorded():
    sd = R.point_mae_pretrain_state_dict(C=128, depth=3, group_size=8)
    conv = checkpoint_filter_fn(sd)
    cfg = conv.config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.group_size, cfg.num_groups, cfg.num_points) == (128, 3, 2, 8, 64, 1024)
    assert "assumed" in conv.settings["num_heads"] and "reconstruction head" in conv.settings["group_size"]
    with pytest.raises(CheckpointConversionError, match="reconstruction head"):
        checkpoint_filter_fn(sd, group_size=32)
    # 15 classes: the ScanObjectNN recipes (128 groups of 2048 points)
    ft = checkpoint_filter_fn(R.finetune_state_dict(num_classes=15), num_heads=2)
    assert (ft.config.encoder.num_groups, ft.config.encoder.num_points, ft.config.num_classes) == (128, 2048, 15)
    # width 96 is not a multiple of 64: heads must be given
    with pytest.raises(CheckpointConversionError, match="num-heads"):
        checkpoint_filter_fn(R.point_mae_pretrain_state_dict(C=96, depth=1))
    # encoder only: the classifier's encoder with its class token, the head dropped
    enc = checkpoint_filter_fn(R.finetune_state_dict(), encoder_only=True, num_heads=2)
    assert enc.architecture == "PointEncoder" and enc.config.use_cls_token
    assert sorted(k for ks in enc.dropped.values() for k in ks)[0].startswith("cls_head_finetune.")
    # a linear probe head (ACT's transfer_type=linear) maps onto hidden_dims=()
    lin = checkpoint_filter_fn(R.finetune_state_dict(hidden=()), source="act", num_heads=2)
    assert lin.config.hidden_dims == () and lin.source == "act"


def test_recon_finetuned_needs_encoder_only_and_matches_the_backbone(tmp_path):
    pre = R.recon_pretrain_state_dict()
    sd = {k[len("MAE_encoder."):]: v for k, v in pre.items() if k.startswith("MAE_encoder.")}
    f = R._Filler(5)
    f.linear(sd, "cls_head_finetune.0.", 15, 4 * 64)  # ReCon's linear head on [cls, img, text, max]
    with pytest.raises(CheckpointConversionError, match="encoder-only"):
        checkpoint_filter_fn(sd, source="recon", **OPTS)
    conv = checkpoint_filter_fn(sd, source="recon", encoder_only=True, group_size=K, **OPTS)
    enc = build_model(conv)
    pts = R.cloud(1, 300, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(enc(pts).patch_features, _reference(pre, pts, "recon-pretrain")["tokens"], **TOL)


# -- refusals: clear error, nothing written ------------------------------------------------
class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write_bad(kind: str, path: Path, tmp_path: Path) -> str:
    sd = R.point_mae_pretrain_state_dict()
    if kind == "missing_key":
        del sd["MAE_encoder.blocks.blocks.1.mlp.fc2.weight"]
        R.save_reference_checkpoint(sd, path)
        return "missing"
    if kind == "wrong_shape":
        sd["MAE_encoder.blocks.blocks.0.mlp.fc1.weight"] = torch.zeros(100, 64)
        R.save_reference_checkpoint(sd, path)
        return "shape"
    if kind == "wrong_conv_shape":
        sd["MAE_encoder.encoder.first_conv.0.weight"] = torch.zeros(128, 3, 3)
        R.save_reference_checkpoint(sd, path)
        return "Conv1d"
    if kind == "unknown_key":
        sd["MAE_encoder.blocks.blocks.0.attn.qkv.bias"] = torch.zeros(192)
        R.save_reference_checkpoint(sd, path)
        return "does not know"
    if kind == "code_in_pickle":
        sd["MAE_encoder.norm.weight"] = _RunsCode(str(tmp_path / "PWNED"))  # type: ignore[assignment]
        torch.save({"base_model": sd, "epoch": 1}, path)
        return "Refused"
    if kind == "text_file":
        path.write_text("model:\n  NAME: Point_MAE\n")
        return "not a readable PyTorch checkpoint"
    if kind == "empty_file":
        path.write_bytes(b"")
        return "not a readable PyTorch checkpoint"
    if kind == "bare_tensor":
        torch.save(torch.zeros(3), path)
        return "not a dict"
    if kind == "other_model":
        torch.save({"model": {"backbone.conv1.weight": torch.zeros(8, 3, 3, 3)}}, path)
        return "No Point-MAE-family layout"
    if kind == "wrong_family":
        R.save_reference_checkpoint(R.act_pretrain_state_dict(), path)
        return "--from act"
    if kind == "nan_weights":
        sd["MAE_encoder.norm.bias"] = torch.full((64,), float("nan"))
        R.save_reference_checkpoint(sd, path)
        return "NaN"
    raise AssertionError(kind)


BAD = ["missing_key", "wrong_shape", "wrong_conv_shape", "unknown_key", "code_in_pickle", "text_file", "empty_file", "bare_tensor", "other_model", "wrong_family", "nan_weights"]


@pytest.mark.parametrize("kind", BAD)
def test_malformed_checkpoints_are_refused_and_nothing_is_written(tmp_path, kind):
    ckpt = tmp_path / "bad.pth"
    match = _write_bad(kind, ckpt, tmp_path)
    before = _only(tmp_path)
    with pytest.raises(CheckpointConversionError, match=match):
        mv2d3d.convert(ckpt, tmp_path / "out", group_size=K, **OPTS)
    assert _only(tmp_path) == before  # no output folder, no temporary leftovers
    assert not (tmp_path / "PWNED").exists()  # the pickle's payload never ran


def test_numpy_scalar_metrics_are_read_without_unpickling_code(tmp_path):
    import numpy as np

    sd = R.point_mae_pretrain_state_dict()
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"base_model": sd, "epoch": np.int64(12), "metrics": {"acc": np.float64(91.25)}}, ckpt)
    out = mv2d3d.convert(ckpt, tmp_path / "out", **OPTS)
    card = (Path(out) / "README.md").read_text()
    assert "acc = 91.25" in card and "epoch: 12" in card


def test_existing_output_folder_is_left_alone(tmp_path):
    ckpt = tmp_path / "ckpt.pth"
    R.save_reference_checkpoint(R.point_mae_pretrain_state_dict(), ckpt)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointConversionError, match="overwrite"):
        mv2d3d.convert(ckpt, out, **OPTS)
    assert _only(out) == ["notes.txt"]
    mv2d3d.convert(ckpt, out, overwrite=True, **OPTS)
    assert _only(out) == ["README.md", "config.json", "model.safetensors", "notes.txt"]


def test_convert_is_callable_after_importing_the_submodule():
    import mv2d3d.convert as module  # rebinds the package attribute to the module

    assert callable(mv2d3d.convert) and callable(module)
    with pytest.raises(CheckpointConversionError, match="not a file"):
        mv2d3d.convert("/nonexistent/ckpt.pth", "/nonexistent/out")


# -- command line --------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "mv2d3d", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_convert(tmp_path):
    ckpt = tmp_path / "pretrain.pth"
    sd = R.point_mae_pretrain_state_dict()
    R.save_reference_checkpoint(sd, ckpt, data_parallel=True)
    out = tmp_path / "point-mae"
    r = _cli("convert", "--from", "point-mae", str(ckpt), "--out", str(out), "--num-heads", "2", "--num-groups", "16", "--num-points", "256")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "mv2d3d.load" in r.stdout
    pts = R.cloud(1, 300, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(mv2d3d.load(out)(pts).patch_features, _reference(sd, pts, "point-mae-pretrain")["tokens"], **TOL)

    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    r = _cli("convert", "--from", "point-mae", str(bad), "--out", str(tmp_path / "bad-out"))
    assert r.returncode == 1 and "error:" in r.stderr and "not a readable PyTorch checkpoint" in r.stderr
    assert not (tmp_path / "bad-out").exists()


def test_converted_folder_pushes_to_the_hub_and_loads_back(tmp_path, hub):
    # the local Hub-compatible server of tests/hub_server.py (conftest `hub` fixture)
    from mv2d3d.hub import push_folder

    sd = R.finetune_state_dict(seed=4)
    ckpt = tmp_path / "modelnet_1k.pth"
    R.save_reference_checkpoint(sd, ckpt, data_parallel=True)
    out = mv2d3d.convert(ckpt, tmp_path / "out", group_size=K, class_names=[f"c{i}" for i in range(40)], **OPTS)
    push_folder(out, "user/point-mae-modelnet40")
    clf = PointClassifier.from_pretrained("user/point-mae-modelnet40")
    assert clf.class_names[:2] == ["c0", "c1"] and clf.config.encoder.fps_start == "pointnet2_ops"
    pts = R.cloud(2, 300, seed=9, near_origin=5)
    with torch.no_grad():
        torch.testing.assert_close(clf(pts), _reference(sd, pts, "finetune")["logits"], **TOL)


@pytest.mark.slow
def test_full_size_point_mae_pretrain_with_all_defaults(tmp_path):
    # The shape of Point-MAE's released pretrain.pth (cfgs/pretrain.yaml: 384 x 12, 6 heads,
    # decoder 4 blocks, 64 groups x 32 points of 1024), converted with no options at all.
    sd = R.point_mae_pretrain_state_dict(C=384, depth=12, group_size=32, decoder_depth=4)
    ckpt = tmp_path / "pretrain.pth"
    R.save_reference_checkpoint(sd, ckpt, data_parallel=True)
    out = mv2d3d.convert(ckpt, tmp_path / "point-mae-pretrain")
    enc = mv2d3d.load(out)
    cfg = enc.config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.num_groups, cfg.group_size, cfg.num_points) == (384, 12, 6, 64, 32, 1024)
    assert sum(v.numel() for k, v in enc.state_dict().items() if not k.endswith("num_batches_tracked")) == sum(v.numel() for k, v in sd.items() if k.startswith("MAE_encoder.") and not k.endswith("num_batches_tracked"))
    pts = R.cloud(1, 1200, seed=4, near_origin=10)
    ref = R.reference_forward(sd, pts, kind="point-mae-pretrain", num_heads=6, num_group=64, group_size=32, npoints=1024)
    with torch.no_grad():
        o = enc(pts)
    torch.testing.assert_close(o.centers, ref["center"], **TOL)
    torch.testing.assert_close(o.patch_features, ref["tokens"], **TOL)
