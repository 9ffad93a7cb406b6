"""Procedural shapes: seeded, unlimited, labelled point clouds made of primitives.

Each *family* (``table``, ``chair``, ``mug``, ...) composes primitives (box, ellipsoid,
cylinder, cone, torus) with random proportions, then applies a random deformation (taper,
bend, twist), an anisotropic scale and a rotation about the up axis (+Y). Points are sampled
on the surface in proportion to area. Nothing is downloaded: pretraining, tests and examples
run anywhere.

Shapes:
    N: points per cloud.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

Part = Tuple[str, np.ndarray, np.ndarray]  # (primitive, size params, centre)


# -- primitive surface samplers: (n, params, rng) -> [n, 3], centred at the origin ------------
def _box(n: int, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a, b, c = s[:3]
    areas = np.array([b * c, b * c, a * c, a * c, a * b, a * b])
    face = rng.choice(6, size=n, p=areas / areas.sum())
    p = rng.uniform(-0.5, 0.5, size=(n, 3))
    axis = face // 2
    p[np.arange(n), axis] = np.where(face % 2 == 0, -0.5, 0.5)
    return p * s[:3]


def _ellipsoid(n: int, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
    return v * s[:3] / 2


def _cylinder(n: int, s: np.ndarray, rng: np.random.Generator, top_scale: float = 1.0) -> np.ndarray:
    # axis along Y; s = (diameter_x, height, diameter_z); top_scale < 1 makes a frustum/cone
    r_side = (1 + top_scale) / 2
    a_side, a_bot, a_top = np.pi * r_side * 2, np.pi * 0.25, np.pi * 0.25 * top_scale**2
    areas = np.array([a_side, a_bot, a_top])
    which = rng.choice(3, size=n, p=areas / areas.sum())
    t = rng.uniform(0, 2 * np.pi, n)
    y = rng.uniform(-0.5, 0.5, n)
    r = np.where(which == 0, 0.5 * (1 + (top_scale - 1) * (y + 0.5)), 0.5 * np.sqrt(rng.uniform(0, 1, n)))
    r = np.where(which == 2, r * top_scale, r)
    y = np.where(which == 1, -0.5, np.where(which == 2, 0.5, y))
    return np.stack([r * np.cos(t), y, r * np.sin(t)], 1) * s[:3]


def _cone(n: int, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _cylinder(n, s, rng, top_scale=0.02)


def _torus(n: int, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # s = (major radius, minor radius, unused); ring in the XY plane
    R, r = s[0], s[1]
    u = rng.uniform(0, 2 * np.pi, n)
    # rejection-free area weighting: accept v with prob (R + r cos v) / (R + r)
    v = rng.uniform(0, 2 * np.pi, 4 * n)
    keep = rng.uniform(0, 1, 4 * n) < (R + r * np.cos(v)) / (R + r)
    v = np.resize(v[keep], n)
    return np.stack([(R + r * np.cos(v)) * np.cos(u), (R + r * np.cos(v)) * np.sin(u), r * np.sin(v)], 1)


_PRIMITIVES: Dict[str, Callable[..., np.ndarray]] = {
    "box": _box, "ellipsoid": _ellipsoid, "cylinder": _cylinder, "cone": _cone, "torus": _torus,
}


def _area(kind: str, s: np.ndarray) -> float:
    a, b, c = (list(s) + [0, 0, 0])[:3]
    if kind == "box":
        return 2 * (a * b + b * c + a * c)
    if kind == "ellipsoid":
        p = 1.6
        return 4 * np.pi * (((a * b / 4) ** p + (a * c / 4) ** p + (b * c / 4) ** p) / 3) ** (1 / p)
    if kind in ("cylinder", "cone"):
        return np.pi * (a + c) / 2 * b + np.pi * a * c / 4 * 2
    if kind == "torus":
        return 4 * np.pi**2 * a * b
    raise KeyError(kind)


# -- families: rng -> list of parts ---------------------------------------------------------
def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _P(kind: str, size: Sequence[float], center: Sequence[float]) -> Part:
    return kind, np.asarray(size, float), np.asarray(center, float)


def _table(rng):
    w, d, h, t, leg = _u(rng, 1.2, 2.0), _u(rng, 0.7, 1.2), _u(rng, 0.6, 1.0), _u(rng, 0.05, 0.12), _u(rng, 0.06, 0.14)
    parts = [_P("box", (w, t, d), (0, h, 0))]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(_P("cylinder" if rng.random() < 0.5 else "box", (leg, h, leg), (sx * (w / 2 - leg), h / 2, sz * (d / 2 - leg))))
    return parts


def _chair(rng):
    w, h, t, leg, back = _u(rng, 0.7, 1.0), _u(rng, 0.6, 0.8), _u(rng, 0.06, 0.12), _u(rng, 0.05, 0.1), _u(rng, 0.6, 1.1)
    parts = [_P("box", (w, t, w), (0, h, 0)), _P("box", (w, back, t), (0, h + back / 2, -w / 2 + t / 2))]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(_P("box", (leg, h, leg), (sx * (w / 2 - leg), h / 2, sz * (w / 2 - leg))))
    return parts


def _lamp(rng):
    h, base, shade = _u(rng, 1.0, 1.8), _u(rng, 0.4, 0.7), _u(rng, 0.5, 0.9)
    return [
        _P("cylinder", (base, 0.08, base), (0, 0.04, 0)),
        _P("cylinder", (0.06, h, 0.06), (0, h / 2, 0)),
        _P("cylinder", (shade, shade * _u(rng, 0.5, 0.9), shade), (0, h, 0)),
    ]


def _mug(rng):
    r, h = _u(rng, 0.5, 0.8), _u(rng, 0.7, 1.2)
    return [_P("cylinder", (r, h, r), (0, h / 2, 0)), _P("torus", (h * 0.25, 0.05, 0), (r / 2 + h * 0.18, h / 2, 0))]


def _bottle(rng):
    r, h, neck = _u(rng, 0.4, 0.6), _u(rng, 1.0, 1.5), _u(rng, 0.3, 0.6)
    return [
        _P("cylinder", (r, h, r), (0, h / 2, 0)),
        _P("cone", (r, r * 0.6, r), (0, h + r * 0.3, 0)),
        _P("cylinder", (r * 0.35, neck, r * 0.35), (0, h + r * 0.45 + neck / 2, 0)),
    ]


def _snowman(rng):
    a, b, c = _u(rng, 0.8, 1.1), _u(rng, 0.55, 0.8), _u(rng, 0.35, 0.55)
    return [_P("ellipsoid", (a, a, a), (0, a / 2, 0)), _P("ellipsoid", (b, b, b), (0, a + b / 2 - 0.1, 0)), _P("ellipsoid", (c, c, c), (0, a + b + c / 2 - 0.2, 0))]


def _dumbbell(rng):
    L, r, bar = _u(rng, 1.2, 2.0), _u(rng, 0.4, 0.7), _u(rng, 0.08, 0.15)
    k = "ellipsoid" if rng.random() < 0.5 else "box"
    return [_P("cylinder", (bar, L, bar), (0, 0, 0)), _P(k, (r, r * 0.6, r), (0, L / 2, 0)), _P(k, (r, r * 0.6, r), (0, -L / 2, 0))]


def _tree(rng):
    h, crown = _u(rng, 0.6, 1.0), _u(rng, 0.8, 1.4)
    kind = "cone" if rng.random() < 0.5 else "ellipsoid"
    return [_P("cylinder", (0.15, h, 0.15), (0, h / 2, 0)), _P(kind, (crown, crown * _u(rng, 1.0, 1.6), crown), (0, h + crown * 0.5, 0))]


def _airplane(rng):
    L, span, r = _u(rng, 1.8, 2.4), _u(rng, 1.6, 2.4), _u(rng, 0.2, 0.3)
    return [
        _P("ellipsoid", (r, r, L), (0, 0, 0)),
        _P("box", (span, 0.04, _u(rng, 0.3, 0.5)), (0, 0, _u(rng, -0.1, 0.2))),
        _P("box", (span * 0.4, 0.04, 0.2), (0, 0, -L / 2 + 0.15)),
        _P("box", (0.04, _u(rng, 0.3, 0.5), 0.25), (0, 0.2, -L / 2 + 0.15)),
    ]


def _tower(rng):
    n = int(rng.integers(3, 6))
    parts, y, w = [], 0.0, _u(rng, 0.8, 1.2)
    for _ in range(n):
        h = _u(rng, 0.3, 0.5)
        parts.append(_P("box", (w, h, w), (0, y + h / 2, 0)))
        y += h
        w *= _u(rng, 0.65, 0.85)
    return parts


def _ring(rng):
    R = _u(rng, 0.7, 1.0)
    return [_P("torus", (R, R * _u(rng, 0.15, 0.35), 0), (0, 0, 0))]


def _bed(rng):
    w, L, h = _u(rng, 1.0, 1.4), _u(rng, 1.8, 2.2), _u(rng, 0.3, 0.45)
    return [_P("box", (w, h, L), (0, h / 2, 0)), _P("box", (w, _u(rng, 0.5, 0.8), 0.08), (0, h + 0.2, -L / 2)), _P("box", (w * 0.8, 0.1, 0.35), (0, h + 0.05, -L / 2 + 0.3))]


def _sofa(rng):
    w, d, h = _u(rng, 1.6, 2.2), _u(rng, 0.7, 0.9), _u(rng, 0.35, 0.45)
    arm = _u(rng, 0.15, 0.25)
    return [
        _P("box", (w, h, d), (0, h / 2, 0)),
        _P("box", (w, h * 1.2, 0.2), (0, h * 1.6, -d / 2 + 0.1)),
        _P("box", (arm, h * 0.8, d), (-w / 2 + arm / 2, h * 1.4, 0)),
        _P("box", (arm, h * 0.8, d), (w / 2 - arm / 2, h * 1.4, 0)),
    ]


def _mushroom(rng):
    h, cap = _u(rng, 0.6, 1.0), _u(rng, 1.0, 1.5)
    return [_P("cylinder", (0.2, h, 0.2), (0, h / 2, 0)), _P("ellipsoid", (cap, cap * 0.45, cap), (0, h, 0))]


def _bowl(rng):
    r = _u(rng, 1.0, 1.4)
    return [_P("cylinder", (r, r * 0.4, r), (0, 0.2, 0)), _P("cylinder", (r * 0.5, 0.06, r * 0.5), (0, -0.03, 0)), _P("torus", (r / 2, 0.04, 0), (0, r * 0.2 + 0.2, 0))]


def _barbell_rack(rng):
    # a crossbar on two posts ("goal")
    w, h = _u(rng, 1.5, 2.2), _u(rng, 0.9, 1.4)
    return [_P("cylinder", (0.08, h, 0.08), (-w / 2, h / 2, 0)), _P("cylinder", (0.08, h, 0.08), (w / 2, h / 2, 0)), _P("box", (w, 0.08, 0.08), (0, h, 0))]


def _car(rng):
    L, w, h = _u(rng, 1.8, 2.4), _u(rng, 0.8, 1.0), _u(rng, 0.3, 0.45)
    parts = [_P("box", (w, h, L), (0, h / 2 + 0.2, 0)), _P("box", (w * 0.85, h * 0.8, L * 0.5), (0, h + 0.2 + h * 0.4, -L * 0.05))]
    for sx in (-1, 1):
        for sz in (-1, 1):
            tr = _P("torus", (0.16, 0.07, 0), (sx * w / 2, 0.2, sz * L * 0.32))
            parts.append(tr)
    return parts


FAMILIES: Dict[str, Callable[[np.random.Generator], List[Part]]] = {
    "table": _table, "chair": _chair, "lamp": _lamp, "mug": _mug, "bottle": _bottle,
    "snowman": _snowman, "dumbbell": _dumbbell, "tree": _tree, "airplane": _airplane,
    "tower": _tower, "ring": _ring, "bed": _bed, "sofa": _sofa, "mushroom": _mushroom,
    "bowl": _bowl, "goal": _barbell_rack, "car": _car,
}
"""Every shape family, by name. ``list(FAMILIES)`` is a stable order (label = index)."""


def _rotation_y(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _deform(p: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    ext = np.ptp(p[:, 1]) + 1e-9
    y = (p[:, 1] - p[:, 1].min()) / ext  # 0..1 along the up axis
    kind = rng.integers(0, 4)
    if kind == 1:  # taper
        f = 1 + strength * _u(rng, -0.5, 0.5) * (y - 0.5)
        p = p * np.stack([f, np.ones_like(f), f], 1)
    elif kind == 2:  # bend about Z
        k = strength * _u(rng, -0.4, 0.4)
        p = p + np.stack([k * (y - 0.5) ** 2 * ext, np.zeros_like(y), np.zeros_like(y)], 1)
    elif kind == 3:  # twist about Y
        a = strength * _u(rng, -0.6, 0.6) * (y - 0.5)
        c, s = np.cos(a), np.sin(a)
        p = np.stack([c * p[:, 0] + s * p[:, 2], p[:, 1], -s * p[:, 0] + c * p[:, 2]], 1)
    return p


def generate_shape(
    family: str, num_points: int = 2048, *, seed: Optional[int] = None, rng: Optional[np.random.Generator] = None,
    augment: float = 1.0, noise: float = 0.003,
) -> np.ndarray:
    """One random shape of ``family`` as a surface point cloud.

    Args:
        family: a key of :data:`FAMILIES`.
        num_points: N.
        seed / rng: randomness (same seed, same cloud).
        augment: strength of the random deformation and anisotropic scale (0 turns them off).
        noise: std of Gaussian jitter, relative to the shape's size.

    Shapes:
        -> [N, 3] float32, +Y up, centred, unit max radius.
    """
    if family not in FAMILIES:
        import difflib

        close = difflib.get_close_matches(family, list(FAMILIES), n=3)
        raise KeyError(f"unknown shape family {family!r}; did you mean {close}? Known: {list(FAMILIES)}")
    rng = rng if rng is not None else np.random.default_rng(seed)
    parts = FAMILIES[family](rng)
    areas = np.array([_area(k, s) for k, s, _ in parts])
    counts = rng.multinomial(num_points, areas / areas.sum())
    pts = np.concatenate([_PRIMITIVES[k](int(n), s, rng) + c for (k, s, c), n in zip(parts, counts)], 0)
    if augment > 0:
        pts = _deform(pts, rng, augment)
        pts = pts * rng.uniform(1 - 0.25 * augment, 1 + 0.25 * augment, size=3)
    pts = pts @ _rotation_y(rng.uniform(0, 2 * np.pi)).T
    pts = pts - pts.mean(0)
    pts = pts / (np.linalg.norm(pts, axis=1).max() + 1e-12)
    pts = pts + rng.normal(scale=noise, size=pts.shape)
    return pts.astype(np.float32)


def make_dataset(
    num_per_family: int, num_points: int = 1024, *, families: Optional[Sequence[str]] = None, seed: int = 0
) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """A labelled set of shapes, deterministic in ``seed``.

    Returns:
        (points [F * num_per_family, N, 3] float32, labels [F * num_per_family] int64,
        family names, label i = names[i]).
    """
    names = list(families) if families is not None else list(FAMILIES)
    rng = np.random.default_rng(seed)
    pts, labels = [], []
    for i, fam in enumerate(names):
        for _ in range(num_per_family):
            pts.append(generate_shape(fam, num_points, rng=rng))
            labels.append(i)
    return np.stack(pts), np.asarray(labels, dtype=np.int64), names


CLOUD_FORMATS = (".ply", ".npy", ".xyz", ".csv", ".npz", ".txt")
"""File types :func:`write_folder` cycles through (all point-cloud formats load_points reads)."""


def write_folder(
    root: "str | os.PathLike[str]",
    num_per_family: int,
    num_points: int = 1024,
    *,
    families: Optional[Sequence[str]] = None,
    formats: Sequence[str] = CLOUD_FORMATS,
    split: Optional[Tuple[str, ...]] = None,
    test_per_family: int = 0,
    seed: int = 0,
) -> List[str]:
    """Write procedural shapes as a class-per-folder tree of point-cloud files.

    Files are ``root/<family>/<family>_<i>.<ext>`` with the extension cycling through
    ``formats`` (so a tree mixes file types, like real data); with ``test_per_family > 0``
    the tree is ``root/train/<family>/...`` and ``root/test/<family>/...`` instead. Each file
    is written to a temporary name and renamed. Deterministic in ``seed``.

    Returns:
        The family names (class folders), in label order.
    """
    from pathlib import Path

    import trimesh

    names = list(families) if families is not None else list(FAMILIES)
    rng = np.random.default_rng(seed)
    root = Path(root)
    groups = [("", num_per_family)] if test_per_family <= 0 else [("train", num_per_family), ("test", test_per_family)]
    k = 0
    for sub, count in groups:
        for fam in names:
            d = root / sub / fam if sub else root / fam
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pts = generate_shape(fam, num_points, rng=rng)
                ext = formats[k % len(formats)]
                k += 1
                final = d / f"{fam}_{i:04d}{ext}"
                tmp = d / f".{final.stem}.incomplete{ext}"
                if ext == ".npy":
                    np.save(tmp, pts)
                elif ext == ".npz":
                    np.savez(tmp, points=pts)
                elif ext == ".ply":
                    trimesh.PointCloud(pts).export(str(tmp), file_type="ply")
                elif ext in (".xyz", ".txt", ".pts"):
                    np.savetxt(tmp, pts, fmt="%.6f")
                elif ext == ".csv":
                    np.savetxt(tmp, pts, fmt="%.6f", delimiter=",", header="x,y,z", comments="")
                else:
                    raise ValueError(f"write_folder writes point clouds only; unsupported format {ext!r}")
                os.replace(tmp, final)
    return names
