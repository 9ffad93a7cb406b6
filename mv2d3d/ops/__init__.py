"""Geometry kernels in plain PyTorch: farthest point sampling, kNN, grouping, interpolation.

This layer knows nothing of models; everything here is batched and device-agnostic.
"""

from .neighbors import group_points as group_points
from .neighbors import interpolate_features as interpolate_features
from .neighbors import knn as knn
from .sampling import farthest_point_sample as farthest_point_sample
from .sampling import fps_start_index as fps_start_index
from .sampling import gather_points as gather_points

__all__ = ["farthest_point_sample", "fps_start_index", "gather_points", "knn", "group_points", "interpolate_features"]
