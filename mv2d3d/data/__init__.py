"""Data: file I/O (trimesh is imported only when a mesh is read), datasets, standard
benchmark readers (h5py is imported only when an HDF5 file is read), procedural shapes and
transforms.
"""

from .datasets import FolderDataset as FolderDataset
from .datasets import PointCloudDataset as PointCloudDataset
from .datasets import scan_folder as scan_folder
from .io import find_point_files as find_point_files
from .io import load_many as load_many
from .io import load_points as load_points
from .io import resample_points as resample_points
from .procedural import FAMILIES as FAMILIES
from .procedural import generate_shape as generate_shape
from .procedural import make_dataset as make_dataset
from .standard import STANDARD_DATASETS as STANDARD_DATASETS
from .standard import load_standard as load_standard
from .transforms import Compose as Compose
from .transforms import Jitter as Jitter
from .transforms import PointDropout as PointDropout
from .transforms import RotateUp as RotateUp
from .transforms import ScaleTranslate as ScaleTranslate

__all__ = [
    "load_points",
    "load_many",
    "resample_points",
    "find_point_files",
    "FolderDataset",
    "PointCloudDataset",
    "scan_folder",
    "STANDARD_DATASETS",
    "load_standard",
    "Compose",
    "ScaleTranslate",
    "RotateUp",
    "Jitter",
    "PointDropout",
    "generate_shape",
    "make_dataset",
    "FAMILIES",
]
