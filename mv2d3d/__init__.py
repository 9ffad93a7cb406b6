"""mv2d3d: a model zoo of 3D point-cloud encoders distilled from multi-view 2D teachers.

>>> import mv2d3d
>>> mv2d3d.list_models()
>>> enc = mv2d3d.load("mv-m3ae-tiny")
>>> out = enc(points)            # points: [B, N, 3] or [N, 3]
>>> out.global_features          # [B, D]
"""

__version__ = "0.1.0"

from . import errors as errors
from .config import ClassifierConfig as ClassifierConfig
from .config import EncoderConfig as EncoderConfig
from .hub import download as download
from .hub import list_models as list_models
from .hub import load as load
from .models import EncoderOutput as EncoderOutput
from .models import PointClassifier as PointClassifier
from .models import PointEncoder as PointEncoder


def __getattr__(name: str):
    # Subpackages with heavy imports (trimesh, sklearn, the trainer) load on first use.
    if name in ("data", "train", "pretrain", "ops"):
        import importlib

        mod = importlib.import_module(f".{name}", __name__)
        globals()[name] = mod
        return mod
    if name == "convert":  # checkpoint import (mv2d3d/convert.py), loaded on first use
        from .convert import convert as _convert

        globals()["convert"] = _convert  # the import bound the submodule to this name
        return _convert
    raise AttributeError(f"module 'mv2d3d' has no attribute {name!r}")


__all__ = [
    "__version__",
    "errors",
    "list_models",
    "load",
    "download",
    "PointEncoder",
    "PointClassifier",
    "EncoderOutput",
    "EncoderConfig",
    "ClassifierConfig",
    "convert",
]
