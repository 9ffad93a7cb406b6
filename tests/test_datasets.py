"""FolderDataset (layouts, splits, bad files, cache, transforms) and the standard readers on
fixture files written in each benchmark's exact on-disk layout."""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import pytest
import torch
import trimesh

from mv2d3d.data import FolderDataset, load_standard
from mv2d3d.data.datasets import PointCloudDataset, stratified_split
from mv2d3d.data.procedural import write_folder
from mv2d3d.data.standard import SCANOBJECTNN_CLASSES, ShapeNet55
from mv2d3d.data.transforms import Compose, Jitter, PointDropout, RotateUp, ScaleTranslate, default_train_transform
from mv2d3d.errors import DatasetError


# -- FolderDataset ------------------------------------------------------------------------------
def test_folder_with_bad_files_is_read_and_bad_ones_reported(tmp_path, caplog):
    write_folder(tmp_path, 5, 128, families=["ring", "chair"])
    trimesh.creation.box().export(str(tmp_path / "chair" / "extra_box.obj"))  # a mesh among clouds
    (tmp_path / "ring" / "corrupt.ply").write_bytes(b"ply\nformat nonsense\n\x00\x13\x37")
    (tmp_path / "ring" / "empty.npy").write_bytes(b"")
    (tmp_path / "chair" / "notes.txt").write_text("measured by Bob\nsee the spreadsheet\n")
    (tmp_path / "chair" / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    with caplog.at_level(logging.WARNING):
        ds = FolderDataset(tmp_path, 64, split="all")
    assert ds.class_names == ["chair", "ring"]
    assert len(ds) == 11 and ds.points.shape == (11, 64, 3)
    bad = sorted(os.path.basename(f) for f, _ in ds.skipped)
    assert bad == ["corrupt.ply", "empty.npy", "notes.txt", "photo.jpg"]
    assert "skipped 4 of 15" in caplog.text
    reasons = dict((os.path.basename(f), r) for f, r in ds.skipped)
    assert "empty" in reasons["empty.npy"] and "unsupported" in reasons["photo.jpg"]
    assert "corrupt.ply" in ds.report()


def test_stratified_split_is_seeded_disjoint_and_stable(tmp_path):
    write_folder(tmp_path, 10, 64, families=["ring", "chair", "mug"], formats=(".npy",))
    tr = FolderDataset(tmp_path, 32, split="train", val_fraction=0.3, seed=4)
    va = FolderDataset(tmp_path, 32, split="val", val_fraction=0.3, seed=4)
    assert tr.class_counts().tolist() == [7, 7, 7] and va.class_counts().tolist() == [3, 3, 3]
    assert not set(tr.files) & set(va.files)
    va2 = FolderDataset(tmp_path, 32, split="val", val_fraction=0.3, seed=5)
    assert set(va2.files) != set(va.files)
    # an unreadable file does not move other files between splits
    before = set(va.files)
    victim = sorted(tr.files)[0]
    with open(victim, "wb") as fh:
        fh.write(b"")
    va3 = FolderDataset(tmp_path, 32, split="val", val_fraction=0.3, seed=4)
    assert set(va3.files) == before
    # classes with one file go to train
    items = [("a", 0), ("b", 1), ("c", 1)]
    t, v = stratified_split([(__import__("pathlib").Path(n), y) for n, y in items], 0.5, 0)
    assert [y for _, y in v] == [1] and sorted(y for _, y in t) == [0, 1]


def test_train_test_subfolders(tmp_path):
    write_folder(tmp_path, 6, 64, families=["ring", "bottle"], test_per_family=3, formats=(".xyz", ".ply"))
    test = FolderDataset(tmp_path, 32, split="test")
    assert test.class_counts().tolist() == [3, 3] and all("/test/" in f for f in test.files)
    train = FolderDataset(tmp_path, 32, split="train", val_fraction=0.25)
    val = FolderDataset(tmp_path, 32, split="val", val_fraction=0.25)
    # validation is carved out of train/, never out of test/
    assert all("/train/" in f for f in train.files + val.files)
    assert len(train) + len(val) == 12 and not set(train.files) & set(val.files)
    with pytest.raises(DatasetError, match="no test split"):
        write_folder(tmp_path / "flat", 2, 32, families=["ring", "mug"])
        FolderDataset(tmp_path / "flat", 32, split="test")


def test_cache_avoids_rereading_and_notices_edits(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_folder(data, 3, 256, families=["ring", "tree"], formats=(".ply", ".npy"))
    first = FolderDataset(data, 64, split="all", cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 6 and not list(cache.glob(".*"))
    import mv2d3d.data.datasets as dsmod

    calls = []
    real = dsmod.load_points
    monkeypatch.setattr(dsmod, "load_points", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    again = FolderDataset(data, 64, split="all", cache_dir=cache)
    assert calls == [] and np.array_equal(first.points, again.points)
    # an edited file is re-read (key: path + mtime + size + sampling)
    f = data / "ring" / "ring_0000.ply"
    trimesh.PointCloud(np.random.default_rng(0).normal(size=(300, 3))).export(str(f))
    FolderDataset(data, 64, split="all", cache_dir=cache)
    assert [str(c) for c in calls] == [str(f)]
    # another num_points is another entry
    FolderDataset(data, 32, split="all", cache_dir=cache)
    assert len(calls) == 7


@pytest.mark.parametrize(
    "setup,match",
    [
        (lambda p: None, "does not exist"),
        (lambda p: (p.mkdir(), (p / "only").mkdir(), np.save(p / "only" / "a.npy", np.ones((9, 3))))[0], "only one class"),
        (lambda p: (p.mkdir(), np.save(p / "a.npy", np.ones((9, 3))))[0], "no class subfolders"),
        (lambda p: p.write_text("x"), "is a file"),
        (lambda p: (p.mkdir(), (p / "a").mkdir(), (p / "b").mkdir(), (p / "a" / "x.txt").write_text("no"))[0], "no readable files"),
    ],
)
def test_bad_folders_raise_dataset_error(tmp_path, setup, match):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DatasetError, match=match):
        FolderDataset(root, 32, split="all")


def test_transforms_are_seeded_and_do_what_they_say():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3)).astype(np.float32)
    r = RotateUp("y")(pts, np.random.default_rng(1))
    np.testing.assert_allclose(r[:, 1], pts[:, 1])  # up coordinate untouched
    np.testing.assert_allclose(np.linalg.norm(r[:, [0, 2]], axis=1), np.linalg.norm(pts[:, [0, 2]], axis=1), rtol=1e-5)
    st = ScaleTranslate((0.5, 0.5), 0.0)(pts, rng)
    np.testing.assert_allclose(st, pts * 0.5, rtol=1e-6)
    j = Jitter(0.01, 0.02)(pts, rng)
    assert 0 < np.abs(j - pts).max() <= 0.02 + 1e-6
    d = PointDropout(0.8)(pts, np.random.default_rng(3))
    dropped = (d == pts[0]).all(1)
    assert d.shape == pts.shape and 0 < dropped.sum() < 500 * 0.8 + 50
    full = default_train_transform("full")
    a, b = full(pts.copy(), np.random.default_rng(7)), full(pts.copy(), np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    # dataset items: same (seed, epoch, index) -> same augmentation, other epoch -> other draw
    ds = PointCloudDataset(pts[None].repeat(2, 0), np.array([0, 1]), ["a", "b"], transform=Compose([RotateUp(), Jitter()]), seed=1)
    x0, y0 = ds[0]
    assert isinstance(x0, torch.Tensor) and x0.dtype == torch.float32 and y0 == 0
    assert torch.equal(x0, ds[0][0]) and not torch.equal(x0, ds[1][0])
    ds.set_epoch(1)
    assert not torch.equal(x0, ds[0][0])


# -- standard benchmarks, fixtures in the published layouts ------------------------------------
def _mn40_normal(root, classes=("airplane", "bathtub", "bed")):
    base = root / "modelnet40_normal_resampled"
    base.mkdir(parents=True)
    (base / "modelnet40_shape_names.txt").write_text("\n".join(classes) + "\n")
    rng = np.random.default_rng(0)
    split = {"train": [], "test": []}
    truth = {}
    for c in classes:
        (base / c).mkdir()
        for i in range(1, 4):
            name = f"{c}_{i:04d}"
            pts = rng.normal(size=(200, 3)).astype(np.float32)
            nrm = pts / np.linalg.norm(pts, axis=1, keepdims=True)
            np.savetxt(base / c / f"{name}.txt", np.hstack([pts, nrm]), fmt="%.6f", delimiter=",")
            split["train" if i < 3 else "test"].append(name)
            truth[name] = pts
    for s, names in split.items():
        (base / f"modelnet40_{s}.txt").write_text("\n".join(names) + "\n")
    return base, truth


def test_modelnet40_normal_resampled(tmp_path):
    base, truth = _mn40_normal(tmp_path)
    tr = load_standard("modelnet40", tmp_path, "train", num_points=64)  # parent folder works too
    te = load_standard("modelnet40", base, "test", num_points=64, sampling="first")
    assert tr.class_names == ["airplane", "bathtub", "bed"]
    assert len(tr) == 6 and len(te) == 3 and tr.points.shape == (6, 64, 3)
    assert tr.labels.tolist() == [0, 0, 1, 1, 2, 2] and te.labels.tolist() == [0, 1, 2]
    np.testing.assert_allclose(te.points[1], truth["bathtub_0003"][:64], atol=1e-5)
    fps = tr.points[0]
    dist = np.linalg.norm(fps[:, None] - truth["airplane_0001"][None], axis=-1).min(1)
    assert dist.max() < 1e-5  # FPS picks points of the file
    (base / "bed" / "bed_0001.txt").unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_standard("modelnet40", base, "train", num_points=64)


def _write_h5(path, data, label):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("data", data=data)
        h5.create_dataset("label", data=label)


def test_modelnet40_hdf5_2048(tmp_path):
    base = tmp_path / "modelnet40_ply_hdf5_2048"
    rng = np.random.default_rng(0)
    names = [f"class{i}" for i in range(40)]
    base.mkdir()
    (base / "shape_names.txt").write_text("\n".join(names) + "\n")
    parts = {}
    for s, k in (("train", 2), ("test", 1)):
        files = []
        for j in range(k):
            d = rng.normal(size=(5, 2048, 3)).astype(np.float32)
            y = rng.integers(0, 40, size=(5, 1)).astype(np.uint8)
            _write_h5(base / f"ply_data_{s}{j}.h5", d, y)
            parts.setdefault(s, []).append((d, y))
            files.append(f"data/modelnet40_ply_hdf5_2048/ply_data_{s}{j}.h5")  # as distributed
        (base / f"{s}_files.txt").write_text("\n".join(files) + "\n")
    tr = load_standard("modelnet40-h5", tmp_path, "train")
    assert len(tr) == 10 and tr.points.shape == (10, 1024, 3) and tr.num_classes == 40
    d = np.concatenate([p[0] for p in parts["train"]])
    np.testing.assert_array_equal(tr.points, d[:, :1024])  # PointNet: the first 1024 points
    np.testing.assert_array_equal(tr.labels, np.concatenate([p[1] for p in parts["train"]]).reshape(-1))
    te = load_standard("modelnet40-h5", base, "test", num_points=2048)
    np.testing.assert_array_equal(te.points, parts["test"][0][0])


@pytest.mark.parametrize(
    "name,folder,fname",
    [
        ("scanobjectnn-objbg", "main_split", "{s}_objectdataset.h5"),
        ("scanobjectnn-objonly", "main_split_nobg", "{s}_objectdataset.h5"),
        ("scanobjectnn-hardest", "main_split", "{s}_objectdataset_augmentedrot_scale75.h5"),
    ],
)
def test_scanobjectnn_variants(tmp_path, name, folder, fname):
    h5 = tmp_path / "h5_files"
    rng = np.random.default_rng(hash(name) % 2**32)
    written = {}
    # all three variants side by side, as in the download: each reader must pick its own file
    for f2, n2 in (("main_split", "{s}_objectdataset.h5"), ("main_split_nobg", "{s}_objectdataset.h5"),
                   ("main_split", "{s}_objectdataset_augmentedrot_scale75.h5")):
        for s in ("training", "test"):
            d = rng.normal(size=(4, 2048, 3)).astype(np.float32)
            y = rng.integers(0, 15, size=4).astype(np.int64)
            _write_h5(h5 / f2 / n2.format(s=s), d, y)
            written[(f2, n2, s)] = (d, y)
    tr = load_standard(name, tmp_path, "train")  # parent of h5_files
    te = load_standard(name, h5, "test", num_points=512, sampling="random")
    d, y = written[(folder, fname, "training")]
    np.testing.assert_array_equal(tr.points, d)
    np.testing.assert_array_equal(tr.labels, y)
    assert tr.class_names == list(SCANOBJECTNN_CLASSES) and len(SCANOBJECTNN_CLASSES) == 15
    assert te.points.shape == (4, 512, 3)
    np.testing.assert_array_equal(te.labels, written[(folder, fname, "test")][1])


def test_shapenet55(tmp_path):
    base = tmp_path / "ShapeNet55-34"
    (base / "shapenet_pc").mkdir(parents=True)
    (base / "ShapeNet-55").mkdir()
    rng = np.random.default_rng(0)
    names = {"train": [], "test": []}
    for syn in ("02691156", "03001627", "04379243"):
        for i in range(3):
            n = f"{syn}-{i:032x}.npy"
            np.save(base / "shapenet_pc" / n, rng.normal(size=(8192, 3)).astype(np.float32))
            names["train" if i < 2 else "test"].append(n)
    for s, ns in names.items():
        (base / "ShapeNet-55" / f"{s}.txt").write_text("\n".join(ns) + "\n")
    ds = ShapeNet55(tmp_path, "train", num_points=256)
    assert len(ds) == 6 and ds.class_names == ["02691156", "03001627", "04379243"]
    x, y = ds[2]
    assert x.shape == (256, 3) and y == 1
    full = np.load(base / "shapenet_pc" / names["train"][2])
    assert {tuple(r) for r in x.numpy().tolist()} <= {tuple(r) for r in full.tolist()}
    assert torch.equal(ds[2][0], x)
    ds.set_epoch(1)
    assert not torch.equal(ds[2][0], x)  # a new random subset each epoch
    te = load_standard("shapenet55", base, "test", num_points=128)
    assert len(te) == 3 and te[0][0].shape == (128, 3)


def test_standard_errors(tmp_path):
    with pytest.raises(DatasetError, match="Unknown data set"):
        load_standard("modelnet41", tmp_path)
    with pytest.raises(DatasetError, match="modelnet40_shape_names.txt"):
        load_standard("modelnet40", tmp_path, "train")
    with pytest.raises(DatasetError, match="main_split"):
        load_standard("scanobjectnn-hardest", tmp_path, "train")
    with pytest.raises(DatasetError, match="'train' and 'test'"):
        load_standard("modelnet40-h5", tmp_path, "val")
    bad = tmp_path / "h5_files" / "main_split" / "training_objectdataset.h5"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="HDF5"):
        load_standard("scanobjectnn-objbg", tmp_path, "train")
