"""Training augmentations for point clouds (numpy, seeded).

Every transform is a callable ``t(points, rng) -> points`` taking the cloud and a
``numpy.random.Generator``; datasets build that generator from (seed, epoch, index), so an
augmented sample is the same whatever the number of data-loader workers or processes.

Note that the encoders centre every cloud and scale it into the unit sphere first
(``EncoderConfig.normalize``): a translation and a *uniform* scale are undone there, only
the anisotropic part of :class:`ScaleTranslate` changes what the network sees.

Shapes:
    N: points.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]

_AXES = {"x": 0, "y": 1, "z": 2}


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            points = t(points, rng)
        return points

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class ScaleTranslate:
    """Scale each axis by a factor drawn from ``scale``, then shift each by one drawn from
    ``[-shift, shift]`` (the Point-MAE / Point-BERT fine-tuning augmentation).

    Shapes:
        points: [N, 3] -> [N, 3]
    """

    def __init__(self, scale: Tuple[float, float] = (2.0 / 3.0, 3.0 / 2.0), shift: float = 0.2):
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        self.scale, self.shift = tuple(scale), float(shift)

    def __call__(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = rng.uniform(self.scale[0], self.scale[1], size=3)
        t = rng.uniform(-self.shift, self.shift, size=3)
        return (points * s + t).astype(points.dtype, copy=False)

    def __repr__(self) -> str:
        return f"ScaleTranslate(scale={self.scale}, shift={self.shift})"


class RotateUp:
    """Rotate about the up axis by an angle drawn from ``[-max_angle, max_angle]``.

    Args:
        axis: the up axis, ``"y"`` (ModelNet, ShapeNet, the procedural shapes) or ``"z"``
            (most scans, ScanObjectNN in its raw frame).
        max_angle: radians; the default ``pi`` is a full random turn.

    Shapes:
        points: [N, 3] -> [N, 3]
    """

    def __init__(self, axis: str = "y", max_angle: float = float(np.pi)):
        if axis not in _AXES:
            raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")
        self.axis, self.max_angle = axis, float(max_angle)

    def __call__(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = rng.uniform(-self.max_angle, self.max_angle)
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != _AXES[self.axis]]
        out = points.copy()
        out[:, i] = c * points[:, i] - s * points[:, j]
        out[:, j] = s * points[:, i] + c * points[:, j]
        return out

    def __repr__(self) -> str:
        return f"RotateUp(axis={self.axis!r}, max_angle={self.max_angle:.3f})"


class Jitter:
    """Add Gaussian noise of std ``sigma`` to every coordinate, clipped to ``[-clip, clip]``.

    Shapes:
        points: [N, 3] -> [N, 3]
    """

    def __init__(self, sigma: float = 0.01, clip: float = 0.05):
        if sigma < 0 or clip < 0:
            raise ValueError("sigma and clip must be >= 0")
        self.sigma, self.clip = float(sigma), float(clip)

    def __call__(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = np.clip(rng.normal(0.0, self.sigma, size=points.shape), -self.clip, self.clip)
        return (points + noise).astype(points.dtype, copy=False)

    def __repr__(self) -> str:
        return f"Jitter(sigma={self.sigma}, clip={self.clip})"


class PointDropout:
    """Drop a random fraction of the points (drawn from ``[0, max_ratio]``) and replace them
    with copies of the first point, so the cloud keeps its size N (PointNet++ style).

    Shapes:
        points: [N, 3] -> [N, 3]
    """

    def __init__(self, max_ratio: float = 0.875):
        if not 0 <= max_ratio < 1:
            raise ValueError(f"max_ratio must be in [0, 1), got {max_ratio}")
        self.max_ratio = float(max_ratio)

    def __call__(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ratio = rng.uniform(0, self.max_ratio)
        drop = rng.random(len(points)) < ratio
        if not drop.any():
            return points
        out = points.copy()
        out[drop] = points[0]
        return out

    def __repr__(self) -> str:
        return f"PointDropout(max_ratio={self.max_ratio})"


def default_train_transform(kind: str = "scale_translate", *, up_axis: str = "y") -> Optional[Transform]:
    """The augmentation recipes the fine-tuning command offers.

    ``"none"``; ``"scale_translate"`` (Point-MAE's ModelNet recipe); ``"rotate"`` (random
    turn about ``up_axis`` + scale/translate, Point-MAE's ScanObjectNN recipe); ``"full"``
    (rotate + scale/translate + jitter + dropout).
    """
    if kind == "none":
        return None
    if kind == "scale_translate":
        return Compose([ScaleTranslate()])
    if kind == "rotate":
        return Compose([RotateUp(up_axis), ScaleTranslate()])
    if kind == "full":
        return Compose([RotateUp(up_axis), ScaleTranslate(), Jitter(), PointDropout()])
    raise ValueError(f"unknown augmentation {kind!r}; choose none, scale_translate, rotate or full")
