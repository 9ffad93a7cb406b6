"""Multi-view depth renderer: silhouettes, depth ordering, view differences, PNG grid."""

from __future__ import annotations

import numpy as np
import torch

from mv2d3d.pretrain.render import DEFAULT_VIEWS, render_depth, save_view_grid, to_teacher_input


def _cube_surface(n_side: int = 40) -> torch.Tensor:
    """Dense points on the six faces of the cube [-0.5, 0.5]^3."""
    t = torch.linspace(-0.5, 0.5, n_side)
    a, b = torch.meshgrid(t, t, indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    h = torch.full_like(a, 0.5)
    faces = [torch.stack(f, 1) for f in ((h, a, b), (-h, a, b), (a, h, b), (a, -h, b), (a, b, h), (a, b, -h))]
    return torch.cat(faces)


def test_cube_front_view_silhouette_is_a_centred_square():
    cube = _cube_surface()[None]
    img = render_depth(cube, [(0.0, 0.0)], 64, margin=0.0, fill_iters=0)[0, 0]  # dense: no filling needed
    assert img.shape == (64, 64)
    fg = img > 0
    # unit-sphere normalisation: cube half-size 0.5 -> 0.5/sqrt(0.75) = 0.577 of the half-image
    half = 0.5 / np.sqrt(0.75) * 32
    rows, cols = torch.nonzero(fg, as_tuple=True)
    for idx in (rows, cols):
        assert abs(idx.min().item() - (32 - half)) <= 1.5 and abs(idx.max().item() - (32 + half - 1)) <= 1.5
    # a solid square: everything inside the bounding box is drawn, nothing outside
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    assert fg[r0 : r1 + 1, c0 : c1 + 1].all()
    assert fg.sum() == (r1 - r0 + 1) * (c1 - c0 + 1)
    # seen face-on, the front face is all at one depth
    inner = img[r0 + 2 : r1 - 1, c0 + 2 : c1 - 1]
    assert torch.allclose(inner, inner.mean().expand_as(inner), atol=1e-5)


def test_nearest_point_wins_and_depth_ordering():
    # two parallel squares at z = +0.5 (near the camera at +z) and z = -0.5 (far); the near
    # one is smaller, so the far one shows around it
    t = torch.linspace(-0.2, 0.2, 30)
    a, b = torch.meshgrid(t, t, indexing="ij")
    near = torch.stack([a.reshape(-1), b.reshape(-1), torch.full((900,), 0.5)], 1)
    t2 = torch.linspace(-0.6, 0.6, 80)
    a2, b2 = torch.meshgrid(t2, t2, indexing="ij")
    far = torch.stack([a2.reshape(-1), b2.reshape(-1), torch.full((6400,), -0.5)], 1)
    # far points listed after the near ones: scatter order must not matter
    img = render_depth(torch.cat([near, far])[None], [(0.0, 0.0)], 64, margin=0.1)[0, 0]
    centre, border = img[32, 32], img[32, 18]
    assert centre > border > 0  # near is brighter than far, far is brighter than background
    img_rev = render_depth(torch.cat([far, near])[None], [(0.0, 0.0)], 64, margin=0.1)[0, 0]
    assert torch.equal(img, img_rev)
    # from behind (azimuth 180) the big far square hides the near one entirely
    back = render_depth(torch.cat([near, far])[None], [(180.0, 0.0)], 64, margin=0.1)[0, 0]
    fg = back[back > 0]
    assert torch.allclose(fg, fg.max().expand_as(fg), atol=1e-4)


def test_views_differ_as_they_should():
    # an L shape: long along +X, short leg along +Y
    x = torch.stack([torch.linspace(0, 1, 400), torch.zeros(400), torch.zeros(400)], 1)
    y = torch.stack([torch.zeros(200), torch.linspace(0, 0.5, 200), torch.zeros(200)], 1)
    pts = torch.cat([x, y])[None]
    imgs = render_depth(pts, [(0.0, 0.0), (90.0, 0.0), (180.0, 0.0), (0.0, 90.0)], 64)[0]
    front, side, back, top = imgs
    # front vs back: mirror images
    assert torch.equal(front > 0, torch.flip(back > 0, dims=[1]))
    assert not torch.equal(front > 0, back > 0)
    # the long arm is wide from the front and collapses to a thin line from the side
    width = lambda im: (im > 0).any(0).sum().item()  # noqa: E731
    assert width(front) > 3 * width(side)
    # from the top the Y leg projects onto a point: fewer lit pixels than from the front
    assert (top > 0).sum() < (front > 0).sum()


def test_batched_vectorised_shapes_and_teacher_input(tmp_path):
    pts = torch.rand(3, 500, 3)
    imgs = render_depth(pts, DEFAULT_VIEWS, 32)
    assert imgs.shape == (3, len(DEFAULT_VIEWS), 32, 32)
    assert float(imgs.min()) >= 0 and float(imgs.max()) <= 1
    # each cloud renders the same alone as in the batch (no leakage between clouds / views)
    assert torch.equal(render_depth(pts[1:2], DEFAULT_VIEWS, 32)[0], imgs[1])
    x = to_teacher_input(imgs, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3 * len(DEFAULT_VIEWS), 3, 32, 32)
    assert torch.allclose(x[4, 0], imgs[0, 4] * 2 - 1)
    out = save_view_grid(imgs, tmp_path / "grid" / "views.png")
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > im.size[1] > 0
    assert not list((tmp_path / "grid").glob("*incomplete*"))


def test_gap_filling_makes_sparse_silhouettes_solid():
    g = torch.Generator().manual_seed(0)
    disc = torch.rand(1500, 2, generator=g) * 2 - 1
    disc = disc[disc.norm(dim=1) < 1]
    pts = torch.cat([disc, torch.zeros(len(disc), 1)], 1)[None]
    raw = render_depth(pts, [(0.0, 0.0)], 64, fill_iters=0, point_size=1)[0, 0]
    filled = render_depth(pts, [(0.0, 0.0)], 64, fill_iters=3, point_size=1)[0, 0]
    splat = render_depth(pts, [(0.0, 0.0)], 64, fill_iters=0)[0, 0]  # automatic point size
    inner = (torch.stack(torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij"), -1) - 31.5).norm(dim=-1) < 18
    assert (raw[inner] > 0).float().mean() < 0.5  # sparse without filling
    assert (filled[inner] > 0).all()  # solid with it
    assert (splat[inner] > 0).float().mean() > 0.95


def test_front_surface_hides_the_back_between_its_points():
    # a sparse near square over a dense far one: with one-pixel points the far one shows
    # through the gaps; splatting at the automatic size hides it
    g = torch.Generator().manual_seed(0)
    near = torch.cat([torch.rand(400, 2, generator=g) - 0.5, torch.full((400, 1), 0.5)], 1)
    far = torch.cat([torch.rand(4000, 2, generator=g) - 0.5, torch.full((4000, 1), -0.5)], 1)
    pts = torch.cat([near, far])[None]
    one = render_depth(pts, [(0.0, 0.0)], 64, fill_iters=0, point_size=1)[0, 0]
    splat = render_depth(pts, [(0.0, 0.0)], 64, fill_iters=1, point_size=5)[0, 0]
    centre = (slice(24, 40), slice(24, 40))
    near_value = one[centre].max()
    assert (one[centre] < near_value - 0.1).float().mean() > 0.3  # see-through without splats
    assert torch.allclose(splat[centre], near_value.expand(16, 16), atol=1e-4)
