"""load_points: every format round-trips; bad files raise PointFileError naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from mv2d3d.data import find_point_files, load_many, load_points, resample_points
from mv2d3d.errors import PointFileError


def _box(extents=(2.0, 1.0, 0.5), offset=(10.0, -3.0, 0.0)) -> trimesh.Trimesh:
    m = trimesh.creation.box(extents=extents)
    m.apply_translation(offset)
    return m


def _on_box_surface(pts: np.ndarray, extents, offset, tol=1e-4) -> np.ndarray:
    """True for points on the surface of the axis-aligned box."""
    q = np.abs(pts - np.asarray(offset)) - np.asarray(extents) / 2
    inside = (q <= tol).all(1)
    on_face = (np.abs(q) <= tol).any(1)
    return inside & on_face


@pytest.mark.parametrize("suffix", [".obj", ".off", ".ply", ".stl", ".glb"])
def test_mesh_formats_round_trip(tmp_path, suffix):
    ext, off = (2.0, 1.0, 0.5), (10.0, -3.0, 0.0)
    f = tmp_path / f"box{suffix}"
    _box(ext, off).export(str(f))
    pts = load_points(f, 512)
    assert pts.shape == (512, 3) and pts.dtype == np.float32
    # units and position are kept (no normalisation), every point is on the surface
    assert _on_box_surface(pts, ext, off, tol=1e-3).all()
    np.testing.assert_allclose(pts.min(0), np.asarray(off) - np.asarray(ext) / 2, atol=0.05)
    np.testing.assert_allclose(pts.max(0), np.asarray(off) + np.asarray(ext) / 2, atol=0.05)
    # seeded: same file, same points; another seed, other points
    np.testing.assert_array_equal(pts, load_points(f, 512))
    assert not np.array_equal(pts, load_points(f, 512, seed=1))


def test_mesh_sampling_is_area_proportional(tmp_path):
    # a 4 x 1 x 1 box: the four long faces hold 16 of its 18 area units
    f = tmp_path / "long.stl"
    _box((4.0, 1.0, 1.0), (0, 0, 0)).export(str(f))
    pts = load_points(f, 4000, sampling="random")
    on_ends = (np.abs(np.abs(pts[:, 0]) - 2.0) < 1e-4).mean()
    assert abs(on_ends - 2 / 18) < 0.03


def test_gltf_scene_merges_meshes_with_transforms(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(extents=(1, 1, 1)), node_name="a")
    t = np.eye(4)
    t[:3, 3] = [0.0, 10.0, 0.0]
    scene.add_geometry(trimesh.creation.box(extents=(1, 1, 1)), node_name="b", transform=t)
    for name in ("scene.glb", "scene.gltf"):
        f = tmp_path / name
        if name.endswith(".gltf"):
            # .gltf is a folder of files; trimesh exports a dict of them
            for fname, data in scene.export(file_type="gltf").items():
                (tmp_path / fname).write_bytes(data)
            f = tmp_path / "model.gltf"
        else:
            scene.export(str(f))
        pts = load_points(f, 1000)
        near_a = (np.abs(pts[:, 1]) <= 0.5 + 1e-4).sum()
        near_b = (np.abs(pts[:, 1] - 10.0) <= 0.5 + 1e-4).sum()
        assert near_a + near_b == 1000 and near_a > 300 and near_b > 300


def test_point_cloud_formats_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(300, 3)).astype(np.float32) * [1.0, 2.0, 3.0] + 5.0
    normals = rng.normal(size=(300, 3)).astype(np.float32)
    files = {
        "c.npy": lambda f: np.save(f, cloud),
        "c.npz": lambda f: np.savez(f, points=cloud, other=np.zeros(3)),
        "single.npz": lambda f: np.savez(f, cloud),
        "c.xyz": lambda f: np.savetxt(f, cloud, fmt="%.7f"),
        "c.txt": lambda f: np.savetxt(f, np.hstack([cloud, normals]), fmt="%.7f", delimiter=","),  # ModelNet style
        "c.csv": lambda f: np.savetxt(f, cloud, fmt="%.7f", delimiter=",", header="x,y,z", comments=""),
        "c.pts": lambda f: np.savetxt(f, cloud, fmt="%.7f", header="300", comments=""),
        "c.ply": lambda f: trimesh.PointCloud(cloud).export(str(f)),
    }
    for name, write in files.items():
        f = tmp_path / name
        write(f)
        pts = load_points(f)
        assert pts.shape == (300, 3), name
        np.testing.assert_allclose(pts, cloud, atol=1e-5, err_msg=name)


def test_cloud_resampling_fps_and_random(tmp_path):
    rng = np.random.default_rng(1)
    cloud = rng.uniform(-1, 1, size=(2000, 3)).astype(np.float32)
    f = tmp_path / "c.npy"
    np.save(f, cloud)
    fps = load_points(f, 128)
    rnd = load_points(f, 128, sampling="random", seed=3)
    assert fps.shape == rnd.shape == (128, 3)
    # every sample is a point of the cloud
    for pts in (fps, rnd):
        assert np.isin(pts.view([("", pts.dtype)] * 3), cloud.view([("", cloud.dtype)] * 3)).all()
    # FPS covers the cube evenly: its smallest pairwise distance beats a random subset's
    def min_dist(p):
        d = np.linalg.norm(p[:, None] - p[None], axis=-1)
        return d[~np.eye(len(p), dtype=bool)].min()

    assert min_dist(fps) > 2 * min_dist(rnd)
    # FPS does not depend on the order of the points in the file
    perm = tmp_path / "perm.npy"
    np.save(perm, cloud[rng.permutation(len(cloud))])
    a, b = load_points(f, 128), load_points(perm, 128)
    assert {tuple(r) for r in a.tolist()} == {tuple(r) for r in b.tolist()}
    # fewer points than asked: padded by repeats, the shape is unchanged
    up = resample_points(cloud[:10], 32)
    assert up.shape == (32, 3) and {tuple(r) for r in up.tolist()} == {tuple(r) for r in cloud[:10].tolist()}


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.obj", b"", "empty"),
        ("empty.xyz", b"", "empty"),
        ("notes.txt", b"hello world\nthis is not a cloud\nat all\n", "not numeric"),
        ("two_cols.csv", b"1,2\n3,4\n", "column"),
        ("broken.ply", b"ply\nformat garbage 9\n\x00\x01\x02", "could not parse"),
        ("nan.xyz", b"0 0 0\n1 nan 1\n2 2 2\n", "NaN"),
        ("flat.xyz", b"1 1 1\n1 1 1\n1 1 1\n", "same position"),
        ("binary.txt", b"\xff\xfe\x00\x81\x82garbage", "not a text file"),
        ("unknown.foo", b"1 2 3\n", "unsupported"),
        ("zero_area.obj", b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "zero total area"),
    ],
)
def test_bad_files_raise_point_file_error(tmp_path, name, content, reason):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(PointFileError) as e:
        load_points(f, 64)
    assert str(f) in str(e.value) and e.value.path == str(f)
    assert reason.lower() in str(e.value).lower()
    assert isinstance(e.value, OSError)


def test_pickled_npy_is_refused(tmp_path):
    f = tmp_path / "obj.npy"
    np.save(f, np.array([{"points": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PointFileError, match="pickle"):
        load_points(f)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(PointFileError, match="no such file"):
        load_points(tmp_path / "nope.obj")
    with pytest.raises(PointFileError, match="folder"):
        load_points(tmp_path)


def test_find_point_files_and_load_many_skip_bad(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(50, 3)))
    _box().export(str(tmp_path / "sub" / "b.obj"))
    (tmp_path / "sub" / "c.xyz").write_text("")  # empty
    (tmp_path / "readme.md").write_text("not data")  # unsupported suffix: not collected from folders
    np.save(tmp_path / ".hidden" / "d.npy", np.zeros((5, 3)))
    files = find_point_files([tmp_path])
    assert [f.name for f in files] == ["a.npy", "b.obj", "c.xyz"]
    rep = load_many(files, 32)
    assert [f.name for f in rep.files] == ["a.npy", "b.obj"]
    assert [(f.name, "empty" in r) for f, r in rep.skipped] == [("c.xyz", True)]
    assert all(p.shape == (32, 3) for p in rep.points)
