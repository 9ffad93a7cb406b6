"""The zoo registry and everything that moves weights: load, download, save, push, cards.

Knows nothing of training. ``huggingface_hub`` is imported lazily (inside the functions that
talk to the Hub), so ``import mv2d3d`` stays fast.
"""

from .loading import download as download
from .loading import load as load
from .loading import load_model as load_model
from .registry import ZooEntry as ZooEntry
from .registry import get_entry as get_entry
from .registry import list_models as list_models
from .saving import push_folder as push_folder
from .saving import push_to_hub as push_to_hub
from .saving import save_pretrained as save_pretrained

__all__ = [
    "load",
    "load_model",
    "download",
    "save_pretrained",
    "push_to_hub",
    "push_folder",
    "list_models",
    "get_entry",
    "ZooEntry",
]
