"""`mv2d3d extract` on a folder of meshes written here with trimesh (real CLI entry point,
real trimesh reading, random-weight encoder since no weights are published yet)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from mv2d3d.cli import main


@pytest.fixture
def mesh_dir(tmp_path):
    d = tmp_path / "meshes"
    (d / "sub").mkdir(parents=True)
    trimesh.creation.box(extents=(1.0, 2.0, 0.5)).export(d / "box.obj")
    trimesh.creation.icosphere(subdivisions=2, radius=0.7).export(d / "sphere.ply")
    trimesh.creation.cylinder(radius=0.3, height=2.0).export(d / "sub" / "cylinder.obj")
    trimesh.creation.annulus(r_min=0.2, r_max=0.5, height=0.3).export(d / "sub" / "ring.ply")
    (d / "broken.obj").write_text("this is not a mesh\nv 1 2\nf 9 9 9\n")
    return d


def test_extract_writes_npz_with_names_and_skips_bad_file(mesh_dir, tmp_path, capsys):
    out = tmp_path / "out" / "feats.npz"
    code = main(["extract", str(mesh_dir), "--model", "mv-m3ae-tiny", "--no-pretrained", "--out", str(out),
                 "--batch-size", "3", "--device", "cpu", "--num-points", "512"])
    printed = capsys.readouterr()
    assert code == 0, printed
    with np.load(out, allow_pickle=False) as z:
        assert {"features", "files"} <= set(z.files)
        feats, files = z["features"], [str(f) for f in z["files"]]
    names = sorted(p.rsplit("/", 1)[-1] for p in files)
    assert names == ["box.obj", "cylinder.obj", "ring.ply", "sphere.ply"]
    assert feats.shape == (4, 384) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert len({f.tobytes() for f in feats}) == 4  # one distinct vector per shape
    assert "broken.obj" in printed.out + printed.err  # the bad file is reported by name
    assert not [p for p in out.parent.iterdir() if p != out]  # nothing half-written left


def test_extract_with_only_bad_files_fails_without_output(tmp_path, capsys):
    (tmp_path / "a.obj").write_text("garbage\n")
    out = tmp_path / "feats.npz"
    code = main(["extract", str(tmp_path / "a.obj"), "--no-pretrained", "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr()
    assert code != 0 and not out.exists()
    assert "a.obj" in printed.out + printed.err
