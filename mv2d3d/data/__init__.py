"""Data: file I/O (through trimesh, imported lazily), datasets, procedural shapes, transforms."""

from .io import load_points as load_points
from .procedural import FAMILIES as FAMILIES
from .procedural import generate_shape as generate_shape
from .procedural import make_dataset as make_dataset

__all__ = ["load_points", "generate_shape", "make_dataset", "FAMILIES"]
