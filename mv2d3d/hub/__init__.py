"""The zoo registry and everything that moves weights: load, download, save, push, cards.

Knows nothing of training.
"""

from .loading import load as load
from .loading import load_model as load_model
from .registry import ZooEntry as ZooEntry
from .registry import get_entry as get_entry
from .registry import list_models as list_models

__all__ = ["load", "load_model", "list_models", "get_entry", "ZooEntry"]
